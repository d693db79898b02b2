/*
 * anchors.cu -- FPN anchors on the GPU: every thread computes its base anchor with the same
 * double-precision recipe as the CPU (box_math.h: base_anchor), so the two agree exactly.
 */
#include "common.cuh"

namespace mxops {

static const int kMaxLevels = 16, kMaxSizes = 16, kMaxRatios = 16;

struct AnchorParams {
  int num_levels, num_sizes, num_ratios;
  int64_t height[kMaxLevels], width[kMaxLevels], first[kMaxLevels + 1];
  double stride[kMaxLevels], sizes[kMaxLevels * kMaxSizes], ratios[kMaxRatios];
};

__global__ void anchors_kernel(AnchorParams p, float* out) {
  const int per_cell = p.num_sizes * p.num_ratios;
  const int64_t total = p.first[p.num_levels];
  for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < total;
       j += (int64_t)gridDim.x * blockDim.x) {
    int l = 0;
    while (j >= p.first[l + 1]) ++l;
    const int64_t local = j - p.first[l];
    const int64_t cell = local / per_cell;
    const int a = (int)(local - cell * per_cell);
    const int64_t y = cell / p.width[l], x = cell - y * p.width[l];
    const int r = a / p.num_sizes, s = a - r * p.num_sizes;
    double base[4];
    base_anchor(p.stride[l], p.sizes[l * p.num_sizes + s], p.ratios[r], base);
    const double ox = (double)x * p.stride[l], oy = (double)y * p.stride[l];
    float* o = out + 4 * j;
    o[0] = (float)(base[0] + ox);
    o[1] = (float)(base[1] + oy);
    o[2] = (float)(base[2] + ox);
    o[3] = (float)(base[3] + oy);
  }
}

}  // namespace mxops

extern "C" int mxops_anchors_cuda(float* out, int num_levels, const int64_t* heights,
                                  const int64_t* widths, const double* strides,
                                  const double* sizes, int num_sizes, const double* ratios,
                                  int num_ratios, void* stream) {
  using mxops::kMaxLevels;
  if (num_levels > kMaxLevels || num_sizes > mxops::kMaxSizes ||
      num_ratios > mxops::kMaxRatios)
    return MXOPS_ERR_TOO_LARGE;
  if (mxops_anchors_count(num_levels, heights, widths, num_sizes, num_ratios) < 0)
    return MXOPS_ERR_ARG;
  mxops::AnchorParams p;
  p.num_levels = num_levels; p.num_sizes = num_sizes; p.num_ratios = num_ratios;
  p.first[0] = 0;
  for (int l = 0; l < num_levels; ++l) {
    if (!(strides[l] > 0.0)) return MXOPS_ERR_ARG;
    p.height[l] = heights[l]; p.width[l] = widths[l]; p.stride[l] = strides[l];
    p.first[l + 1] = p.first[l] + heights[l] * widths[l] * num_sizes * num_ratios;
    for (int s = 0; s < num_sizes; ++s)
      p.sizes[l * num_sizes + s] = sizes[l * num_sizes + s];
  }
  for (int r = 0; r < num_ratios; ++r) p.ratios[r] = ratios[r];
  const int64_t total = p.first[num_levels];
  if (total == 0) return MXOPS_OK;
  mxops::anchors_kernel<<<mxops::blocks_for(total, 256), 256, 0, mxops::as_stream(stream)>>>(
      p, out);
  return mxops::launch_status();
}
