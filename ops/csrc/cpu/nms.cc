/*
 * nms.cc -- greedy NMS and FPN proposal selection on the CPU.
 *
 * Candidates are ordered by one 64-bit key per box, (descending score, index): the order
 * the CUDA radix sort produces. Greedy NMS tests each candidate against the boxes kept so
 * far (structure of arrays, vectorised) and stops once max_keep boxes are kept, so the
 * cost is O(candidates x kept), not O(candidates^2).
 */
#include <math.h>

#include <algorithm>

#include "common.h"

namespace mxops {

inline uint64_t order_key(float score, int64_t index) {
  return ((uint64_t)descending_key(score) << 32) | (uint64_t)index;
}

inline bool box_passes(const float* b, float min_size, float offset) {
  return (b[2] - b[0] + offset) >= min_size && (b[3] - b[1] + offset) >= min_size;
}

// Indices in [begin, begin + count) of one image with a score and a box of at least
// min_size, best first (ties: lower index), at most k of them.
static std::vector<int32_t> top_candidates(const float* boxes, const float* scores,
                                           int64_t begin, int64_t count, int64_t k,
                                           float min_size, float offset) {
  std::vector<uint64_t> keys;
  keys.reserve(count);
  for (int64_t i = begin; i < begin + count; ++i) {
    if (isnan(scores[i]) || !box_passes(boxes + 4 * i, min_size, offset)) continue;
    keys.push_back(order_key(scores[i], i));
  }
  if (k < (int64_t)keys.size()) {
    std::nth_element(keys.begin(), keys.begin() + k, keys.end());
    keys.resize(k);
  }
  std::sort(keys.begin(), keys.end());
  std::vector<int32_t> order(keys.size());
  for (size_t j = 0; j < keys.size(); ++j) order[j] = (int32_t)(keys[j] & 0xffffffffu);
  return order;
}

// Boxes kept so far, as structure of arrays.
struct Kept {
  std::vector<float> x1, y1, x2, y2, area;
  explicit Kept(int64_t cap) { x1.reserve(cap); y1.reserve(cap); x2.reserve(cap);
                               y2.reserve(cap); area.reserve(cap); }
  int64_t size() const { return (int64_t)x1.size(); }
};

// Whether any of kept boxes [from, to) overlaps box b by more than thresh.
MXOPS_CPU_CLONES
static int overlaps_any(const Kept& kept, int64_t from, int64_t to, const float* b,
                        float area_b, float thresh, float offset) {
  int hit = 0;
  const float *x1 = kept.x1.data(), *y1 = kept.y1.data(), *x2 = kept.x2.data(),
              *y2 = kept.y2.data(), *area = kept.area.data();
  for (int64_t k = from; k < to; ++k) {
    float iou = box_iou(x1[k], y1[k], x2[k], y2[k], area[k], b[0], b[1], b[2], b[3], area_b,
                        offset);
    hit |= iou > thresh;
  }
  return hit;
}

// Greedy NMS over candidates in order; writes at most max_keep kept indices.
static int64_t greedy_nms(const float* boxes, const std::vector<int32_t>& order, float thresh,
                          int64_t max_keep, float offset, int32_t* keep) {
  Kept kept(std::min<int64_t>(max_keep, (int64_t)order.size()));
  const int64_t kChunk = 64;  // test in chunks so a suppressed box exits early
  for (int32_t idx : order) {
    if (kept.size() >= max_keep) break;
    const float* b = boxes + 4 * idx;
    float area_b = box_area(b[0], b[1], b[2], b[3], offset);
    bool suppressed = false;
    for (int64_t s = 0; s < kept.size() && !suppressed; s += kChunk)
      suppressed = overlaps_any(kept, s, std::min(s + kChunk, kept.size()), b, area_b,
                                thresh, offset);
    if (suppressed) continue;
    keep[kept.size()] = idx;
    kept.x1.push_back(b[0]); kept.y1.push_back(b[1]); kept.x2.push_back(b[2]);
    kept.y2.push_back(b[3]); kept.area.push_back(area_b);
  }
  return kept.size();
}

}  // namespace mxops

