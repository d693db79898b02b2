/*
 * common.h -- small helpers shared by the CPU kernels.
 */
#ifndef MXOPS_CPU_COMMON_H_
#define MXOPS_CPU_COMMON_H_

#include <stdint.h>

#include <vector>

#include "../box_math.h"
#include "../mxops.h"

// Hot loops are compiled twice, for AVX2 and for the x86-64 baseline; the loader picks
// one. Both run the same IEEE operations (no FMA: -ffp-contract=off), so results agree.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MXOPS_CPU_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define MXOPS_CPU_CLONES
#endif

namespace mxops {

// Boxes as structure of arrays, so that loops over one coordinate vectorise.
struct BoxesSoA {
  std::vector<float> x1, y1, x2, y2, area;

  BoxesSoA(const float* boxes, int64_t n, float offset)
      : x1(n), y1(n), x2(n), y2(n), area(n) {
    for (int64_t i = 0; i < n; ++i) {
      const float* b = boxes + 4 * i;
      x1[i] = b[0]; y1[i] = b[1]; x2[i] = b[2]; y2[i] = b[3];
      area[i] = box_area(b[0], b[1], b[2], b[3], offset);
    }
  }
};

inline bool valid_sizes(int64_t batch, int64_t n) { return batch >= 0 && n >= 0; }

}  // namespace mxops

#endif  // MXOPS_CPU_COMMON_H_
