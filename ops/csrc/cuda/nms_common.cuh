/*
 * nms_common.cuh -- the pieces shared by GPU NMS (nms.cu) and proposal selection
 * (proposals.cu).
 *
 * Flow: one radix sort over (segment, invalid, descending score) keys orders every
 * segment's boxes best first (ties keep index order: the sort is stable); a gather copies
 * the first k of each segment; a mask kernel marks, for each candidate, the later
 * candidates it overlaps by more than the threshold (64 per word); a reduce kernel per
 * segment walks the candidates in order, 64 at a time, keeping a box unless a kept box
 * marked it. Only kept boxes mark others, which is exactly greedy NMS (cpu/nms.cc).
 */
#ifndef MXOPS_CUDA_NMS_COMMON_CUH_
#define MXOPS_CUDA_NMS_COMMON_CUH_

#include <cub/cub.cuh>

#include "common.cuh"

namespace mxops {

// The kernels below are static: nms.cu and proposals.cu each compile their own copy.
static const int kMaxSegmentLevels = 16;
static const int kKeyShift = 33;  // bit 32: invalid flag, bits 0-31: descending score

// The segments of one image: level l covers boxes [first[l], first[l + 1]).
struct Levels {
  int count;
  int64_t first[kMaxSegmentLevels + 1];
};

inline bool make_levels(const int64_t* sizes, int count, int64_t n, Levels* lv) {
  if (count <= 0 || count > kMaxSegmentLevels) return false;
  lv->count = count;
  lv->first[0] = 0;
  for (int l = 0; l < count; ++l) {
    if (sizes[l] < 0) return false;
    lv->first[l + 1] = lv->first[l] + sizes[l];
  }
  return lv->first[count] == n;
}

__device__ __forceinline__ int level_of(const Levels& lv, int64_t i) {
  int l = 0;
  while (l + 1 < lv.count && i >= lv.first[l + 1]) ++l;
  return l;
}

static __global__ void segment_keys_kernel(const float* boxes, const float* scores, int64_t n,
                                    int64_t total, Levels lv, float min_size, float offset,
                                    uint64_t* keys, int32_t* index) {
  for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < total;
       j += (int64_t)gridDim.x * blockDim.x) {
    const int64_t b = j / n, i = j - b * n;
    const uint64_t seg = (uint64_t)(b * lv.count + level_of(lv, i));
    const float s = scores[j];
    const float4 bx = reinterpret_cast<const float4*>(boxes)[j];
    const bool valid = !isnan(s) && (bx.z - bx.x + offset) >= min_size &&
                       (bx.w - bx.y + offset) >= min_size;
    keys[j] = (seg << kKeyShift) | ((uint64_t)!valid << 32) | descending_key(s);
    index[j] = (int32_t)i;
  }
}

// Copies the best min(k, valid) boxes of each segment, in order, into candidate arrays.
static __global__ void gather_candidates_kernel(const uint64_t* keys, const int32_t* index,
                                         const float* boxes, const float* scores, int64_t n,
                                         Levels lv, int64_t k, float4* cand_boxes,
                                         float* cand_scores, int32_t* cand_index,
                                         int32_t* cand_count) {
  const int64_t seg = blockIdx.y, b = seg / lv.count;
  const int l = (int)(seg - b * lv.count);
  const int64_t begin = b * n + lv.first[l], len = lv.first[l + 1] - lv.first[l];
  // valid boxes come first in the segment: binary search for the first invalid key
  __shared__ int64_t valid;
  if (threadIdx.x == 0) {
    const uint64_t target = ((uint64_t)seg << kKeyShift) | (uint64_t(1) << 32);
    int64_t lo = 0, hi = len;
    while (lo < hi) {
      int64_t mid = (lo + hi) / 2;
      if (keys[begin + mid] < target) lo = mid + 1; else hi = mid;
    }
    valid = lo < k ? lo : k;
    if (blockIdx.x == 0) cand_count[seg] = (int32_t)valid;
  }
  __syncthreads();
  for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r < valid;
       r += (int64_t)gridDim.x * blockDim.x) {
    const int32_t i = index[begin + r];
    cand_boxes[seg * k + r] = reinterpret_cast<const float4*>(boxes)[b * n + i];
    cand_scores[seg * k + r] = scores[b * n + i];
    cand_index[seg * k + r] = i;
  }
}

