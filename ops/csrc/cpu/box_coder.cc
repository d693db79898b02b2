/*
 * box_coder.cc -- regression targets (encode) and their inverse (decode) on the CPU.
 */
#include "common.h"

extern "C" int mxops_box_encode_cpu(const float* boxes, int shared_boxes, const float* gt,
                                    const int32_t* matches, float* targets, float* masks,
                                    int64_t batch, int64_t n, int64_t m, const float* means,
                                    const float* stds, float offset) {
  if (!mxops::valid_sizes(batch, n) || m < 0) return MXOPS_ERR_ARG;
#pragma omp parallel for schedule(static) if (batch * n > 16384)
  for (int64_t bi = 0; bi < batch * n; ++bi) {
    int64_t b = bi / n, i = bi % n;
    int32_t g = matches[bi];
    float* t = targets + 4 * bi;
    float* k = masks + 4 * bi;
    if (g < 0 || g >= m) {
      t[0] = t[1] = t[2] = t[3] = 0.f;
      k[0] = k[1] = k[2] = k[3] = 0.f;
      continue;
    }
    const float* a = boxes + 4 * (shared_boxes ? i : bi);
    mxops::encode_box(a, gt + 4 * (m * b + g), means, stds, offset, t);
    k[0] = k[1] = k[2] = k[3] = 1.f;
  }
  return MXOPS_OK;
}

extern "C" int mxops_box_decode_cpu(const float* deltas, const float* anchors,
                                    int shared_anchors, const float* im_hw, float* out,
                                    int64_t batch, int64_t n, const float* means,
                                    const float* stds, float clip, float offset) {
  if (!mxops::valid_sizes(batch, n)) return MXOPS_ERR_ARG;
#pragma omp parallel for schedule(static) if (batch * n > 16384)
  for (int64_t bi = 0; bi < batch * n; ++bi) {
    int64_t b = bi / n, i = bi % n;
    const float* a = anchors + 4 * (shared_anchors ? i : bi);
    float* o = out + 4 * bi;
    mxops::decode_box(deltas + 4 * bi, a, means, stds, clip, offset, o);
    if (im_hw) mxops::clip_box(o, im_hw[2 * b], im_hw[2 * b + 1], offset);
  }
  return MXOPS_OK;
}
