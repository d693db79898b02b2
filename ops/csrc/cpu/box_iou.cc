/*
 * box_iou.cc -- pairwise IoU on the CPU.
 *
 * The inner loop runs over the columns (b boxes) held as structure of arrays, so g++
 * vectorises it; rows are split across OpenMP threads. Each output is computed on its own,
 * so the result does not depend on the thread count.
 */
#include "common.h"

namespace mxops {

// One output row. Cloned for AVX2 (picked at load time when the CPU has it); the
// arithmetic is the same IEEE operations either way, so results do not change.
MXOPS_CPU_CLONES
static void iou_row(const float* a, const BoxesSoA& b, float* row, int64_t m, float offset) {
  const float ax1 = a[0], ay1 = a[1], ax2 = a[2], ay2 = a[3];
  const float area_a = box_area(ax1, ay1, ax2, ay2, offset);
  const float *bx1 = b.x1.data(), *by1 = b.y1.data(), *bx2 = b.x2.data(), *by2 = b.y2.data(),
              *barea = b.area.data();
  for (int64_t j = 0; j < m; ++j) {
    row[j] = box_iou(ax1, ay1, ax2, ay2, area_a, bx1[j], by1[j], bx2[j], by2[j], barea[j],
                     offset);
  }
}

static void iou_rows(const float* a, const BoxesSoA& b, float* out, int64_t n, int64_t m,
                     float offset) {
#pragma omp parallel for schedule(static) if (n * m > 32768)
  for (int64_t i = 0; i < n; ++i) iou_row(a + 4 * i, b, out + i * m, m, offset);
}

}  // namespace mxops

extern "C" int mxops_box_iou_cpu(const float* a, const float* b, float* out, int64_t batch,
                                 int64_t n, int64_t m, float offset) {
  if (!mxops::valid_sizes(batch, n) || m < 0) return MXOPS_ERR_ARG;
  for (int64_t k = 0; k < batch; ++k) {
    mxops::BoxesSoA bs(b + 4 * m * k, m, offset);
    mxops::iou_rows(a + 4 * n * k, bs, out + n * m * k, n, m, offset);
  }
  return MXOPS_OK;
}
