/*
 * box_iou.cu -- pairwise IoU on the GPU.
 *
 * The output (batch * n * m floats) dominates the traffic, so the kernel is shaped around
 * writing it once at full bandwidth with as little arithmetic per output as the IoU needs
 * (see box_iou_tile_kernel).
 */
#include "common.cuh"

namespace mxops {

struct Box { float x1, y1, x2, y2; };

template <bool kVector>
__device__ __forceinline__ Box load_box(const float* p) {
  if (kVector) {
    float4 v = __ldg(reinterpret_cast<const float4*>(p));
    return Box{v.x, v.y, v.z, v.w};
  }
  return Box{__ldg(p), __ldg(p + 1), __ldg(p + 2), __ldg(p + 3)};
}

// General path: each thread writes one output (any m, any alignment).
template <typename Index>
__global__ void box_iou_kernel(const float* __restrict__ a, const float* __restrict__ b,
                               float* __restrict__ out, Index n, Index m, Index total,
                               float offset) {
  const Index stride = (Index)gridDim.x * blockDim.x;
  for (Index e = (Index)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
    const Index row = e / m;  // row of the (batch * n, m) output
    const Index col = e - row * m;
    const Index image = row / n;
    const Box p = load_box<false>(a + 4 * (uint64_t)row);
    const Box q = load_box<false>(b + 4 * ((uint64_t)image * m + col));
    out[e] = box_iou(p.x1, p.y1, p.x2, p.y2, box_area(p.x1, p.y1, p.x2, p.y2, offset),
                     q.x1, q.y1, q.x2, q.y2, box_area(q.x1, q.y1, q.x2, q.y2, offset), offset);
  }
}

// Fast path (m % 4 == 0, 16-byte aligned pointers): a thread owns 4 neighbouring columns
// and kRows rows of one image. Its 4 b boxes and their areas stay in registers and the
// index arithmetic is done once, so the work per output is the IoU itself; each row is one
// 16-byte streaming store, and neighbouring threads store neighbouring columns.
static const int kRows = 8;

template <typename Index>
__global__ void box_iou_tile_kernel(const float* __restrict__ a, const float* __restrict__ b,
                                    float* __restrict__ out, Index n, Index m, Index groups,
                                    Index total, float offset) {
  const Index quads = m / 4;  // float4 columns per row
  const Index stride = (Index)gridDim.x * blockDim.x;
  for (Index e = (Index)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
    const Index g = e / quads;            // (image, row group)
    const Index col = (e - g * quads) * 4;
    const Index image = g / groups;
    const Index row0 = (g - image * groups) * kRows;
    Box q[4];
    float area_q[4];
#pragma unroll
    for (int v = 0; v < 4; ++v) {
      q[v] = load_box<true>(b + 4 * ((uint64_t)image * m + col + v));
      area_q[v] = box_area(q[v].x1, q[v].y1, q[v].x2, q[v].y2, offset);
    }
    const uint64_t first = (uint64_t)image * n + row0;
    const float* pa = a + 4 * first;
    float* po = out + first * m + col;
    const int rows = (int)(n - row0 < (Index)kRows ? n - row0 : (Index)kRows);
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      if (r >= rows) break;
      const Box p = load_box<true>(pa + 4 * r);
      const float area_p = box_area(p.x1, p.y1, p.x2, p.y2, offset);
      float res[4];
#pragma unroll
      for (int v = 0; v < 4; ++v)
        res[v] = box_iou(p.x1, p.y1, p.x2, p.y2, area_p, q[v].x1, q[v].y1, q[v].x2, q[v].y2,
                         area_q[v], offset);
      __stcs(reinterpret_cast<float4*>(po + (uint64_t)r * m),
             make_float4(res[0], res[1], res[2], res[3]));
    }
  }
}

}  // namespace mxops

extern "C" int mxops_box_iou_cuda(const float* a, const float* b, float* out, int64_t batch,
                                  int64_t n, int64_t m, float offset, void* stream) {
  if (batch < 0 || n < 0 || m < 0 || n > UINT32_MAX || m > UINT32_MAX) return MXOPS_ERR_ARG;
  const uint64_t total = (uint64_t)batch * n * m;
  if (total == 0) return MXOPS_OK;
  const bool aligned = ((uintptr_t)a % 16 == 0) && ((uintptr_t)b % 16 == 0) &&
                       ((uintptr_t)out % 16 == 0);
  const int threads = 256;
  cudaStream_t s = mxops::as_stream(stream);
  const bool small = total < (uint64_t(1) << 31);  // 32-bit indices cannot wrap
  if (aligned && m % 4 == 0) {
    const uint64_t groups = (n + mxops::kRows - 1) / mxops::kRows;
    const uint64_t work = batch * groups * (m / 4);
    const unsigned blocks = mxops::blocks_for(work, threads);
    if (small)
      mxops::box_iou_tile_kernel<uint32_t><<<blocks, threads, 0, s>>>(
          a, b, out, (uint32_t)n, (uint32_t)m, (uint32_t)groups, (uint32_t)work, offset);
    else
      mxops::box_iou_tile_kernel<uint64_t><<<blocks, threads, 0, s>>>(
          a, b, out, (uint64_t)n, (uint64_t)m, groups, work, offset);
  } else {
    const unsigned blocks = mxops::blocks_for(total, threads);
    if (small)
      mxops::box_iou_kernel<uint32_t><<<blocks, threads, 0, s>>>(
          a, b, out, (uint32_t)n, (uint32_t)m, (uint32_t)total, offset);
    else
      mxops::box_iou_kernel<uint64_t><<<blocks, threads, 0, s>>>(
          a, b, out, (uint64_t)n, (uint64_t)m, total, offset);
  }
  return mxops::launch_status();
}
