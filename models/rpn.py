"""Region Proposal Network over FPN levels (Ren et al., "Faster R-CNN", 2015; Lin et al.,
"Feature Pyramid Networks", 2017), as Mask R-CNN's R-50-FPN recipe uses it
(maskrcnn-benchmark ``e2e_mask_rcnn_R_50_FPN_1x``, NVIDIA's seed recipe).

Anchors, targets and proposals all come from `ops/`: the head is gluoncv's `RPNHead`
applied with the same weights to every level, and everything around it is a few calls of
the project's operators, so that this module holds the recipe and not the kernels.

Conventions (shared with `models.roi_heads` and `models.mask_rcnn`):

* Boxes are float32 ``(x1, y1, x2, y2)`` in pixels of the network input, ``w = x2 - x1``
  (``offset=0``); ground truth is padded with rows of -1.
* Anchors: levels P2..P6 in order; within a level the cells row-major, then the aspect
  ratios (`ops.generate_anchors`, gluoncv's RPNAnchorGenerator order). The head's outputs
  come in exactly this order (its channel a is ratio a).
* RPN deltas are encoded with means 0 and stds 1 (maskrcnn-benchmark's RPN box coder
  weights (1, 1, 1, 1)).
"""
from dataclasses import dataclass

import mxnet as mx
from gluoncv.model_zoo.rcnn.rpn.rpn import RPNHead as _GluonCVRPNHead
from mxnet.gluon.block import HybridBlock

from models.ssd_loss import intersection_over_area


@dataclass(frozen=True)
class RPNSettings:
    """The RPN's recipe numbers; the defaults are the seed's (issue 9).

    ``pre_nms_top_n_*`` is applied per image and per FPN level (`ops.select_proposals` runs
    the top-k and NMS level by level, as maskrcnn-benchmark's FPN RPN does), and
    ``post_nms_top_n_*`` per image over all levels. The seed's 12,000 / 6,000 are its
    non-FPN totals; maskrcnn-benchmark's FPN configuration uses 2,000 / 1,000 per level, which
    gives the same proposals wherever a level has fewer anchors than that.
    """
    anchor_sizes: tuple = (32, 64, 128, 256, 512)   # one side per level
    anchor_strides: tuple = (4, 8, 16, 32, 64)      # P2..P6
    aspect_ratios: tuple = (0.5, 1.0, 2.0)          # h / w
    fg_iou_thresh: float = 0.7
    bg_iou_thresh: float = 0.3
    num_sample: int = 256                           # anchors per image
    pos_fraction: float = 0.5
    allowed_border: float = 0.0                     # anchors crossing the image more: ignored
    pre_nms_top_n_train: int = 12000
    post_nms_top_n_train: int = 2000
    pre_nms_top_n_test: int = 6000
    post_nms_top_n_test: int = 1000
    nms_thresh: float = 0.7
    min_size: float = 0.0
    box_beta: float = 1.0 / 9                       # smooth L1 turning point


