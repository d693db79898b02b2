/*
 * match.cu -- assign boxes to ground truth by IoU on the GPU.
 *
 * One thread per box; ground truth is staged through shared memory in tiles. Pass 1 finds
 * each box's best gt and, by warp reductions and atomicMax on the IoU bits (IoU >= 0, so
 * integer order is float order), each gt's best IoU. Pass 2 (low-quality matching only)
 * recomputes the IoUs, bit-identical, and promotes the boxes that equal a gt's best.
 * Both passes apply the same rule as cpu/match.cc, so the results are identical.
 */
#include "common.cuh"

namespace mxops {

static const int kTile = 256;  // threads per block and gt per shared-memory tile

struct MatchArgs {
  const float* boxes;
  int shared_boxes;
  const float* gt;
  const float* im_hw;
  int32_t* matches;
  float* max_iou;
  int32_t* arg;         // workspace: best gt per box
  uint32_t* gt_best;    // workspace: best IoU per gt, as float bits
  int64_t n, m;
  float fg, bg, border, offset;
  int low_quality;
};

struct GtTile {
  float x1[kTile], y1[kTile], x2[kTile], y2[kTile], area[kTile];
  unsigned char valid[kTile];
};

__device__ void load_gt_tile(const MatchArgs& p, int64_t image, int64_t first, GtTile* t) {
  const int64_t j = first + threadIdx.x;
  bool ok = false;
  if (j < p.m) {
    const float* g = p.gt + 4 * (image * p.m + j);
    t->x1[threadIdx.x] = g[0]; t->y1[threadIdx.x] = g[1];
    t->x2[threadIdx.x] = g[2]; t->y2[threadIdx.x] = g[3];
    t->area[threadIdx.x] = box_area(g[0], g[1], g[2], g[3], p.offset);
    ok = !is_padding(g[0], g[1], g[2], g[3]);
  }
  t->valid[threadIdx.x] = ok;
}

__device__ bool load_box(const MatchArgs& p, int64_t image, int64_t i, float* b) {
  if (i >= p.n) return false;
  const float* src = p.boxes + 4 * ((p.shared_boxes ? 0 : image * p.n) + i);
  b[0] = src[0]; b[1] = src[1]; b[2] = src[2]; b[3] = src[3];
  b[4] = box_area(b[0], b[1], b[2], b[3], p.offset);
  if (!p.im_hw) return true;
  const float* hw = p.im_hw + 2 * image;
  return inside_image(b[0], b[1], b[2], b[3], hw[0], hw[1], p.border);
}

__device__ __forceinline__ float tile_iou(const GtTile& t, int k, const float* b, float off) {
  return box_iou(b[0], b[1], b[2], b[3], b[4], t.x1[k], t.y1[k], t.x2[k], t.y2[k], t.area[k],
                 off);
}

__device__ __forceinline__ uint32_t warp_max(uint32_t v) {
  for (int d = 16; d > 0; d >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, d));
  return v;
}

__device__ __forceinline__ int32_t classify(float best, int32_t arg, bool valid, bool hit,
                                            const MatchArgs& p) {
  if (!valid) return -2;
  if (best >= p.fg) return arg;
  if (hit && (p.low_quality == 1 || best >= p.bg)) return arg;
  return best < p.bg ? -1 : -2;
}

__global__ void __launch_bounds__(kTile) match_best_kernel(MatchArgs p) {
  __shared__ GtTile tile;
  __shared__ uint32_t tile_best[kTile];
  const int64_t image = blockIdx.y, i = (int64_t)blockIdx.x * kTile + threadIdx.x;
  float b[5];
  const bool valid = load_box(p, image, i, b);
  float best = -1.f;
  int32_t arg = -1;
  for (int64_t first = 0; first < p.m; first += kTile) {
    __syncthreads();  // the previous tile is no longer read
    load_gt_tile(p, image, first, &tile);
    tile_best[threadIdx.x] = 0u;
    __syncthreads();
    const int count = (int)(p.m - first < kTile ? p.m - first : kTile);
    for (int k = 0; k < count; ++k) {
      if (!tile.valid[k]) continue;  // uniform across the block
      const float iou = valid ? tile_iou(tile, k, b, p.offset) : -1.f;
      if (iou > best) { best = iou; arg = (int32_t)(first + k); }
      if (p.low_quality) {
        const uint32_t w = warp_max(iou > 0.f ? __float_as_uint(iou) : 0u);
        if ((threadIdx.x & 31) == 0 && w) atomicMax(&tile_best[k], w);
      }
    }
    __syncthreads();
    if (p.low_quality && tile_best[threadIdx.x])
      atomicMax(&p.gt_best[image * p.m + first + threadIdx.x], tile_best[threadIdx.x]);
  }
  if (i >= p.n) return;
  if (valid && arg < 0) best = 0.f;  // no gt: background
  const int64_t out = image * p.n + i;
  p.max_iou[out] = best;
  p.arg[out] = arg;
  if (!p.low_quality) p.matches[out] = classify(best, arg, valid, false, p);
}

