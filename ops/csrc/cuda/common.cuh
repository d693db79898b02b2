/*
 * common.cuh -- helpers shared by the CUDA launchers.
 *
 * These files never include MXNet's lib_api.h (it pulls curand headers into nvcc builds);
 * they only implement the C ABI of ../mxops.h.
 */
#ifndef MXOPS_CUDA_COMMON_CUH_
#define MXOPS_CUDA_COMMON_CUH_

#include <cuda_runtime.h>
#include <stdint.h>

#include "../box_math.h"
#include "../mxops.h"

namespace mxops {

inline cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

// Status of the last launch: 0 or the cudaError_t as a positive int.
inline int launch_status() {
  cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? MXOPS_OK : (int)err;
}

#define MXOPS_CUDA_TRY(call)                         \
  do {                                               \
    cudaError_t err_ = (call);                       \
    if (err_ != cudaSuccess) return (int)err_;       \
  } while (0)

#define MXOPS_LAUNCH_TRY()                           \
  do {                                               \
    int st_ = mxops::launch_status();                \
    if (st_ != MXOPS_OK) return st_;                 \
  } while (0)

inline unsigned blocks_for(int64_t work, int threads, int64_t cap = 65535LL * 32) {
  int64_t b = (work + threads - 1) / threads;
  if (b < 1) b = 1;
  return (unsigned)(b < cap ? b : cap);
}

// Carves one workspace buffer into aligned arrays. Run once with a null base to learn the
// size (mxops_*_cuda_workspace), then with the real buffer: same calls, same layout.
class Workspace {
 public:
  explicit Workspace(void* base) : base_(static_cast<char*>(base)), used_(0) {}
  template <typename T>
  T* take(size_t count) {
    used_ = (used_ + 255) & ~size_t(255);
    T* p = base_ ? reinterpret_cast<T*>(base_ + used_) : nullptr;
    used_ += count * sizeof(T);
    return p;
  }
  void* take_bytes(size_t bytes) { return take<char>(bytes); }
  size_t size() const { return (used_ + 255) & ~size_t(255); }

 private:
  char* base_;
  size_t used_;
};

// Number of bits needed to hold values 0 .. count - 1.
inline int bits_for(int64_t count) {
  int bits = 0;
  while (bits < 62 && (int64_t(1) << bits) < count) ++bits;
  return bits;
}

}  // namespace mxops

#endif  // MXOPS_CUDA_COMMON_CUH_
