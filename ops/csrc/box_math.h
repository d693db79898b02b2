/*
 * box_math.h -- the arithmetic that the CPU and CUDA kernels share.
 *
 * Each formula is written once here and compiled by g++ (with -ffp-contract=off) and nvcc
 * (with --fmad=false), so CPU and GPU results agree bit for bit for everything but exp/log:
 * no fused multiply-add changes a rounding on one side only. That lets the GPU harness
 * compare IoU, matching, sampling, NMS and masks exactly.
 */
#ifndef MXOPS_BOX_MATH_H_
#define MXOPS_BOX_MATH_H_

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define MXOPS_HD __host__ __device__ __forceinline__
#else
#define MXOPS_HD inline
#endif

namespace mxops {

// min/max as plain selects: they vectorise on the CPU (minps/maxps) and mean the same
// on both sides.
MXOPS_HD float fmin2(float a, float b) { return a < b ? a : b; }
MXOPS_HD float fmax2(float a, float b) { return a > b ? a : b; }

// Area of a box; empty (0) when the width or height is not positive.
MXOPS_HD float box_area(float x1, float y1, float x2, float y2, float offset) {
  return fmax2(x2 - x1 + offset, 0.f) * fmax2(y2 - y1 + offset, 0.f);
}

// IoU of box a and box b given their precomputed areas. Symmetric in (a, b) bit for bit:
// min, max, products and the sum area_a + area_b all commute exactly. Written without
// branches so that the CPU loops over it vectorise.
MXOPS_HD float box_iou(float ax1, float ay1, float ax2, float ay2, float area_a,
                       float bx1, float by1, float bx2, float by2, float area_b,
                       float offset) {
  float iw = fmin2(ax2, bx2) - fmax2(ax1, bx1) + offset;
  float ih = fmin2(ay2, by2) - fmax2(ay1, by1) + offset;
  float inter = fmax2(iw, 0.f) * fmax2(ih, 0.f);
  float uni = area_a + area_b - inter;
#if defined(__CUDA_ARCH__)
  // Disjoint boxes skip the IEEE division (most pairs in a large IoU matrix). Same bits:
  // inter is +0 or positive, and +0 / uni is +0.
  return (inter > 0.f && uni > 0.f) ? inter / uni : 0.f;
#else
  float safe = uni > 0.f ? uni : 1.f;  // branch-free, so that the CPU loops vectorise
  return uni > 0.f ? inter / safe : 0.f;
#endif
}

// Regression target of box `a` towards box `g`: ((dx, dy, log dw, log dh) - means) / stds
// with centres at x1 + w / 2, as gluoncv's NormalizedBoxCenterEncoder (offset 0) and
// maskrcnn-benchmark's BoxCoder (offset 1) compute it.
MXOPS_HD void encode_box(const float* a, const float* g, const float* means,
                         const float* stds, float offset, float* t) {
  float aw = a[2] - a[0] + offset, ah = a[3] - a[1] + offset;
  float ax = a[0] + 0.5f * aw, ay = a[1] + 0.5f * ah;
  float gw = g[2] - g[0] + offset, gh = g[3] - g[1] + offset;
  float gx = g[0] + 0.5f * gw, gy = g[1] + 0.5f * gh;
  t[0] = ((gx - ax) / aw - means[0]) / stds[0];
  t[1] = ((gy - ay) / ah - means[1]) / stds[1];
  t[2] = (logf(gw / aw) - means[2]) / stds[2];
  t[3] = (logf(gh / ah) - means[3]) / stds[3];
}

// Inverse of encode_box: apply regression `d` to anchor `a`. dw, dh are capped at `clip`
// (when clip >= 0) before exp, so a wild prediction cannot overflow.
MXOPS_HD void decode_box(const float* d, const float* a, const float* means,
                         const float* stds, float clip, float offset, float* out) {
  float aw = a[2] - a[0] + offset, ah = a[3] - a[1] + offset;
  float ax = a[0] + 0.5f * aw, ay = a[1] + 0.5f * ah;
  float dx = d[0] * stds[0] + means[0], dy = d[1] * stds[1] + means[1];
  float dw = d[2] * stds[2] + means[2], dh = d[3] * stds[3] + means[3];
  if (clip >= 0.f) { dw = fmin2(dw, clip); dh = fmin2(dh, clip); }
  float cx = dx * aw + ax, cy = dy * ah + ay;
  float hw = 0.5f * (expf(dw) * aw), hh = 0.5f * (expf(dh) * ah);
  out[0] = cx - hw;
  out[1] = cy - hh;
  out[2] = cx + hw - offset;
  out[3] = cy + hh - offset;
}

// Clip a box to [0, width - offset] x [0, height - offset].
MXOPS_HD void clip_box(float* box, float height, float width, float offset) {
  float xmax = width - offset, ymax = height - offset;
  box[0] = fmin2(fmax2(box[0], 0.f), xmax);
  box[1] = fmin2(fmax2(box[1], 0.f), ymax);
  box[2] = fmin2(fmax2(box[2], 0.f), xmax);
  box[3] = fmin2(fmax2(box[3], 0.f), ymax);
}

// gluoncv pads ground truth with -1 rows; any all-negative row is padding.
MXOPS_HD bool is_padding(float x1, float y1, float x2, float y2) {
  return x1 < 0.f && y1 < 0.f && x2 < 0.f && y2 < 0.f;
}

// Whether a box lies inside the image grown by `border` (gluoncv's valid-anchor rule:
// x1 >= 0, y1 >= 0, x2 < width, y2 < height for border 0).
MXOPS_HD bool inside_image(float x1, float y1, float x2, float y2, float height, float width,
                           float border) {
  return x1 >= -border && y1 >= -border && x2 < width + border && y2 < height + border;
}

// Scores as radix-sortable unsigned integers: larger score -> smaller key, so an ascending
// sort visits scores in descending order. -0.0 is folded onto +0.0 so that equal scores
// compare equal on both sides.
MXOPS_HD uint32_t descending_key(float score) {
  union { float f; uint32_t u; } v;
  v.f = score == 0.f ? 0.f : score;
  uint32_t ordered = (v.u & 0x80000000u) ? ~v.u : (v.u | 0x80000000u);
  return ~ordered;
}

// Scale from image pixels to mask cells along one RoI side (maskrcnn-benchmark's crop and
// resize of polygons: sides shorter than one pixel count as one pixel).
MXOPS_HD float roi_scale(float lo, float hi, int64_t mask_size) {
  return (float)mask_size / fmax2(hi - lo, 1.f);
}

// x coordinate where the edge (x0, y0)-(x1, y1) crosses the horizontal line y = py.
// Callers check first that the edge straddles the line, so y1 != y0.
MXOPS_HD float edge_crossing(float x0, float y0, float x1, float y1, float py) {
  return x0 + (x1 - x0) * ((py - y0) / (y1 - y0));
}

// Half-open straddle test: each vertex row is counted once, so polygons tile exactly.
MXOPS_HD bool edge_straddles(float y0, float y1, float py) {
  return (y0 > py) != (y1 > py);
}

// ---- pasting an S x S mask into the image (paste_masks)
// Mask pixel u covers [lo + u * scale, lo + (u + 1) * scale) of the image, its centre at
// lo + (u + 0.5) * scale; boxes narrower than 1e-3 pixels (or inverted) count as 1e-3 wide.
MXOPS_HD float paste_scale(float lo, float hi, int64_t mask_size) {
  return fmax2(hi - lo, 1e-3f) / (float)mask_size;
}

// Mask coordinate of the centre of image pixel `pixel`, in mask pixels with the mask
// pixel centres at 0, 1, ..., S - 1.
MXOPS_HD float paste_coord(int64_t pixel, float lo, float scale) {
  return ((float)pixel + 0.5f - lo) / scale - 0.5f;
}

// The two mask pixels a coordinate falls between: floor(coord) and the fraction towards
// the next one.
MXOPS_HD void paste_tap(float coord, int64_t* first, float* frac) {
  const float f = floorf(coord);
  *first = (int64_t)f;
  *frac = coord - f;
}

MXOPS_HD float paste_lerp(float a, float b, float t) { return (1.f - t) * a + t * b; }

// Image pixels [*begin, *end) along one side that can get a non-zero value: centres within
// one mask pixel of the outermost mask centres (coord in (-1, S)), widened by a pixel or two
// against rounding and clipped to [0, limit). The per-pixel formula decides inside the
// span; the span only saves work. Computed in float and clipped before the conversion, so
// boxes far outside the image cannot overflow it.
MXOPS_HD void paste_span(float lo, float scale, int64_t mask_size, int64_t limit,
                         int64_t* begin, int64_t* end) {
  const float first = floorf(lo - 0.5f * scale - 0.5f) - 1.f;
  const float last = ceilf(lo + ((float)mask_size + 0.5f) * scale - 0.5f) + 2.f;
  const float lim = (float)limit;
  *begin = (int64_t)fmin2(fmax2(first, 0.f), lim);
  *end = (int64_t)fmin2(fmax2(last, 0.f), lim);
}

// A box with a NaN or infinite coordinate pastes nothing.
MXOPS_HD bool paste_box_finite(const float* box) {
  return isfinite(box[0]) && isfinite(box[1]) && isfinite(box[2]) && isfinite(box[3]);
}

// A mixing hash (splitmix64 finaliser) for counter-based random numbers: the sampler's
// choice depends only on (seed, image, index), never on thread order.
MXOPS_HD uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// Sort key of a sampling candidate: class (0 foreground, 1 background, 2 neither) above 38
// random bits. Equal keys (a hash collision) fall back to index order.
MXOPS_HD uint64_t sample_key(uint64_t seed, int64_t image, int64_t index, int cls) {
  uint64_t h = mix64(seed ^ mix64(((uint64_t)image << 40) ^ (uint64_t)index));
  return ((uint64_t)cls << 38) | (h >> 26);
}

// Number of foreground and background samples to take given the candidate counts:
// min(#fg, round(num_sample * pos_fraction)) foreground (round half to even, as gluoncv's
// Python round() does), background up to num_sample.
MXOPS_HD void sample_counts(int64_t num_fg, int64_t num_bg, int64_t num_sample,
                            float pos_fraction, int64_t* take_fg, int64_t* take_bg) {
  int64_t max_fg = (int64_t)rint((double)num_sample * (double)pos_fraction);
  *take_fg = num_fg < max_fg ? num_fg : max_fg;
  int64_t room = num_sample - *take_fg;
  *take_bg = num_bg < room ? num_bg : room;
}

// The base anchor of gluoncv's RPNAnchorGenerator for one (size, ratio) at `stride`,
// with the same sequence of double operations as its numpy code (np.round rounds half to
// even, as rint does), so the float32 result is identical.
MXOPS_HD void base_anchor(double stride, double size, double ratio, double out[4]) {
  // _ratio_enum on the window (0, 0, stride - 1, stride - 1)
  double w = stride, h = stride;
  double x_ctr = 0.5 * (w - 1.0), y_ctr = 0.5 * (h - 1.0);
  double ws = rint(sqrt(w * h / ratio));
  double hs = rint(ws * ratio);
  double ax1 = x_ctr - 0.5 * (ws - 1.0), ay1 = y_ctr - 0.5 * (hs - 1.0);
  double ax2 = x_ctr + 0.5 * (ws - 1.0), ay2 = y_ctr + 0.5 * (hs - 1.0);
  // _scale_enum with scale = size / stride
  double scale = size / stride;
  double w2 = ax2 - ax1 + 1.0, h2 = ay2 - ay1 + 1.0;
  double xc2 = ax1 + 0.5 * (w2 - 1.0), yc2 = ay1 + 0.5 * (h2 - 1.0);
  double ws2 = w2 * scale, hs2 = h2 * scale;
  out[0] = xc2 - 0.5 * (ws2 - 1.0);
  out[1] = yc2 - 0.5 * (hs2 - 1.0);
  out[2] = xc2 + 0.5 * (ws2 - 1.0);
  out[3] = yc2 + 0.5 * (hs2 - 1.0);
}

}  // namespace mxops

#endif  // MXOPS_BOX_MATH_H_
