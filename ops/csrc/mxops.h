/*
 * mxops.h -- the C ABI of the detection kernels.
 *
 * Every kernel is a plain function over raw pointers so that the MXNet operators
 * (csrc/mxnet/) stay thin wrappers and a test harness can call the same code through
 * ctypes from a library built without MXNet (ops/gpu_harness.py).
 *
 * Conventions
 *  - Boxes are float32 in corner format (x1, y1, x2, y2), rows of 4 contiguous floats.
 *  - `offset` is added to widths and heights: 0 is gluoncv's convention (w = x2 - x1),
 *    1 is Detectron's / maskrcnn-benchmark's (w = x2 - x1 + 1).
 *  - A ground-truth row whose four coordinates are all negative (gluoncv pads with -1) is
 *    padding and is ignored.
 *  - "batch" is the leading image dimension; tensors are dense and row-major.
 *  - *_cpu functions take host pointers; *_cuda functions take device pointers for tensors,
 *    host pointers for small parameter arrays (means, stds, level sizes, ...), a device
 *    workspace of at least *_cuda_workspace(...) bytes where one exists, and the CUDA stream
 *    as `void*` (NULL is the default stream). CUDA kernels are queued on that stream and
 *    never synchronise it.
 *  - Return value: 0 on success, a negative MXOPS_ERR_* for bad arguments, a positive
 *    cudaError_t when a CUDA call failed. mxops_status_string() describes it.
 */
#ifndef MXOPS_H_
#define MXOPS_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MXOPS_OK 0
#define MXOPS_ERR_ARG (-1)        /* a size or parameter is out of range */
#define MXOPS_ERR_WORKSPACE (-2)  /* the workspace given is smaller than required */
#define MXOPS_ERR_TOO_LARGE (-3)  /* the problem exceeds a fixed limit of the kernel */

/* Human-readable text for a status code (CUDA codes read "CUDA error <n>" unless the
 * library was built with CUDA, which provides mxops_cuda_status_string). */
const char* mxops_status_string(int status);
const char* mxops_cuda_status_string(int status);

/* Zero `bytes` bytes of device memory, queued on the stream (CUDA builds only). */
int mxops_fill_zero_cuda(void* ptr, size_t bytes, void* stream);

/* ---------------------------------------------------------------- box_iou
 * a: (batch, n, 4), b: (batch, m, 4) -> out: (batch, n, m) IoU.
 * Boxes with no area (x2 <= x1 or y2 <= y1 after the offset) have IoU 0 with everything. */
int mxops_box_iou_cpu(const float* a, const float* b, float* out, int64_t batch, int64_t n,
                      int64_t m, float offset);
int mxops_box_iou_cuda(const float* a, const float* b, float* out, int64_t batch, int64_t n,
                       int64_t m, float offset, void* stream);

/* ---------------------------------------------------------------- match
 * Assigns each box (anchor or proposal) to a ground truth by IoU.
 * boxes: (n, 4) shared by all images if shared_boxes, else (batch, n, 4); gt: (batch, m, 4);
 * im_hw: NULL or (batch, 2) image (height, width): a box crossing the image border by more
 * than allowed_border is excluded (IoU -1, match -2, gluoncv's rule).
 * matches (batch, n) int32: gt index if max IoU >= fg_thresh, -1 (background) if
 * max IoU < bg_thresh, -2 (ignore) otherwise. max_iou (batch, n): the best IoU (-1 excluded).
 * low_quality: 0 off; 1 each gt's best boxes are foreground whatever their IoU (Detectron,
 * maskrcnn-benchmark); 2 only boxes between the thresholds are promoted (gluoncv). Ties: every
 * box whose IoU equals the gt's best is promoted; a promoted box matches its own best gt.
 * A gt whose best IoU is 0 promotes nothing. */
int mxops_match_cpu(const float* boxes, int shared_boxes, const float* gt, const float* im_hw,
                    int32_t* matches, float* max_iou, int64_t batch, int64_t n, int64_t m,
                    float fg_thresh, float bg_thresh, int low_quality, float allowed_border,
                    float offset);
size_t mxops_match_cuda_workspace(int64_t batch, int64_t n, int64_t m);
int mxops_match_cuda(const float* boxes, int shared_boxes, const float* gt, const float* im_hw,
                     int32_t* matches, float* max_iou, int64_t batch, int64_t n, int64_t m,
                     float fg_thresh, float bg_thresh, int low_quality, float allowed_border,
                     float offset, void* workspace, size_t workspace_bytes, void* stream);

