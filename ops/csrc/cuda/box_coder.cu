/*
 * box_coder.cu -- regression targets and their inverse on the GPU, one thread per box,
 * with the formulas of box_math.h (expf/logf may differ from glibc by an ulp or two).
 */
#include "common.cuh"

namespace mxops {

struct CoderParams {
  float means[4], stds[4];
  float clip, offset;
};

__global__ void encode_kernel(const float* boxes, int shared_boxes, const float* gt,
                              const int32_t* matches, float* targets, float* masks, int64_t n,
                              int64_t m, int64_t total, CoderParams p) {
  for (int64_t bi = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; bi < total;
       bi += (int64_t)gridDim.x * blockDim.x) {
    const int64_t b = bi / n, i = bi - b * n;
    const int32_t g = matches[bi];
    float t[4] = {0.f, 0.f, 0.f, 0.f};
    const float k = (g >= 0 && g < m) ? 1.f : 0.f;
    if (k > 0.f)
      encode_box(boxes + 4 * (shared_boxes ? i : bi), gt + 4 * (m * b + g), p.means, p.stds,
                 p.offset, t);
    reinterpret_cast<float4*>(targets)[bi] = make_float4(t[0], t[1], t[2], t[3]);
    reinterpret_cast<float4*>(masks)[bi] = make_float4(k, k, k, k);
  }
}

__global__ void decode_kernel(const float* deltas, const float* anchors, int shared_anchors,
                              const float* im_hw, float* out, int64_t n, int64_t total,
                              CoderParams p) {
  for (int64_t bi = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; bi < total;
       bi += (int64_t)gridDim.x * blockDim.x) {
    const int64_t b = bi / n, i = bi - b * n;
    float o[4];
    decode_box(deltas + 4 * bi, anchors + 4 * (shared_anchors ? i : bi), p.means, p.stds,
               p.clip, p.offset, o);
    if (im_hw) clip_box(o, im_hw[2 * b], im_hw[2 * b + 1], p.offset);
    reinterpret_cast<float4*>(out)[bi] = make_float4(o[0], o[1], o[2], o[3]);
  }
}

static CoderParams coder_params(const float* means, const float* stds, float clip,
                                float offset) {
  CoderParams p;
  for (int c = 0; c < 4; ++c) { p.means[c] = means[c]; p.stds[c] = stds[c]; }
  p.clip = clip;
  p.offset = offset;
  return p;
}

// The kernels store float4: outputs must be 16-byte aligned (every framework allocation is).
static bool aligned16(const void* a, const void* b = nullptr) {
  return (uintptr_t)a % 16 == 0 && (uintptr_t)b % 16 == 0;
}

}  // namespace mxops

extern "C" int mxops_box_encode_cuda(const float* boxes, int shared_boxes, const float* gt,
                                     const int32_t* matches, float* targets, float* masks,
                                     int64_t batch, int64_t n, int64_t m, const float* means,
                                     const float* stds, float offset, void* stream) {
  if (batch < 0 || n < 0 || m < 0 || !mxops::aligned16(targets, masks)) return MXOPS_ERR_ARG;
  const int64_t total = batch * n;
  if (total == 0) return MXOPS_OK;
  mxops::encode_kernel<<<mxops::blocks_for(total, 256), 256, 0, mxops::as_stream(stream)>>>(
      boxes, shared_boxes, gt, matches, targets, masks, n, m, total,
      mxops::coder_params(means, stds, -1.f, offset));
  return mxops::launch_status();
}

extern "C" int mxops_box_decode_cuda(const float* deltas, const float* anchors,
                                     int shared_anchors, const float* im_hw, float* out,
                                     int64_t batch, int64_t n, const float* means,
                                     const float* stds, float clip, float offset,
                                     void* stream) {
  if (batch < 0 || n < 0 || !mxops::aligned16(out)) return MXOPS_ERR_ARG;
  const int64_t total = batch * n;
  if (total == 0) return MXOPS_OK;
  mxops::decode_kernel<<<mxops::blocks_for(total, 256), 256, 0, mxops::as_stream(stream)>>>(
      deltas, anchors, shared_anchors, im_hw, out, n, total,
      mxops::coder_params(means, stds, clip, offset));
  return mxops::launch_status();
}