class RPNHead(HybridBlock):
    """gluoncv's `RPNHead` (3x3 convolution + ReLU, then 1x1 convolutions for objectness and
    deltas; weights N(0, 0.01)) applied with the same weights to every pyramid level.

    Inputs: the levels P2..P6 (NCHW), in order.

    Outputs
    -------
    logits : (B, A) objectness before the sigmoid.
    deltas : (B, A, 4).
    Row n of both belongs to anchor n (`fpn_anchors`).
    """

    def __init__(self, channels, num_anchors=3, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.head = _GluonCVRPNHead(channels, num_anchors, prefix="")

    def hybrid_forward(self, F, *levels):
        logits, deltas = [], []
        for x in levels:
            # gluoncv's head also returns a sigmoid and a stop_gradient copy for its own
            # proposal layer; the raw outputs are the last two.
            _, _, raw_logits, raw_deltas = self.head(x)
            logits.append(F.reshape(raw_logits, shape=(0, -1)))
            deltas.append(raw_deltas)
        return (F.amp_cast(F.concat(*logits, dim=1), dtype="float32"),
                F.amp_cast(F.concat(*deltas, dim=1), dtype="float32"))


def fpn_anchors(level_shapes, settings, ctx=None):
    """The RPN's anchors for levels of `level_shapes` ((H, W) per level) as (A, 4) on `ctx`:
    one size per level, `settings.aspect_ratios` at each (`ops.generate_anchors`)."""
    import ops  # here, not at the top: it loads the compiled ops/ library
    anchors = ops.generate_anchors(list(level_shapes), settings.anchor_strides,
                                   settings.anchor_sizes, settings.aspect_ratios)
    return anchors.as_in_context(ctx or mx.cpu())


def rpn_targets(anchors, object_boxes, crowd_boxes, im_hw, settings, crowd_ioa_thresh=0.7,
                seed=None):
    """RPN training targets: match, ignore background in crowd regions, sample, encode.

    This is `ops.rpn_targets` (maskrcnn-benchmark's rules: low-quality matches kept, anchors
    crossing the image border ignored) with one step between matching and sampling: an anchor
    that would be background but lies mostly inside a crowd region (intersection over its
    own area >= `crowd_ioa_thresh`, Detectron's crowd filter) is ignored instead, so crowd
    regions make neither positives nor negatives. Without crowd regions the result equals
    `ops.rpn_targets` for the same seed.

    Parameters
    ----------
    anchors : NDArray, (A, 4)
    object_boxes : NDArray, (B, M, 4): objects only (crowd and padding rows are -1).
    crowd_boxes : NDArray (B, K, 4) or None: crowd regions, rows of -1 pad.
    im_hw : NDArray, (B, 2): each image's (height, width) inside the padded input.
    settings : RPNSettings
    seed : int, optional
        The sampler's seed (`ops.sample_balanced`).

    Returns
    -------
    cls_target : (B, A): 1 positive, 0 negative, -1 not sampled.
    box_target, box_mask : (B, A, 4): encoded boxes of the sampled positives, and 1 there.
    """
    import ops
    matches, _ = ops.match_boxes(anchors, object_boxes, settings.fg_iou_thresh,
                                 settings.bg_iou_thresh, "all", im_hw, settings.allowed_border)
    matches = ignore_in_crowd(matches, anchors, crowd_boxes, crowd_ioa_thresh)
    labels, pos_matches = ops.sample_balanced(matches, settings.num_sample,
                                              settings.pos_fraction, seed)
    box_target, box_mask = ops.box_encode(anchors, object_boxes, pos_matches)
    return labels, box_target, box_mask


def rpn_proposals(logits, deltas, anchors, level_sizes, im_hw, pre_nms_top_n, post_nms_top_n,
                  settings):
    """Proposals: decode the deltas (clipped to each image), then per image and level the
    `pre_nms_top_n` best, NMS, and the `post_nms_top_n` best over the levels
    (`ops.select_proposals`). Ranked by logit, which orders as the sigmoid does without its
    float32 saturation ties.

    Returns
    -------
    rois : (B, post_nms_top_n, 4), best first, padded with rows of -1.
    num_rois : int32 (B,), the valid rows per image.
    """
    import ops
    boxes = ops.box_decode(deltas, anchors, im_hw=im_hw)
    rois, _, num_rois = ops.select_proposals(boxes, logits, level_sizes, pre_nms_top_n,
                                             post_nms_top_n, settings.nms_thresh,
                                             settings.min_size)
    return rois, num_rois


def rpn_losses(logits, deltas, cls_target, box_target, box_mask, box_beta=1.0 / 9):
    """The RPN's two losses, as maskrcnn-benchmark's: over the sampled anchors of the batch.

    Returns
    -------
    (objectness, box) : float32 NDArrays of shape (1,). Objectness is the sigmoid binary
    cross-entropy averaged over the sampled anchors; box is smooth L1 (turning point
    `box_beta`) summed over the sampled positives' coordinates and divided by the number of
    sampled anchors (positives and negatives), so that it does not grow with the positives.
    """
    sampled = cls_target >= 0
    count = mx.nd.maximum(sampled.sum(), 1)
    objectness = (binary_cross_entropy(logits, mx.nd.relu(cls_target)) * sampled).sum() / count
    box = smooth_l1(deltas - box_target, box_beta) * box_mask
    return objectness, box.sum() / count


def binary_cross_entropy(logits, targets):
    """Element-wise sigmoid cross-entropy on logits, exact at any logit:
    ``relu(x) - x t + log(1 + exp(-|x|))``."""
    return mx.nd.relu(logits) - logits * targets + mx.nd.log1p(mx.nd.exp(-mx.nd.abs(logits)))


def smooth_l1(x, beta):
    """Element-wise smooth L1 with turning point `beta` (maskrcnn-benchmark's):
    ``0.5 x^2 / beta`` below it, ``|x| - 0.5 beta`` above. MXNet's `smooth_l1` takes
    ``sigma = 1 / sqrt(beta)``."""
    return mx.nd.smooth_l1(x, scalar=float(beta) ** -0.5)


def ignore_in_crowd(matches, boxes, crowd_boxes, ioa_thresh):
    """`matches` with background (-1) rows made ignored (-2) where the box lies mostly inside
    a crowd region: intersection over the box's own area >= `ioa_thresh`.

    Parameters
    ----------
    matches : int32 (B, N); boxes : (N, 4) or (B, N, 4); crowd_boxes : (B, K, 4) or None.
    """
    if crowd_boxes is None:
        return matches
    in_crowd = intersection_over_area(boxes, crowd_boxes).max(axis=2) >= ioa_thresh
    matches = matches.astype("float32")
    ignored = mx.nd.where(in_crowd * (matches == -1), -2 * mx.nd.ones_like(matches), matches)
    return ignored.astype("int32")
