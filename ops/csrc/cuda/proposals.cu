/*
 * proposals.cu -- FPN proposal selection on the GPU: per (image, level) top-k and NMS
 * (nms_common.cuh), then one more stable radix sort merges the kept boxes of all levels
 * by score, as cpu/nms.cc does with std::stable_sort.
 */
#include "nms_common.cuh"

namespace mxops {

// One key per (image, level, kept rank): image, then invalid flag, then descending score.
// The value (level * post + rank) keeps level-then-rank order among equal scores.
__global__ void merge_keys_kernel(const int32_t* keep, const int32_t* keep_count,
                                  const float* cand_scores, int64_t k, int levels,
                                  int64_t post, int64_t total, uint64_t* keys,
                                  int32_t* values) {
  for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < total;
       j += (int64_t)gridDim.x * blockDim.x) {
    const int64_t seg = j / post, r = j - seg * post, b = seg / levels;
    const bool valid = r < keep_count[seg];
    const float s = valid ? cand_scores[seg * k + keep[j]] : 0.f;
    keys[j] = ((uint64_t)b << kKeyShift) | ((uint64_t)!valid << 32) | descending_key(s);
    values[j] = (int32_t)(j - b * levels * post);
  }
}

__global__ void proposals_output_kernel(const uint64_t* keys, const int32_t* values,
                                        const int32_t* keep, const float4* cand_boxes,
                                        const float* cand_scores, const int32_t* keep_count,
                                        int64_t k, int levels, int64_t post, int64_t batch,
                                        float4* rois, float* roi_scores, int32_t* num_rois) {
  const int64_t total = batch * post;
  for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < total;
       j += (int64_t)gridDim.x * blockDim.x) {
    const int64_t b = j / post, r = j - b * post;
    const int64_t pos = b * levels * post + r;  // this image's r-th merged entry
    const bool valid = !((keys[pos] >> 32) & 1);
    float4 box = make_float4(-1.f, -1.f, -1.f, -1.f);
    float score = -1.f;
    if (valid) {
      const int64_t seg = b * levels + values[pos] / post, rank = values[pos] % post;
      const int32_t c = keep[seg * post + rank];
      box = cand_boxes[seg * k + c];
      score = cand_scores[seg * k + c];
    }
    rois[j] = box;
    roi_scores[j] = score;
    if (r == 0) {
      int64_t kept = 0;
      for (int l = 0; l < levels; ++l) kept += keep_count[b * levels + l];
      num_rois[b] = (int32_t)(kept < post ? kept : post);
    }
  }
}

struct MergeBuffers {
  uint64_t *keys_in, *keys_out;
  int32_t *values_in, *values_out;
  void* sort_temp;
  size_t sort_bytes;
};

static void proposals_layout(Workspace* ws, int64_t batch, int64_t n, int levels, int64_t k,
                             int64_t post, NmsBuffers* nb, MergeBuffers* mb) {
  nms_layout(ws, batch, n, levels, k, post, nb);
  const int64_t total = batch * levels * post;
  mb->keys_in = ws->take<uint64_t>(total);
  mb->keys_out = ws->take<uint64_t>(total);
  mb->values_in = ws->take<int32_t>(total);
  mb->values_out = ws->take<int32_t>(total);
  mb->sort_bytes = 0;
  cub::DeviceRadixSort::SortPairs(nullptr, mb->sort_bytes, mb->keys_in, mb->keys_out,
                                  mb->values_in, mb->values_out, (int)total, 0,
                                  kKeyShift + bits_for(batch));
  mb->sort_temp = ws->take_bytes(mb->sort_bytes);
}

// k: candidates per segment, the largest level's min(size, pre_nms_top_n).
static int64_t candidates_per_segment(const int64_t* sizes, int levels, int64_t pre) {
  int64_t k = 0;
  for (int l = 0; l < levels; ++l) k = sizes[l] > k ? sizes[l] : k;
  return k < pre ? k : pre;
}

}  // namespace mxops

extern "C" size_t mxops_proposals_cuda_workspace(int64_t batch, int64_t n, int num_levels,
                                                 const int64_t* level_sizes,
                                                 int64_t pre_nms_top_n,
                                                 int64_t post_nms_top_n) {
  mxops::Workspace ws(nullptr);
  mxops::NmsBuffers nb;
  mxops::MergeBuffers mb;
  const int64_t k = mxops::candidates_per_segment(level_sizes, num_levels, pre_nms_top_n);
  mxops::proposals_layout(&ws, batch, n, num_levels, k, post_nms_top_n, &nb, &mb);
  return ws.size();
}

extern "C" int mxops_proposals_cuda(const float* boxes, const float* scores,
                                    const int64_t* level_sizes, int num_levels, float* rois,
                                    float* roi_scores, int32_t* num_rois, int64_t batch,
                                    int64_t n, int64_t pre_nms_top_n, int64_t post_nms_top_n,
                                    float iou_thresh, float min_size, float offset,
                                    void* workspace, size_t workspace_bytes, void* stream) {
  mxops::Levels lv;
  if (batch < 0 || n < 0 || pre_nms_top_n < 0 || post_nms_top_n < 0 ||
      !mxops::aligned16(boxes) || !mxops::aligned16(rois) ||
      !mxops::make_levels(level_sizes, num_levels, n, &lv))
    return MXOPS_ERR_ARG;
  const int64_t k = mxops::candidates_per_segment(level_sizes, num_levels, pre_nms_top_n);
  const int64_t post = post_nms_top_n, total = batch * num_levels * post;
  if (!mxops::nms_fits(batch, n, num_levels, k) || total > INT32_MAX)
    return MXOPS_ERR_TOO_LARGE;
  if (workspace_bytes < mxops_proposals_cuda_workspace(batch, n, num_levels, level_sizes,
                                                       pre_nms_top_n, post_nms_top_n))
    return MXOPS_ERR_WORKSPACE;
  if (batch == 0 || post == 0) return MXOPS_OK;
  cudaStream_t s = mxops::as_stream(stream);
  mxops::Workspace ws(workspace);
  mxops::NmsBuffers nb;
  mxops::MergeBuffers mb;
  mxops::proposals_layout(&ws, batch, n, num_levels, k, post, &nb, &mb);
  if (n > 0) {
    int st = mxops::run_segmented_nms(boxes, scores, batch, n, lv, k, post, iou_thresh,
                                      min_size, offset, &nb, s);
    if (st != MXOPS_OK) return st;
  } else {
    MXOPS_CUDA_TRY(cudaMemsetAsync(nb.keep_count, 0, sizeof(int32_t) * batch * num_levels, s));
  }
  const unsigned blocks = mxops::blocks_for(total, 256);
  mxops::merge_keys_kernel<<<blocks, 256, 0, s>>>(nb.keep, nb.keep_count, nb.cand_scores, k,
                                                  num_levels, post, total, mb.keys_in,
                                                  mb.values_in);
  MXOPS_LAUNCH_TRY();
  MXOPS_CUDA_TRY(cub::DeviceRadixSort::SortPairs(
      mb.sort_temp, mb.sort_bytes, mb.keys_in, mb.keys_out, mb.values_in, mb.values_out,
      (int)total, 0, mxops::kKeyShift + mxops::bits_for(batch), s));
  mxops::proposals_output_kernel<<<mxops::blocks_for(batch * post, 256), 256, 0, s>>>(
      mb.keys_out, mb.values_out, nb.keep, nb.cand_boxes, nb.cand_scores, nb.keep_count, k,
      num_levels, post, batch, reinterpret_cast<float4*>(rois), roi_scores, num_rois);
  return mxops::launch_status();
}
