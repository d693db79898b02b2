/*
 * paste_masks.cu -- detections' S x S mask probabilities pasted into the image, on the GPU.
 *
 * The output is zeroed with one cudaMemsetAsync (most of every plane is outside its box),
 * then a kernel visits only each detection's span (paste_span): blockIdx.x is the
 * detection, blockIdx.y strides over the lines of its span, the threads run along each line
 * (the contiguous axis of the plane, so that their writes coalesce), and a pixel that
 * reaches the threshold writes its 1. The value is the CPU kernel's (cpu/paste_masks.cc)
 * float for float: the same box_math.h formulas in the same order, a tap outside the mask
 * read as 0.
 */
#include "common.cuh"

namespace mxops {

constexpr int kPasteThreads = 256;
constexpr int kPasteLineBlocks = 64;  // blocks along a detection's span

__device__ __forceinline__ float mask_at(const float* mask, int64_t size, int64_t row,
                                         int64_t col) {
  return (row >= 0 && row < size && col >= 0 && col < size) ? __ldg(mask + row * size + col)
                                                            : 0.f;
}

// The bilinear value at image pixel (x, y): first along x within two mask rows, then along
// y, as cpu/paste_masks.cc's bilinear().
__device__ __forceinline__ float paste_value(const float* mask, int64_t size, const float* box,
                                             float sx, float sy, int64_t x, int64_t y) {
  int64_t r, c;
  float fy, fx;
  paste_tap(paste_coord(y, box[1], sy), &r, &fy);
  paste_tap(paste_coord(x, box[0], sx), &c, &fx);
  const float upper = paste_lerp(mask_at(mask, size, r, c), mask_at(mask, size, r, c + 1), fx);
  const float lower = paste_lerp(mask_at(mask, size, r + 1, c),
                                 mask_at(mask, size, r + 1, c + 1), fx);
  return paste_lerp(upper, lower, fy);
}

template <bool kColumnMajor>
__global__ void paste_masks_kernel(const float* masks, const float* boxes, uint8_t* out,
                                   int64_t size, int64_t height, int64_t width,
                                   float threshold) {
  const int64_t i = blockIdx.x;
  const float* box = boxes + 4 * i;
  if (!paste_box_finite(box)) return;
  const float sx = paste_scale(box[0], box[2], size), sy = paste_scale(box[1], box[3], size);
  int64_t x0, x1, y0, y1;
  paste_span(box[0], sx, size, width, &x0, &x1);
  paste_span(box[1], sy, size, height, &y0, &y1);
  const float* mask = masks + size * size * i;
  uint8_t* plane = out + height * width * i;
  // Lines are rows (row-major planes) or columns (column-major planes).
  const int64_t line0 = kColumnMajor ? x0 : y0, line1 = kColumnMajor ? x1 : y1;
  const int64_t along0 = kColumnMajor ? y0 : x0, along1 = kColumnMajor ? y1 : x1;
  for (int64_t line = line0 + blockIdx.y; line < line1; line += gridDim.y) {
    for (int64_t along = along0 + threadIdx.x; along < along1; along += blockDim.x) {
      const int64_t x = kColumnMajor ? line : along, y = kColumnMajor ? along : line;
      if (paste_value(mask, size, box, sx, sy, x, y) >= threshold)
        plane[kColumnMajor ? x * height + y : y * width + x] = 1;
    }
  }
}

}  // namespace mxops

extern "C" int mxops_paste_masks_cuda(const float* masks, const float* boxes, uint8_t* out,
                                      int64_t n, int64_t mask_size, int64_t height,
                                      int64_t width, float threshold, int column_major,
                                      void* stream) {
  if (n < 0 || mask_size <= 0 || mask_size > 1024 || height <= 0 || width <= 0 ||
      !(threshold > 0.f) || n > INT32_MAX)
    return MXOPS_ERR_ARG;
  if (n == 0) return MXOPS_OK;
  cudaStream_t s = mxops::as_stream(stream);
  MXOPS_CUDA_TRY(cudaMemsetAsync(out, 0, (size_t)(n * height * width), s));
  const int64_t lines = column_major ? width : height;
  const dim3 grid((unsigned)n, (unsigned)(lines < mxops::kPasteLineBlocks
                                              ? lines : mxops::kPasteLineBlocks));
  if (column_major)
    mxops::paste_masks_kernel<true><<<grid, mxops::kPasteThreads, 0, s>>>(
        masks, boxes, out, mask_size, height, width, threshold);
  else
    mxops::paste_masks_kernel<false><<<grid, mxops::kPasteThreads, 0, s>>>(
        masks, boxes, out, mask_size, height, width, threshold);
  return mxops::launch_status();
}