__global__ void __launch_bounds__(kTile) match_low_quality_kernel(MatchArgs p) {
  __shared__ GtTile tile;
  __shared__ float tile_best[kTile];
  const int64_t image = blockIdx.y, i = (int64_t)blockIdx.x * kTile + threadIdx.x;
  float b[5];
  const bool valid = load_box(p, image, i, b);
  bool hit = false;
  for (int64_t first = 0; first < p.m; first += kTile) {
    __syncthreads();
    load_gt_tile(p, image, first, &tile);
    const int64_t j = first + threadIdx.x;
    tile_best[threadIdx.x] = j < p.m ? __uint_as_float(p.gt_best[image * p.m + j]) : 0.f;
    __syncthreads();
    const int count = (int)(p.m - first < kTile ? p.m - first : kTile);
    for (int k = 0; k < count && valid; ++k) {
      if (!tile.valid[k] || !(tile_best[k] > 0.f)) continue;
      hit |= tile_iou(tile, k, b, p.offset) == tile_best[k];
    }
  }
  if (i >= p.n) return;
  const int64_t out = image * p.n + i;
  p.matches[out] = classify(p.max_iou[out], p.arg[out], valid, hit, p);
}

static void match_layout(Workspace* ws, int64_t batch, int64_t n, int64_t m, int32_t** arg,
                         uint32_t** gt_best) {
  *arg = ws->take<int32_t>(batch * n);
  *gt_best = ws->take<uint32_t>(batch * m);
}

}  // namespace mxops

extern "C" size_t mxops_match_cuda_workspace(int64_t batch, int64_t n, int64_t m) {
  mxops::Workspace ws(nullptr);
  int32_t* arg;
  uint32_t* gt_best;
  mxops::match_layout(&ws, batch, n, m, &arg, &gt_best);
  return ws.size();
}

extern "C" int mxops_match_cuda(const float* boxes, int shared_boxes, const float* gt,
                                const float* im_hw, int32_t* matches, float* max_iou,
                                int64_t batch, int64_t n, int64_t m, float fg_thresh,
                                float bg_thresh, int low_quality, float allowed_border,
                                float offset, void* workspace, size_t workspace_bytes,
                                void* stream) {
  if (batch < 0 || n < 0 || m < 0 || low_quality < 0 || low_quality > 2 || batch > 65535)
    return MXOPS_ERR_ARG;
  if (workspace_bytes < mxops_match_cuda_workspace(batch, n, m)) return MXOPS_ERR_WORKSPACE;
  if (batch == 0 || n == 0) return MXOPS_OK;
  mxops::Workspace ws(workspace);
  mxops::MatchArgs p{boxes, shared_boxes, gt, im_hw, matches, max_iou, nullptr, nullptr,
                     n, m, fg_thresh, bg_thresh, allowed_border, offset, low_quality};
  mxops::match_layout(&ws, batch, n, m, &p.arg, &p.gt_best);
  cudaStream_t s = mxops::as_stream(stream);
  if (m > 0) MXOPS_CUDA_TRY(cudaMemsetAsync(p.gt_best, 0, sizeof(uint32_t) * batch * m, s));
  dim3 grid((unsigned)((n + mxops::kTile - 1) / mxops::kTile), (unsigned)batch);
  mxops::match_best_kernel<<<grid, mxops::kTile, 0, s>>>(p);
  MXOPS_LAUNCH_TRY();
  if (low_quality) mxops::match_low_quality_kernel<<<grid, mxops::kTile, 0, s>>>(p);
  return mxops::launch_status();
}