/* ---------------------------------------------------------------- sample
 * Balanced random subsampling of matcher output (matches >= 0 foreground, -1 background).
 * Takes min(#fg, round(num_sample * pos_fraction)) foreground and fills up to num_sample with
 * background. labels (batch, n) float32: 1 sampled fg, 0 sampled bg, -1 not sampled.
 * pos_matches (batch, n) int32: the match for sampled fg, -1 elsewhere.
 * The choice is a pure function of (seed, image, index): CPU and CUDA agree bit for bit. */
int mxops_sample_cpu(const int32_t* matches, float* labels, int32_t* pos_matches, int64_t batch,
                     int64_t n, int64_t num_sample, float pos_fraction, uint64_t seed);
size_t mxops_sample_cuda_workspace(int64_t batch, int64_t n);
int mxops_sample_cuda(const int32_t* matches, float* labels, int32_t* pos_matches, int64_t batch,
                      int64_t n, int64_t num_sample, float pos_fraction, uint64_t seed,
                      void* workspace, size_t workspace_bytes, void* stream);

/* ---------------------------------------------------------------- anchors
 * FPN anchors with gluoncv's RPNAnchorGenerator conventions, levels concatenated; within a
 * level the order is (y, x, ratio, size). sizes: (num_levels, num_sizes) anchor side lengths
 * in pixels; strides: (num_levels,); all three are host arrays of double, so that the
 * anchors equal gluoncv's float64 computation. out: (mxops_anchors_count(...), 4). */
int64_t mxops_anchors_count(int num_levels, const int64_t* heights, const int64_t* widths,
                            int num_sizes, int num_ratios);
int mxops_anchors_cpu(float* out, int num_levels, const int64_t* heights, const int64_t* widths,
                      const double* strides, const double* sizes, int num_sizes,
                      const double* ratios, int num_ratios);
int mxops_anchors_cuda(float* out, int num_levels, const int64_t* heights,
                       const int64_t* widths, const double* strides, const double* sizes,
                       int num_sizes, const double* ratios, int num_ratios, void* stream);

/* ---------------------------------------------------------------- box encode / decode
 * encode: boxes (n,4) shared or (batch,n,4), gt (batch,m,4), matches (batch,n) ->
 * targets (batch,n,4) = ((dx, dy, log dw, log dh) - means) / stds for rows with
 * 0 <= match < m, zero elsewhere; masks (batch,n,4) 1 where encoded, 0 elsewhere.
 * decode: deltas (batch,n,4), anchors (n,4) shared or (batch,n,4) -> boxes (batch,n,4);
 * dw, dh are capped at `clip` (clip < 0: no cap); im_hw NULL or (batch, 2) clips the boxes to
 * [0, width - offset] x [0, height - offset]. means, stds: 4 host floats each. */
int mxops_box_encode_cpu(const float* boxes, int shared_boxes, const float* gt,
                         const int32_t* matches, float* targets, float* masks, int64_t batch,
                         int64_t n, int64_t m, const float* means, const float* stds,
                         float offset);
int mxops_box_encode_cuda(const float* boxes, int shared_boxes, const float* gt,
                          const int32_t* matches, float* targets, float* masks, int64_t batch,
                          int64_t n, int64_t m, const float* means, const float* stds,
                          float offset, void* stream);
int mxops_box_decode_cpu(const float* deltas, const float* anchors, int shared_anchors,
                         const float* im_hw, float* out, int64_t batch, int64_t n,
                         const float* means, const float* stds, float clip, float offset);
int mxops_box_decode_cuda(const float* deltas, const float* anchors, int shared_anchors,
                          const float* im_hw, float* out, int64_t batch, int64_t n,
                          const float* means, const float* stds, float clip, float offset,
                          void* stream);

/* ---------------------------------------------------------------- nms
 * Greedy NMS per image: boxes (batch,n,4), scores (batch,n). Boxes are visited by score,
 * descending (ties: lower index first; NaN scores are dropped); a box is suppressed when its
 * IoU with a kept box is > iou_thresh. keep (batch, max_out) int32 indices, padded with -1;
 * num_keep (batch,). The CUDA version needs O(n^2 / 8) bytes of workspace per image. */
int mxops_nms_cpu(const float* boxes, const float* scores, int32_t* keep, int32_t* num_keep,
                  int64_t batch, int64_t n, float iou_thresh, int64_t max_out, float offset);