extern "C" int mxops_nms_cpu(const float* boxes, const float* scores, int32_t* keep,
                             int32_t* num_keep, int64_t batch, int64_t n, float iou_thresh,
                             int64_t max_out, float offset) {
  if (!mxops::valid_sizes(batch, n) || n > INT32_MAX || max_out < 0) return MXOPS_ERR_ARG;
#pragma omp parallel for schedule(dynamic, 1) if (batch > 1)
  for (int64_t b = 0; b < batch; ++b) {
    const float* bx = boxes + 4 * n * b;
    std::vector<int32_t> order =
        mxops::top_candidates(bx, scores + n * b, 0, n, n, -INFINITY, offset);
    int32_t* kb = keep + max_out * b;
    int64_t k = mxops::greedy_nms(bx, order, iou_thresh, max_out, offset, kb);
    for (int64_t j = k; j < max_out; ++j) kb[j] = -1;
    num_keep[b] = (int32_t)k;
  }
  return MXOPS_OK;
}

extern "C" int mxops_proposals_cpu(const float* boxes, const float* scores,
                                   const int64_t* level_sizes, int num_levels, float* rois,
                                   float* roi_scores, int32_t* num_rois, int64_t batch,
                                   int64_t n, int64_t pre_nms_top_n, int64_t post_nms_top_n,
                                   float iou_thresh, float min_size, float offset) {
  if (!mxops::valid_sizes(batch, n) || n > INT32_MAX || num_levels <= 0 ||
      pre_nms_top_n < 0 || post_nms_top_n < 0)
    return MXOPS_ERR_ARG;
  std::vector<int64_t> starts(num_levels + 1, 0);
  for (int l = 0; l < num_levels; ++l) {
    if (level_sizes[l] < 0) return MXOPS_ERR_ARG;
    starts[l + 1] = starts[l] + level_sizes[l];
  }
  if (starts[num_levels] != n) return MXOPS_ERR_ARG;
  const int64_t segments = batch * num_levels, post = post_nms_top_n;
  // kept[s * post + j]: the j-th kept box index of segment s = (image, level)
  std::vector<int32_t> kept(segments * post);
  std::vector<int64_t> kept_count(segments);
#pragma omp parallel for schedule(dynamic, 1) if (segments > 1)
  for (int64_t s = 0; s < segments; ++s) {
    int64_t b = s / num_levels, l = s % num_levels;
    const float* bx = boxes + 4 * n * b;
    std::vector<int32_t> order = mxops::top_candidates(
        bx, scores + n * b, starts[l], level_sizes[l], pre_nms_top_n, min_size, offset);
    kept_count[s] = mxops::greedy_nms(bx, order, iou_thresh, post, offset, &kept[s * post]);
  }
  for (int64_t b = 0; b < batch; ++b) {
    // Merge the levels: stable sort of (level, rank) order by score, best first.
    const float* sc = scores + n * b;
    std::vector<int32_t> merged;
    for (int l = 0; l < num_levels; ++l) {
      int64_t s = b * num_levels + l;
      merged.insert(merged.end(), &kept[s * post], &kept[s * post] + kept_count[s]);
    }
    std::stable_sort(merged.begin(), merged.end(), [sc](int32_t i, int32_t j) {
      return mxops::descending_key(sc[i]) < mxops::descending_key(sc[j]);
    });
    int64_t count = std::min<int64_t>(post, (int64_t)merged.size());
    for (int64_t j = 0; j < post; ++j) {
      float* r = rois + 4 * (post * b + j);
      bool has = j < count;
      for (int c = 0; c < 4; ++c) r[c] = has ? boxes[4 * (n * b + merged[j]) + c] : -1.f;
      roi_scores[post * b + j] = has ? sc[merged[j]] : -1.f;
    }
    num_rois[b] = (int32_t)count;
  }
  return MXOPS_OK;
}
