/*
 * sample.cu -- balanced random subsampling on the GPU.
 *
 * The CPU picks, per image and class, the candidates with the smallest hash keys
 * (cpu/sample.cc). Here one radix sort over (image, class, hash) keys puts every image's
 * foreground then background candidates in that same order (the sort is stable, so equal
 * hashes stay in index order), and a scatter kernel labels the first few of each class.
 */
#include <cub/cub.cuh>

#include "common.cuh"

namespace mxops {

static const int kImageShift = 40;  // sample_key() uses the low 40 bits

__global__ void sample_keys_kernel(const int32_t* matches, uint64_t* keys, int32_t* index,
                                   int64_t n, int64_t total, uint64_t seed) {
  for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < total;
       j += (int64_t)gridDim.x * blockDim.x) {
    const int64_t b = j / n, i = j - b * n;
    const int32_t mt = matches[j];
    const int cls = mt >= 0 ? 0 : (mt == -1 ? 1 : 2);
    keys[j] = ((uint64_t)b << kImageShift) | sample_key(seed, b, i, cls);
    index[j] = (int32_t)i;
  }
}

// Per image: how many sorted keys are foreground, and where background ends.
__global__ void class_bounds_kernel(const uint64_t* keys, int64_t n, int64_t batch,
                                    int64_t* bounds) {
  const int64_t b = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= batch) return;
  const uint64_t* k = keys + b * n;
  for (int cls = 1; cls <= 2; ++cls) {  // lower bound of the first key of class `cls`
    const uint64_t target = ((uint64_t)b << kImageShift) | ((uint64_t)cls << 38);
    int64_t lo = 0, hi = n;
    while (lo < hi) {
      int64_t mid = (lo + hi) / 2;
      if (k[mid] < target) lo = mid + 1; else hi = mid;
    }
    bounds[2 * b + cls - 1] = lo;
  }
}

__global__ void sample_scatter_kernel(const uint64_t* keys, const int32_t* index,
                                      const int64_t* bounds, const int32_t* matches,
                                      float* labels, int32_t* pos_matches, int64_t n,
                                      int64_t total, int64_t num_sample, float pos_fraction) {
  for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < total;
       j += (int64_t)gridDim.x * blockDim.x) {
    const int64_t b = j / n, rank = j - b * n;
    const int64_t fg = bounds[2 * b], fg_bg = bounds[2 * b + 1];
    int64_t take_fg, take_bg;
    sample_counts(fg, fg_bg - fg, num_sample, pos_fraction, &take_fg, &take_bg);
    const int cls = (int)((keys[j] >> 38) & 3u);
    const int64_t out = b * n + index[j];
    float label = -1.f;
    if (cls == 0 && rank < take_fg) label = 1.f;
    if (cls == 1 && rank - fg < take_bg) label = 0.f;
    labels[out] = label;
    pos_matches[out] = label > 0.f ? matches[out] : -1;
  }
}

struct SampleBuffers {
  uint64_t *keys_in, *keys_out;
  int32_t *index_in, *index_out;
  int64_t* bounds;
  void* sort_temp;
  size_t sort_bytes;
};

static void sample_layout(Workspace* ws, int64_t batch, int64_t n, SampleBuffers* s) {
  const int64_t total = batch * n;
  s->keys_in = ws->take<uint64_t>(total);
  s->keys_out = ws->take<uint64_t>(total);
  s->index_in = ws->take<int32_t>(total);
  s->index_out = ws->take<int32_t>(total);
  s->bounds = ws->take<int64_t>(2 * batch);
  s->sort_bytes = 0;
  cub::DeviceRadixSort::SortPairs(nullptr, s->sort_bytes, s->keys_in, s->keys_out, s->index_in,
                                  s->index_out, (int)total, 0,
                                  kImageShift + bits_for(batch));
  s->sort_temp = ws->take_bytes(s->sort_bytes);
}

}  // namespace mxops

extern "C" size_t mxops_sample_cuda_workspace(int64_t batch, int64_t n) {
  mxops::Workspace ws(nullptr);
  mxops::SampleBuffers s;
  mxops::sample_layout(&ws, batch, n, &s);
  return ws.size();
}

extern "C" int mxops_sample_cuda(const int32_t* matches, float* labels, int32_t* pos_matches,
                                 int64_t batch, int64_t n, int64_t num_sample,
                                 float pos_fraction, uint64_t seed, void* workspace,
                                 size_t workspace_bytes, void* stream) {
  if (batch < 0 || n < 0 || batch * n > INT32_MAX || batch >= (int64_t(1) << 24) ||
      num_sample < 0 || !(pos_fraction >= 0.f && pos_fraction <= 1.f))
    return MXOPS_ERR_ARG;
  if (workspace_bytes < mxops_sample_cuda_workspace(batch, n)) return MXOPS_ERR_WORKSPACE;
  const int64_t total = batch * n;
  if (total == 0) return MXOPS_OK;
  mxops::Workspace ws(workspace);
  mxops::SampleBuffers sb;
  mxops::sample_layout(&ws, batch, n, &sb);
  cudaStream_t s = mxops::as_stream(stream);
  const int threads = 256;
  const unsigned blocks = mxops::blocks_for(total, threads);
  mxops::sample_keys_kernel<<<blocks, threads, 0, s>>>(matches, sb.keys_in, sb.index_in, n,
                                                       total, seed);
  MXOPS_LAUNCH_TRY();
  MXOPS_CUDA_TRY(cub::DeviceRadixSort::SortPairs(
      sb.sort_temp, sb.sort_bytes, sb.keys_in, sb.keys_out, sb.index_in, sb.index_out,
      (int)total, 0, mxops::kImageShift + mxops::bits_for(batch), s));
  mxops::class_bounds_kernel<<<mxops::blocks_for(batch, 64), 64, 0, s>>>(sb.keys_out, n, batch,
                                                                         sb.bounds);
  MXOPS_LAUNCH_TRY();
  mxops::sample_scatter_kernel<<<blocks, threads, 0, s>>>(sb.keys_out, sb.index_out, sb.bounds,
                                                          matches, labels, pos_matches, n,
                                                          total, num_sample, pos_fraction);
  return mxops::launch_status();
}