size_t mxops_nms_cuda_workspace(int64_t batch, int64_t n, int64_t max_out);
int mxops_nms_cuda(const float* boxes, const float* scores, int32_t* keep, int32_t* num_keep,
                   int64_t batch, int64_t n, float iou_thresh, int64_t max_out, float offset,
                   void* workspace, size_t workspace_bytes, void* stream);

/* ---------------------------------------------------------------- proposals
 * RPN proposal selection as in maskrcnn-benchmark's FPN RPN: per image and level (the n
 * boxes are num_levels consecutive runs of level_sizes[l]): drop boxes narrower or lower
 * than min_size (and NaN scores), keep the pre_nms_top_n best scores, NMS at iou_thresh
 * keeping at most post_nms_top_n, then keep the post_nms_top_n best over all levels.
 * rois (batch, post, 4) and roi_scores (batch, post) in descending score order (ties: level,
 * then rank in level), padded with -1; num_rois (batch,). level_sizes: host pointer. */
int mxops_proposals_cpu(const float* boxes, const float* scores, const int64_t* level_sizes,
                        int num_levels, float* rois, float* roi_scores, int32_t* num_rois,
                        int64_t batch, int64_t n, int64_t pre_nms_top_n, int64_t post_nms_top_n,
                        float iou_thresh, float min_size, float offset);
size_t mxops_proposals_cuda_workspace(int64_t batch, int64_t n, int num_levels,
                                      const int64_t* level_sizes, int64_t pre_nms_top_n,
                                      int64_t post_nms_top_n);
int mxops_proposals_cuda(const float* boxes, const float* scores, const int64_t* level_sizes,
                         int num_levels, float* rois, float* roi_scores, int32_t* num_rois,
                         int64_t batch, int64_t n, int64_t pre_nms_top_n,
                         int64_t post_nms_top_n, float iou_thresh, float min_size, float offset,
                         void* workspace, size_t workspace_bytes, void* stream);

/* ---------------------------------------------------------------- polygon mask targets
 * rois (batch, r, 4), matches (batch, r) gt index per RoI (< 0: all-zero mask);
 * verts (batch, v, 2) polygon vertices; polys (batch, q, 3) int32 rows (gt index, first
 * vertex, vertex count), gt index < 0 for padding. Each polygon of the matched gt is mapped
 * into the RoI (x' = (x - x1) * M / max(x2 - x1, 1), likewise y) and rasterised at M x M by
 * sampling pixel centres (even-odd rule); the polygons of one gt are OR-ed, as pycocotools'
 * merge does. out (batch, r, M, M) float32 of 0 / 1. Invalid polygon rows are skipped. */
int mxops_polygon_masks_cpu(const float* rois, const int32_t* matches, const float* verts,
                            const int32_t* polys, float* out, int64_t batch, int64_t r,
                            int64_t v, int64_t q, int64_t mask_size);
int mxops_polygon_masks_cuda(const float* rois, const int32_t* matches, const float* verts,
                             const int32_t* polys, float* out, int64_t batch, int64_t r,
                             int64_t v, int64_t q, int64_t mask_size, void* stream);

/* ---------------------------------------------------------------- paste masks
 * Inference post-processing of Mask R-CNN: each detection's mask probabilities, masks
 * (n, S, S) over its box, boxes (n, 4) (x1, y1, x2, y2) in image pixels, pasted into an
 * image of height x width. Mask pixel u has its centre at x1 + (u + 0.5) * sx with
 * sx = max(x2 - x1, 1e-3) / S (likewise rows); image pixel x (centre x + 0.5) takes the
 * bilinear value of the mask there, the mask being zero outside (so it fades out half a
 * mask pixel beyond the outermost centres), and is 1 where value >= threshold, else 0.
 * No rounding of the box. float32 arithmetic without FMA (box_math.h), so CPU and CUDA
 * agree bit for bit. out: uint8 (n, height, width), or with column_major (n, width, height),
 * each plane transposed (the Fortran order of pycocotools' RLE encoder), the same values.
 * threshold must be > 0 (at or below 0 the zero outside the mask would pass it);
 * S <= 1024; a box with a NaN or infinite coordinate gives an empty mask. */
int mxops_paste_masks_cpu(const float* masks, const float* boxes, uint8_t* out, int64_t n,
                          int64_t mask_size, int64_t height, int64_t width, float threshold,
                          int column_major);
int mxops_paste_masks_cuda(const float* masks, const float* boxes, uint8_t* out, int64_t n,
                           int64_t mask_size, int64_t height, int64_t width, float threshold,
                           int column_major, void* stream);

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif  /* MXOPS_H_ */