// mask[seg][i][w] bit t: candidate i overlaps later candidate 64 * w + t above thresh.
static __global__ void __launch_bounds__(64) nms_mask_kernel(const float4* cand, const int32_t* count,
                                                      int64_t k, int words, float thresh,
                                                      float offset, uint64_t* mask) {
  const int64_t seg = blockIdx.z;
  const int row_block = blockIdx.y, col_block = blockIdx.x;
  const int64_t n = count[seg];
  if (col_block < row_block || (int64_t)row_block * 64 >= n || (int64_t)col_block * 64 >= n)
    return;
  __shared__ float4 cols[64];
  __shared__ float col_area[64];
  const int64_t j0 = (int64_t)col_block * 64;
  const int ncols = (int)(n - j0 < 64 ? n - j0 : 64);
  if (threadIdx.x < ncols) {
    const float4 c = cand[seg * k + j0 + threadIdx.x];
    cols[threadIdx.x] = c;
    col_area[threadIdx.x] = box_area(c.x, c.y, c.z, c.w, offset);
  }
  __syncthreads();
  const int64_t i = (int64_t)row_block * 64 + threadIdx.x;
  if (i >= n) return;
  const float4 r = cand[seg * k + i];
  const float area_r = box_area(r.x, r.y, r.z, r.w, offset);
  uint64_t bits = 0;
  for (int t = 0; t < ncols; ++t) {
    if (j0 + t <= i) continue;
    const float4 c = cols[t];
    if (box_iou(r.x, r.y, r.z, r.w, area_r, c.x, c.y, c.z, c.w, col_area[t], offset) > thresh)
      bits |= uint64_t(1) << t;
  }
  mask[(seg * k + i) * words + col_block] = bits;
}

// Greedy walk over one segment's candidates (one block per segment): keeps at most
// max_keep candidate ranks in keep[seg][*], count in keep_count[seg], rest -1.
//
// Per chunk of 64 candidates, warp 0 settles the chunk (settle_chunk), then the whole block
// ORs the kept boxes' rows into the removed bits of later chunks (8 independent loads per
// thread, one shared atomicOr), while threads 64..127 prefetch the next chunk's diagonal
// words.
static const int kReduceThreads = 1024;

// The greedy set of one chunk. avail: candidates not removed by earlier chunks; lane l
// holds the diagonal masks of boxes l and l + 32. Kept = avail minus what kept boxes
// suppress: iterating K <- avail & ~OR(diag[K]) fixes one more leading box per step and
// stops at the unique fixed point, usually after 2-4 steps. Past 8 steps lane 0 finishes
// the chunk box by box. Returns the kept set (same in every lane).
__device__ __forceinline__ uint64_t settle_chunk(uint64_t avail, uint64_t d0, uint64_t d1,
                                                 const uint64_t* diag, int lane) {
  uint64_t kept = avail;
  bool done = false;
  for (int step = 0; step < 8 && !done; ++step) {
    uint64_t s = (((kept >> lane) & 1) ? d0 : 0) | (((kept >> (lane + 32)) & 1) ? d1 : 0);
    for (int o = 16; o > 0; o >>= 1) s |= __shfl_xor_sync(0xffffffffu, s, o);
    const uint64_t next = avail & ~s;
    done = next == kept;
    kept = next;
  }
  if (!done && lane == 0) {
    uint64_t gone = 0, left = avail;
    kept = 0;
    while (left) {
      const int t = __ffsll((long long)left) - 1;
      kept |= 1ULL << t;
      gone |= diag[t];
      left = avail & ~gone & ((~0ULL << t) << 1);
    }
  }
  return __shfl_sync(0xffffffffu, kept, 0);
}

