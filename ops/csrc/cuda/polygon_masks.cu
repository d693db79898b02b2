/*
 * polygon_masks.cu -- M x M binary mask targets from polygons on the GPU.
 *
 * One block per RoI, one thread per mask pixel (looping when M*M > blockDim). Each thread
 * counts the edges of the matched gt's polygons that cross its row to the right of its
 * centre: the same crossing values and test as the CPU scanline (cpu/polygon_masks.cc),
 * so the masks are identical. Vertex reads are the same address across the block
 * (broadcast), so the edges cost little bandwidth.
 */
#include "common.cuh"

namespace mxops {

__global__ void polygon_masks_kernel(const float* rois, const int32_t* matches,
                                     const float* verts, const int32_t* polys, float* out,
                                     int64_t r, int64_t v, int64_t q, int64_t size) {
  const int64_t br = blockIdx.x, b = br / r;
  const int32_t g = matches[br];
  const float* roi = rois + 4 * br;
  const float x1 = roi[0], y1 = roi[1];
  const float sx = roi_scale(roi[0], roi[2], size), sy = roi_scale(roi[1], roi[3], size);
  const float* vb = verts + 2 * v * b;
  const int32_t* pb = polys + 3 * q * b;
  const int64_t cells = size * size;
  for (int64_t c = threadIdx.x; c < cells; c += blockDim.x) {
    const int64_t row = c / size, col = c - row * size;
    const float py = (float)row + 0.5f, px = (float)col + 0.5f;
    bool inside = false;
    for (int64_t j = 0; j < q && g >= 0; ++j) {
      const int32_t* p = pb + 3 * j;
      const int64_t start = p[1], count = p[2];
      if (p[0] != g || start < 0 || count < 3 || start + count > v) continue;
      bool odd = false;
      float x0 = (vb[2 * (start + count - 1)] - x1) * sx;
      float y0 = (vb[2 * (start + count - 1) + 1] - y1) * sy;
      for (int64_t k = 0; k < count; ++k) {  // edge from vertex k-1 to vertex k
        const float xk = (vb[2 * (start + k)] - x1) * sx;
        const float yk = (vb[2 * (start + k) + 1] - y1) * sy;
        if (edge_straddles(y0, yk, py) && px < edge_crossing(x0, y0, xk, yk, py)) odd = !odd;
        x0 = xk;
        y0 = yk;
      }
      inside |= odd;
    }
    out[cells * br + c] = inside ? 1.f : 0.f;
  }
}

}  // namespace mxops

extern "C" int mxops_polygon_masks_cuda(const float* rois, const int32_t* matches,
                                        const float* verts, const int32_t* polys, float* out,
                                        int64_t batch, int64_t r, int64_t v, int64_t q,
                                        int64_t mask_size, void* stream) {
  if (batch < 0 || r < 0 || v < 0 || q < 0 || mask_size <= 0 || batch * r > INT32_MAX)
    return MXOPS_ERR_ARG;
  if (batch * r == 0) return MXOPS_OK;
  const int64_t cells = mask_size * mask_size;
  const int threads = cells >= 1024 ? 1024 : (int)((cells + 31) / 32 * 32);
  mxops::polygon_masks_kernel<<<(unsigned)(batch * r), threads, 0,
                                mxops::as_stream(stream)>>>(rois, matches, verts, polys, out,
                                                            r, v, q, mask_size);
  return mxops::launch_status();
}
