/*
 * anchors.cc -- FPN anchors with gluoncv's conventions, on the CPU.
 */
#include "common.h"

namespace mxops {

// Anchors of one level: base anchors (double, as gluoncv's numpy code) shifted to every
// feature-map cell and then rounded to float32, as gluoncv's astype(np.float32) does.
static void level_anchors(float* out, int64_t height, int64_t width, double stride,
                          const double* sizes, int num_sizes, const double* ratios,
                          int num_ratios) {
  const int per_cell = num_sizes * num_ratios;
  std::vector<double> base(4 * per_cell);
  for (int r = 0; r < num_ratios; ++r)
    for (int s = 0; s < num_sizes; ++s)
      base_anchor(stride, sizes[s], ratios[r], &base[4 * (r * num_sizes + s)]);
#pragma omp parallel for schedule(static) if (height * width * per_cell > 65536)
  for (int64_t y = 0; y < height; ++y) {
    double oy = (double)y * stride;
    for (int64_t x = 0; x < width; ++x) {
      double ox = (double)x * stride;
      float* o = out + 4 * per_cell * (y * width + x);
      for (int a = 0; a < per_cell; ++a) {
        o[4 * a + 0] = (float)(base[4 * a + 0] + ox);
        o[4 * a + 1] = (float)(base[4 * a + 1] + oy);
        o[4 * a + 2] = (float)(base[4 * a + 2] + ox);
        o[4 * a + 3] = (float)(base[4 * a + 3] + oy);
      }
    }
  }
}

}  // namespace mxops

extern "C" int64_t mxops_anchors_count(int num_levels, const int64_t* heights,
                                       const int64_t* widths, int num_sizes, int num_ratios) {
  if (num_levels < 0 || num_sizes <= 0 || num_ratios <= 0) return -1;
  int64_t total = 0;
  for (int l = 0; l < num_levels; ++l) {
    if (heights[l] < 0 || widths[l] < 0) return -1;
    total += heights[l] * widths[l] * num_sizes * num_ratios;
  }
  return total;
}

extern "C" int mxops_anchors_cpu(float* out, int num_levels, const int64_t* heights,
                                 const int64_t* widths, const double* strides,
                                 const double* sizes, int num_sizes, const double* ratios,
                                 int num_ratios) {
  if (mxops_anchors_count(num_levels, heights, widths, num_sizes, num_ratios) < 0)
    return MXOPS_ERR_ARG;
  for (int l = 0; l < num_levels; ++l) {
    if (!(strides[l] > 0.0)) return MXOPS_ERR_ARG;
    mxops::level_anchors(out, heights[l], widths[l], strides[l], sizes + l * num_sizes,
                         num_sizes, ratios, num_ratios);
    out += 4 * heights[l] * widths[l] * num_sizes * num_ratios;
  }
  return MXOPS_OK;
}