static __global__ void __launch_bounds__(kReduceThreads)
nms_reduce_kernel(const uint64_t* mask, const int32_t* count, int64_t k, int words,
                  int64_t max_keep, int32_t* keep, int32_t* keep_count) {
  extern __shared__ unsigned long long removed[];  // one bit per candidate
  __shared__ uint64_t diag[2][64];                 // chunk masks against themselves
  __shared__ int chunk_kept[64];
  __shared__ int chunk_n;
  const int64_t seg = blockIdx.x, n = count[seg];
  const int nb = (int)((n + 63) / 64), tid = threadIdx.x;
  const uint64_t* m = mask + seg * k * words;
  int32_t* out = keep + seg * max_keep;
  for (int w = tid; w < nb; w += blockDim.x) removed[w] = 0;
  if (tid < 64 && tid < n) diag[0][tid] = m[(int64_t)tid * words];
  int64_t kept = 0;
  for (int cb = 0; cb < nb && kept < max_keep; ++cb) {
    const int64_t base = (int64_t)cb * 64;
    const int lim = (int)(n - base < 64 ? n - base : 64);
    __syncthreads();  // removed[cb] and diag[cb & 1] complete, chunk_kept free
    if (tid < 32) {
      const uint64_t* d = diag[cb & 1];
      const uint64_t valid = lim == 64 ? ~0ULL : ((1ULL << lim) - 1);
      const uint64_t avail = ~(uint64_t)removed[cb] & valid;
      const uint64_t d0 = tid < lim ? d[tid] : 0, d1 = tid + 32 < lim ? d[tid + 32] : 0;
      const uint64_t set = settle_chunk(avail, d0, d1, d, tid);
      // the cap: only the first (max_keep - kept) boxes of the set are kept
      const int64_t room = max_keep - kept;
      const int allowed = (int)(room < 64 ? room : 64);
      for (int t = tid; t < 64; t += 32) {
        if (!((set >> t) & 1)) continue;
        const int rank = __popcll(set & ((1ULL << t) - 1));
        if (rank < allowed) chunk_kept[rank] = t;
      }
      if (tid == 0) chunk_n = __popcll(set) < allowed ? __popcll(set) : allowed;
    } else if (tid >= 64 && tid < 128 && cb + 1 < nb) {
      const int64_t row = base + 64 + (tid - 64);
      if (row < n) diag[(cb + 1) & 1][tid - 64] = m[row * words + cb + 1];
    }
    __syncthreads();
    const int c = chunk_n, rest = nb - cb - 1, groups = (c + 7) / 8;
    if (tid < c) out[kept + tid] = (int32_t)(base + chunk_kept[tid]);
    for (int item = tid; item < groups * rest; item += blockDim.x) {
      const int g = item / rest, w = cb + 1 + (item - g * rest);
      unsigned long long bits = 0;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int t = 8 * g + j;
        if (t < c) bits |= m[(base + chunk_kept[t]) * words + w];
      }
      if (bits) atomicOr(&removed[w], bits);
    }
    kept += c;
  }
  for (int64_t r = kept + tid; r < max_keep; r += blockDim.x) out[r] = -1;
  if (tid == 0) keep_count[seg] = (int32_t)kept;
}

// Candidate buffers and the launches from sorted keys to kept ranks, shared by both users.
struct NmsBuffers {
  uint64_t *keys_in, *keys_out;
  int32_t *index_in, *index_out;
  float4* cand_boxes;
  float* cand_scores;
  int32_t *cand_index, *cand_count;
  uint64_t* mask;
  int32_t *keep, *keep_count;
  void* sort_temp;
  size_t sort_bytes;
  int words;
};

// Removed bits live in dynamic shared memory next to ~1.3 KB of static shared memory.
inline size_t max_shared_words() { return (48 * 1024 - 2048) / sizeof(uint64_t); }

