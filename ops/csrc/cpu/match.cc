/*
 * match.cc -- assign boxes (anchors, proposals) to ground truth by IoU, on the CPU.
 *
 * Two passes over blocks of boxes: the first finds each box's best gt and each gt's best
 * IoU, the second (only for low-quality matching) recomputes the IoUs, in the few blocks
 * that hold a gt's best, to find the boxes that equal it. Recomputing costs less than
 * storing an n x m matrix and gives the same bits. Loops run gt-outer, box-inner over structure-of-arrays blocks so that
 * g++ vectorises them.
 */
#include <algorithm>

#include "common.h"

namespace mxops {

static const int64_t kBlock = 256;

// The valid (non-padding) gt of one image.
struct GtBoxes {
  std::vector<int32_t> index;
  std::vector<float> x1, y1, x2, y2, area;

  GtBoxes(const float* gt, int64_t m, float offset) {
    for (int64_t j = 0; j < m; ++j) {
      const float* g = gt + 4 * j;
      if (is_padding(g[0], g[1], g[2], g[3])) continue;
      index.push_back((int32_t)j);
      x1.push_back(g[0]); y1.push_back(g[1]); x2.push_back(g[2]); y2.push_back(g[3]);
      area.push_back(box_area(g[0], g[1], g[2], g[3], offset));
    }
  }
  int64_t size() const { return (int64_t)index.size(); }
};

// A block of at most kBlock boxes as structure of arrays; excluded boxes are flagged.
struct BoxBlock {
  float x1[kBlock], y1[kBlock], x2[kBlock], y2[kBlock], area[kBlock], valid[kBlock];
  int64_t count;

