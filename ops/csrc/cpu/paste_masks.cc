/*
 * paste_masks.cc -- detections' S x S mask probabilities pasted into the image, on the CPU.
 *
 * Each detection's H x W plane is zeroed, then only the span of rows and columns that its
 * mask can reach is evaluated (paste_span). The mask is copied into a zero-bordered grid so
 * that the inner loops read their taps without tests: a tap outside the mask lands on the
 * border and reads 0, the value the CUDA kernel selects for it, so both compute the same
 * float operations (box_math.h) and agree bit for bit. Column-major planes run the same
 * arithmetic with the loops swapped, so they are the row-major ones transposed, exactly.
 */
#include <string.h>

#include <algorithm>

#include "common.h"

namespace mxops {

// The mask with a border of zeros: index k + 1 holds mask pixel k for k in [0, S); indices
// 0, S + 1 and S + 2 are zero. A coordinate whose taps both fall outside the mask is sent
// to S + 1 (taps S + 1 and S + 2, both zero).
class BorderedMask {
 public:
  BorderedMask(const float* mask, int64_t size)
      : size_(size), stride_(size + 3), cells_(stride_ * stride_, 0.f) {
    for (int64_t r = 0; r < size; ++r)
      std::copy(mask + r * size, mask + (r + 1) * size, &cells_[(r + 1) * stride_ + 1]);
  }
  // Grid index of the first tap of mask index `first` (the second tap is the next one).
  int32_t tap(int64_t first) const {
    return (int32_t)((first >= -1 && first < size_) ? first + 1 : size_ + 1);
  }
  const float* cells() const { return cells_.data(); }
  int64_t stride() const { return stride_; }

 private:
  int64_t size_, stride_;
  std::vector<float> cells_;
};

// The taps and fractions of the image pixels [begin, end) along one side.
struct Taps {
  std::vector<int32_t> tap;
  std::vector<float> frac;

  Taps(const BorderedMask& grid, float lo, float scale, int64_t begin, int64_t end)
      : tap(end - begin), frac(end - begin) {
    for (int64_t p = begin; p < end; ++p) {
      int64_t first;
      paste_tap(paste_coord(p, lo, scale), &first, &frac[p - begin]);
      tap[p - begin] = grid.tap(first);
    }
  }
};

// The bilinear value: first along x within the two mask rows, then along y.
static inline float bilinear(const float* cells, int64_t stride, int32_t ty, float fy,
                             int32_t tx, float fx) {
  const float* top = cells + ty * stride;
  const float* bottom = top + stride;
  const float upper = paste_lerp(top[tx], top[tx + 1], fx);
  const float lower = paste_lerp(bottom[tx], bottom[tx + 1], fx);
  return paste_lerp(upper, lower, fy);
}

// One image row (row-major planes): contiguous output along x.
MXOPS_CPU_CLONES
static void paste_row(const BorderedMask& grid, int32_t ty, float fy, const Taps& columns,
                      float threshold, uint8_t* out) {
  const float* cells = grid.cells();
  const int64_t stride = grid.stride(), n = (int64_t)columns.tap.size();
  for (int64_t k = 0; k < n; ++k)
    out[k] = bilinear(cells, stride, ty, fy, columns.tap[k], columns.frac[k]) >= threshold;
}

// One image column (column-major planes): contiguous output along y.
MXOPS_CPU_CLONES
static void paste_column(const BorderedMask& grid, const Taps& rows, int32_t tx, float fx,
                         float threshold, uint8_t* out) {
  const float* cells = grid.cells();
  const int64_t stride = grid.stride(), n = (int64_t)rows.tap.size();
  for (int64_t k = 0; k < n; ++k)
    out[k] = bilinear(cells, stride, rows.tap[k], rows.frac[k], tx, fx) >= threshold;
}

static void paste_one(const float* mask, const float* box, int64_t size, int64_t height,
                      int64_t width, float threshold, bool column_major, uint8_t* plane) {
  memset(plane, 0, (size_t)(height * width));
  if (!paste_box_finite(box)) return;
  const float sx = paste_scale(box[0], box[2], size), sy = paste_scale(box[1], box[3], size);
  int64_t x0, x1, y0, y1;
  paste_span(box[0], sx, size, width, &x0, &x1);
  paste_span(box[1], sy, size, height, &y0, &y1);
  if (x0 >= x1 || y0 >= y1) return;
  const BorderedMask grid(mask, size);
  const Taps columns(grid, box[0], sx, x0, x1), rows(grid, box[1], sy, y0, y1);
  if (column_major) {
    for (int64_t x = x0; x < x1; ++x)
      paste_column(grid, rows, columns.tap[x - x0], columns.frac[x - x0], threshold,
                   plane + x * height + y0);
  } else {
    for (int64_t y = y0; y < y1; ++y)
      paste_row(grid, rows.tap[y - y0], rows.frac[y - y0], columns, threshold,
                plane + y * width + x0);
  }
}

}  // namespace mxops

extern "C" int mxops_paste_masks_cpu(const float* masks, const float* boxes, uint8_t* out,
                                     int64_t n, int64_t mask_size, int64_t height,
                                     int64_t width, float threshold, int column_major) {
  if (n < 0 || mask_size <= 0 || mask_size > 1024 || height <= 0 || width <= 0 ||
      !(threshold > 0.f))
    return MXOPS_ERR_ARG;
  const int64_t cells = mask_size * mask_size, plane = height * width;
#pragma omp parallel for schedule(dynamic, 1) if (n > 1)
  for (int64_t i = 0; i < n; ++i)
    mxops::paste_one(masks + cells * i, boxes + 4 * i, mask_size, height, width, threshold,
                     column_major != 0, out + plane * i);
  return MXOPS_OK;
}