inline void nms_layout(Workspace* ws, int64_t batch, int64_t n, int levels, int64_t k,
                       int64_t max_keep, NmsBuffers* s) {
  const int64_t total = batch * n, segs = batch * levels;
  s->words = (int)((k + 63) / 64);
  s->keys_in = ws->take<uint64_t>(total);
  s->keys_out = ws->take<uint64_t>(total);
  s->index_in = ws->take<int32_t>(total);
  s->index_out = ws->take<int32_t>(total);
  s->cand_boxes = ws->take<float4>(segs * k);
  s->cand_scores = ws->take<float>(segs * k);
  s->cand_index = ws->take<int32_t>(segs * k);
  s->cand_count = ws->take<int32_t>(segs);
  s->mask = ws->take<uint64_t>(segs * k * s->words);
  s->keep = ws->take<int32_t>(segs * max_keep);
  s->keep_count = ws->take<int32_t>(segs);
  s->sort_bytes = 0;
  cub::DeviceRadixSort::SortPairs(nullptr, s->sort_bytes, s->keys_in, s->keys_out, s->index_in,
                                  s->index_out, (int)total, 0, kKeyShift + bits_for(segs));
  s->sort_temp = ws->take_bytes(s->sort_bytes);
}

// Sort, gather the best k per segment, and run NMS on them. Results in s->keep (ranks into
// the candidate arrays) and s->keep_count.
inline int run_segmented_nms(const float* boxes, const float* scores, int64_t batch,
                             int64_t n, const Levels& lv, int64_t k, int64_t max_keep,
                             float thresh, float min_size, float offset, NmsBuffers* s,
                             cudaStream_t stream) {
  const int64_t total = batch * n, segs = batch * lv.count;
  segment_keys_kernel<<<blocks_for(total, 256), 256, 0, stream>>>(
      boxes, scores, n, total, lv, min_size, offset, s->keys_in, s->index_in);
  MXOPS_LAUNCH_TRY();
  MXOPS_CUDA_TRY(cub::DeviceRadixSort::SortPairs(
      s->sort_temp, s->sort_bytes, s->keys_in, s->keys_out, s->index_in, s->index_out,
      (int)total, 0, kKeyShift + bits_for(segs), stream));
  dim3 gather_grid(blocks_for(k, 256, 1024), (unsigned)segs);
  gather_candidates_kernel<<<gather_grid, 256, 0, stream>>>(
      s->keys_out, s->index_out, boxes, scores, n, lv, k, s->cand_boxes, s->cand_scores,
      s->cand_index, s->cand_count);
  MXOPS_LAUNCH_TRY();
  if (k > 0) {
    dim3 mask_grid((unsigned)s->words, (unsigned)s->words, (unsigned)segs);
    nms_mask_kernel<<<mask_grid, 64, 0, stream>>>(s->cand_boxes, s->cand_count, k, s->words,
                                                  thresh, offset, s->mask);
    MXOPS_LAUNCH_TRY();
  }
  nms_reduce_kernel<<<(unsigned)segs, kReduceThreads, sizeof(uint64_t) * s->words, stream>>>(
      s->mask, s->cand_count, k, s->words, max_keep, s->keep, s->keep_count);
  return launch_status();
}

// Boxes are read as float4: the pointers must be 16-byte aligned (framework allocations are).
inline bool aligned16(const void* p) { return (uintptr_t)p % 16 == 0; }

// Limits of the GPU path (grid sizes, shared memory for the removed bits, 32-bit counts).
inline bool nms_fits(int64_t batch, int64_t n, int levels, int64_t k) {
  const int64_t segs = batch * levels, words = (k + 63) / 64;
  return batch * n <= INT32_MAX && segs <= 65535 && words <= 65535 &&
         (size_t)words <= max_shared_words() && kKeyShift + bits_for(segs) <= 64;
}

}  // namespace mxops

#endif  // MXOPS_CUDA_NMS_COMMON_CUH_