  BoxBlock(const float* boxes, int64_t start, int64_t count_, const float* im_hw,
           float border, float offset) : count(count_) {
    for (int64_t k = 0; k < count; ++k) {
      const float* b = boxes + 4 * (start + k);
      x1[k] = b[0]; y1[k] = b[1]; x2[k] = b[2]; y2[k] = b[3];
      area[k] = box_area(b[0], b[1], b[2], b[3], offset);
      valid[k] = (!im_hw || inside_image(b[0], b[1], b[2], b[3], im_hw[0], im_hw[1], border))
                 ? 1.f : 0.f;
    }
  }
};

// IoU of gt j with every box of the block; excluded boxes read -1.
MXOPS_CPU_CLONES
static void block_ious(const BoxBlock& bb, const GtBoxes& gt, int64_t j, float offset,
                       float* iou) {
  const float gx1 = gt.x1[j], gy1 = gt.y1[j], gx2 = gt.x2[j], gy2 = gt.y2[j];
  const float garea = gt.area[j];
  for (int64_t k = 0; k < bb.count; ++k) {
    float v = box_iou(bb.x1[k], bb.y1[k], bb.x2[k], bb.y2[k], bb.area[k], gx1, gy1, gx2, gy2,
                      garea, offset);
    iou[k] = bb.valid[k] > 0.f ? v : -1.f;
  }
}

// Pass 1, one gt against a block: keep each box's best IoU and gt (the first gt on ties)
// and return the gt's best IoU over the block.
MXOPS_CPU_CLONES
static float update_best(const BoxBlock& bb, const GtBoxes& gt, int64_t j, float offset,
                         float* __restrict best, int32_t* __restrict arg) {
  float iou[kBlock];
  block_ious(bb, gt, j, offset, iou);
  float m = 0.f;
  for (int64_t k = 0; k < bb.count; ++k) {
    int32_t better = iou[k] > best[k];
    best[k] = better ? iou[k] : best[k];
    arg[k] = better ? (int32_t)j : arg[k];
  }
  for (int64_t k = 0; k < bb.count; ++k) m = fmax2(m, iou[k]);
  return m;
}

// Pass 1 on a block: best IoU and its gt per box, best IoU per gt over this block
// (block_max) and so far (gt_max).
static void best_matches(const BoxBlock& bb, const GtBoxes& gt, float offset, float* best,
                         int32_t* arg, float* block_max, float* gt_max) {
  float lbest[kBlock];
  int32_t larg[kBlock];
  for (int64_t k = 0; k < bb.count; ++k) { lbest[k] = -1.f; larg[k] = -1; }
  for (int64_t j = 0; j < gt.size(); ++j) {
    block_max[j] = update_best(bb, gt, j, offset, lbest, larg);
    gt_max[j] = fmax2(gt_max[j], block_max[j]);
  }
  // With no gt at all a box in the image has best IoU 0 (background).
  for (int64_t k = 0; k < bb.count; ++k) {
    best[k] = (larg[k] < 0 && bb.valid[k] > 0.f) ? 0.f : lbest[k];
    arg[k] = larg[k];
  }
}

// Pass 2 on a block: whether each box equals the best IoU of some gt (which must be > 0).
// Only gt whose best IoU occurs in this block (block_max, from pass 1) need a look.
static void low_quality_hits(const BoxBlock& bb, const GtBoxes& gt, const float* gt_max,
                             const float* block_max, float offset, unsigned char* hit) {
  float iou[kBlock];
  for (int64_t k = 0; k < bb.count; ++k) hit[k] = 0;
  for (int64_t j = 0; j < gt.size(); ++j) {
    if (!(gt_max[j] > 0.f) || block_max[j] != gt_max[j]) continue;
    block_ious(bb, gt, j, offset, iou);
    for (int64_t k = 0; k < bb.count; ++k) hit[k] |= (unsigned char)(iou[k] == gt_max[j]);
  }
}

struct MatchParams {
  float fg, bg, border, offset;
  int low_quality;
};

static int32_t classify(float best, int32_t arg, bool valid, bool hit, const MatchParams& p) {
  if (!valid) return -2;
  if (best >= p.fg) return arg;
  if (hit && (p.low_quality == 1 || best >= p.bg)) return arg;
  return best < p.bg ? -1 : -2;
}

static void match_image(const float* boxes, const float* gt_rows, const float* im_hw,
                        int32_t* matches, float* max_iou, int64_t n, int64_t m,
                        const MatchParams& p) {
  GtBoxes gt(gt_rows, m, p.offset);
  const int64_t ng = gt.size(), nblocks = (n + kBlock - 1) / kBlock;
  std::vector<float> gt_max(ng, 0.f), block_max(nblocks * ng);
  std::vector<int32_t> arg(n);
#pragma omp parallel if (n * (ng + 1) > 16384)
  {
    std::vector<float> local_max(ng, 0.f);
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      int64_t s = blk * kBlock, c = std::min(kBlock, n - s);
      BoxBlock bb(boxes, s, c, im_hw, p.border, p.offset);
      best_matches(bb, gt, p.offset, max_iou + s, arg.data() + s, &block_max[blk * ng],
                   local_max.data());
    }
#pragma omp critical
    for (int64_t j = 0; j < ng; ++j) gt_max[j] = fmax2(gt_max[j], local_max[j]);
#pragma omp barrier
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      int64_t s = blk * kBlock, c = std::min(kBlock, n - s);
      BoxBlock bb(boxes, s, c, im_hw, p.border, p.offset);
      unsigned char hit[kBlock] = {0};
      if (p.low_quality)
        low_quality_hits(bb, gt, gt_max.data(), &block_max[blk * ng], p.offset, hit);
      for (int64_t k = 0; k < c; ++k) {
        int32_t a = arg[s + k];
        matches[s + k] = classify(max_iou[s + k], a < 0 ? -1 : gt.index[a], bb.valid[k] > 0.f,
                                  hit[k] != 0, p);
      }
    }
  }
}

}  // namespace mxops

extern "C" int mxops_match_cpu(const float* boxes, int shared_boxes, const float* gt,
                               const float* im_hw, int32_t* matches, float* max_iou,
                               int64_t batch, int64_t n, int64_t m, float fg_thresh,
                               float bg_thresh, int low_quality, float allowed_border,
                               float offset) {
  if (!mxops::valid_sizes(batch, n) || m < 0 || low_quality < 0 || low_quality > 2)
    return MXOPS_ERR_ARG;
  mxops::MatchParams p{fg_thresh, bg_thresh, allowed_border, offset, low_quality};
  for (int64_t b = 0; b < batch; ++b) {
    mxops::match_image(boxes + (shared_boxes ? 0 : 4 * n * b), gt + 4 * m * b,
                       im_hw ? im_hw + 2 * b : nullptr, matches + n * b, max_iou + n * b, n, m,
                       p);
  }
  return MXOPS_OK;
}
