/*
 * polygon_masks.cc -- M x M binary mask targets from COCO polygons, on the CPU.
 *
 * The polygons of the matched gt are mapped into the RoI's M x M grid and each row of pixel
 * centres is scanned: a pixel is inside a polygon when an odd number of edge crossings lie
 * to its right. That is the per-pixel test the CUDA kernel runs, computed from the same
 * crossing values, so both produce identical masks. No full-image mask is ever built.
 */
#include <algorithm>

#include "common.h"

namespace mxops {

// Polygon `p` of an image mapped into the RoI grid; false when the row is invalid.
static bool roi_polygon(const float* verts, const int32_t* p, int64_t v, const float* roi,
                        float sx, float sy, std::vector<float>* xs, std::vector<float>* ys) {
  int64_t start = p[1], count = p[2];
  if (start < 0 || count < 3 || start + count > v) return false;
  xs->resize(count);
  ys->resize(count);
  for (int64_t k = 0; k < count; ++k) {
    (*xs)[k] = (verts[2 * (start + k)] - roi[0]) * sx;
    (*ys)[k] = (verts[2 * (start + k) + 1] - roi[1]) * sy;
  }
  return true;
}

// OR the even-odd interior of one polygon into the mask.
static void fill_polygon(const std::vector<float>& xs, const std::vector<float>& ys,
                         int64_t size, float* mask) {
  const int64_t count = (int64_t)xs.size();
  std::vector<float> cross;
  for (int64_t row = 0; row < size; ++row) {
    const float py = (float)row + 0.5f;
    cross.clear();
    for (int64_t k = 0; k < count; ++k) {
      int64_t k2 = k + 1 == count ? 0 : k + 1;
      if (edge_straddles(ys[k], ys[k2], py))
        cross.push_back(edge_crossing(xs[k], ys[k], xs[k2], ys[k2], py));
    }
    if (cross.empty()) continue;
    std::sort(cross.begin(), cross.end());
    // Walk the pixel centres left to right; `first_right` is the first crossing > px.
    size_t first_right = 0;
    for (int64_t col = 0; col < size; ++col) {
      const float px = (float)col + 0.5f;
      while (first_right < cross.size() && !(cross[first_right] > px)) ++first_right;
      if ((cross.size() - first_right) & 1) mask[row * size + col] = 1.f;
    }
  }
}

static void roi_mask(const float* roi, int32_t g, const float* verts, const int32_t* polys,
                     int64_t v, int64_t q, int64_t size, float* mask) {
  std::fill(mask, mask + size * size, 0.f);
  if (g < 0) return;
  const float sx = roi_scale(roi[0], roi[2], size), sy = roi_scale(roi[1], roi[3], size);
  std::vector<float> xs, ys;
  for (int64_t j = 0; j < q; ++j) {
    const int32_t* p = polys + 3 * j;
    if (p[0] != g || !roi_polygon(verts, p, v, roi, sx, sy, &xs, &ys)) continue;
    fill_polygon(xs, ys, size, mask);
  }
}

}  // namespace mxops

extern "C" int mxops_polygon_masks_cpu(const float* rois, const int32_t* matches,
                                       const float* verts, const int32_t* polys, float* out,
                                       int64_t batch, int64_t r, int64_t v, int64_t q,
                                       int64_t mask_size) {
  if (!mxops::valid_sizes(batch, r) || v < 0 || q < 0 || mask_size <= 0) return MXOPS_ERR_ARG;
  const int64_t cells = mask_size * mask_size;
#pragma omp parallel for schedule(dynamic, 4) if (batch * r > 8)
  for (int64_t br = 0; br < batch * r; ++br) {
    int64_t b = br / r;
    mxops::roi_mask(rois + 4 * br, matches[br], verts + 2 * v * b, polys + 3 * q * b, v, q,
                    mask_size, out + cells * br);
  }
  return MXOPS_OK;
}
