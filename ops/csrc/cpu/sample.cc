/*
 * sample.cc -- balanced random subsampling of matcher output, on the CPU.
 *
 * Every candidate gets a key from a counter-based hash of (seed, image, index); the
 * candidates with the smallest keys are taken (ties in the 38 hash bits: lower index),
 * found in one pass with a bounded heap.
 * That draws a uniform random subset without replacement, and it is the exact rule the
 * CUDA kernel applies through a radix sort, so both pick the same samples.
 */
#include <math.h>

#include <algorithm>

#include "common.h"

namespace mxops {

struct Candidate {
  uint64_t key;
  int32_t index;
  bool operator<(const Candidate& o) const {
    return key < o.key || (key == o.key && index < o.index);
  }
};

// The `take` smallest candidates of class `cls` in one pass: a max-heap of the best so far
// rejects most candidates with one comparison, so the cost is one hash per candidate.
static std::vector<Candidate> smallest(const int32_t* matches, int64_t image, int64_t n,
                                       int cls, int64_t take, uint64_t seed) {
  std::vector<Candidate> heap;
  heap.reserve(take);
  for (int64_t i = 0; i < n && take > 0; ++i) {
    const int c = matches[i] >= 0 ? 0 : (matches[i] == -1 ? 1 : 2);
    if (c != cls) continue;
    Candidate cand{sample_key(seed, image, i, cls), (int32_t)i};
    if ((int64_t)heap.size() < take) {
      heap.push_back(cand);
      std::push_heap(heap.begin(), heap.end());
    } else if (cand < heap.front()) {
      std::pop_heap(heap.begin(), heap.end());
      heap.back() = cand;
      std::push_heap(heap.begin(), heap.end());
    }
  }
  return heap;
}

static void sample_image(const int32_t* matches, float* labels, int32_t* pos_matches,
                         int64_t image, int64_t n, int64_t num_sample, float pos_fraction,
                         uint64_t seed) {
  int64_t num_fg = 0, num_bg = 0;
  for (int64_t i = 0; i < n; ++i) {
    labels[i] = -1.f;
    pos_matches[i] = -1;
    num_fg += matches[i] >= 0;
    num_bg += matches[i] == -1;
  }
  int64_t take_fg, take_bg;
  sample_counts(num_fg, num_bg, num_sample, pos_fraction, &take_fg, &take_bg);
  for (const Candidate& c : smallest(matches, image, n, 0, take_fg, seed)) {
    labels[c.index] = 1.f;
    pos_matches[c.index] = matches[c.index];
  }
  for (const Candidate& c : smallest(matches, image, n, 1, take_bg, seed))
    labels[c.index] = 0.f;
}

}  // namespace mxops

extern "C" int mxops_sample_cpu(const int32_t* matches, float* labels, int32_t* pos_matches,
                                int64_t batch, int64_t n, int64_t num_sample,
                                float pos_fraction, uint64_t seed) {
  if (!mxops::valid_sizes(batch, n) || n > INT32_MAX || num_sample < 0 ||
      !(pos_fraction >= 0.f && pos_fraction <= 1.f))
    return MXOPS_ERR_ARG;
#pragma omp parallel for schedule(dynamic, 1) if (batch > 1)
  for (int64_t b = 0; b < batch; ++b) {
    mxops::sample_image(matches + n * b, labels + n * b, pos_matches + n * b, b, n, num_sample,
                        pos_fraction, seed);
  }
  return MXOPS_OK;
}
