/*
 * status.cu -- CUDA status text and a memset for the wrappers (libraries built with CUDA only).
 */
#include "common.cuh"

extern "C" const char* mxops_cuda_status_string(int status) {
  if (status > 0) return cudaGetErrorString(static_cast<cudaError_t>(status));
  return mxops_status_string(status);
}

// Zero `bytes` bytes of device memory on the stream (gradients of the MXNet operators).
extern "C" int mxops_fill_zero_cuda(void* ptr, size_t bytes, void* stream) {
  if (bytes == 0) return MXOPS_OK;
  return (int)cudaMemsetAsync(ptr, 0, bytes, mxops::as_stream(stream));
}
