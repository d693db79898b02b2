/*
 * nms.cu -- greedy NMS per image on the GPU (see nms_common.cuh for the method).
 */
#include "nms_common.cuh"

namespace mxops {

// keep[b][r] = original index of the r-th kept candidate of image b.
__global__ void nms_output_kernel(const int32_t* keep_rank, const int32_t* keep_count,
                                  const int32_t* cand_index, int64_t k, int64_t max_out,
                                  int64_t batch, int32_t* keep, int32_t* num_keep) {
  const int64_t total = batch * max_out;
  for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < total;
       j += (int64_t)gridDim.x * blockDim.x) {
    const int64_t b = j / max_out, r = j - b * max_out;
    const int32_t rank = keep_rank[j];
    keep[j] = rank >= 0 ? cand_index[b * k + rank] : -1;
    if (r == 0) num_keep[b] = keep_count[b];
  }
}

}  // namespace mxops

extern "C" size_t mxops_nms_cuda_workspace(int64_t batch, int64_t n, int64_t max_out) {
  mxops::Workspace ws(nullptr);
  mxops::NmsBuffers s;
  mxops::nms_layout(&ws, batch, n, 1, n, max_out, &s);
  return ws.size();
}

extern "C" int mxops_nms_cuda(const float* boxes, const float* scores, int32_t* keep,
                              int32_t* num_keep, int64_t batch, int64_t n, float iou_thresh,
                              int64_t max_out, float offset, void* workspace,
                              size_t workspace_bytes, void* stream) {
  if (batch < 0 || n < 0 || max_out < 0 || !mxops::aligned16(boxes)) return MXOPS_ERR_ARG;
  if (!mxops::nms_fits(batch, n, 1, n)) return MXOPS_ERR_TOO_LARGE;
  if (workspace_bytes < mxops_nms_cuda_workspace(batch, n, max_out))
    return MXOPS_ERR_WORKSPACE;
  if (batch == 0) return MXOPS_OK;
  cudaStream_t s = mxops::as_stream(stream);
  if (max_out == 0) return MXOPS_OK;
  if (n == 0) {  // nothing to keep: -1 everywhere, counts 0
    MXOPS_CUDA_TRY(cudaMemsetAsync(keep, 0xff, sizeof(int32_t) * batch * max_out, s));
    MXOPS_CUDA_TRY(cudaMemsetAsync(num_keep, 0, sizeof(int32_t) * batch, s));
    return MXOPS_OK;
  }
  mxops::Workspace ws(workspace);
  mxops::NmsBuffers buf;
  mxops::nms_layout(&ws, batch, n, 1, n, max_out, &buf);
  mxops::Levels lv;
  mxops::make_levels(&n, 1, n, &lv);
  int st = mxops::run_segmented_nms(boxes, scores, batch, n, lv, n, max_out, iou_thresh,
                                    -INFINITY, offset, &buf, s);
  if (st != MXOPS_OK) return st;
  mxops::nms_output_kernel<<<mxops::blocks_for(batch * max_out, 256), 256, 0, s>>>(
      buf.keep, buf.keep_count, buf.cand_index, n, max_out, batch, keep, num_keep);
  return mxops::launch_status();
}
