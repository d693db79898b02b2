"""Mask R-CNN's RoI heads (He et al., "Mask R-CNN", 2017) on FPN levels: RoI sampling and
targets through `ops/`, multi-level RoIAlign, the 2x1024 FC box head, the 4-convolution mask
head, their three losses and the detections of inference, as maskrcnn-benchmark's
``e2e_mask_rcnn_R_50_FPN_1x`` has them.

Conventions as in `models.rpn`; besides: object classes are 1..C wherever a class id is
stored (labels, targets, detections), class c is softmax column c (0 is background), box
column block c - 1 and mask channel c - 1 (class-specific boxes and masks have no
background entry, as gluoncv's). RoI box deltas are encoded with BOX_STDS.
"""
import math
from collections import namedtuple
from dataclasses import dataclass

import mxnet as mx
import numpy as np
from mxnet import init
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

from models.rpn import binary_cross_entropy, ignore_in_crowd, smooth_l1

BOX_STDS = (0.1, 0.1, 0.2, 0.2)  # maskrcnn-benchmark's R-CNN box coder weights (10, 10, 5, 5)


@dataclass(frozen=True)
class RoISettings:
    """The RoI heads' recipe numbers; the defaults are the seed's (issue 9)."""
    num_sample: int = 512            # RoIs per image
    pos_fraction: float = 0.25
    fg_iou_thresh: float = 0.5       # below it: background (no ignore band, no lower bound)
    box_stds: tuple = BOX_STDS
    box_beta: float = 1.0            # smooth L1 turning point
    box_pool: int = 7                # RoIAlign output side for the box head
    mask_pool: int = 14              # ... and for the mask head
    mask_size: int = 28              # predicted and target mask side
    strides: tuple = (4, 8, 16, 32)  # P2..P5: the levels RoIs are pooled from
    canonical_scale: float = 224.0   # FPN paper eq. (1): a 224-pixel RoI pools from P4
    canonical_level: int = 4
    sample_ratio: int = 2            # RoIAlign bilinear samples per bin side


@dataclass(frozen=True)
class DetectSettings:
    """Inference post-processing: the seed's score threshold, NMS and detections per image.
    ``pre_nms_top_n`` caps the (RoI, class) candidates per image that reach NMS (1,000 RoIs
    x 80 classes would otherwise all be sorted, and a GPU NMS mask grows with their square);
    maskrcnn-benchmark runs NMS class by class without a cap."""
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    max_detections: int = 100
    pre_nms_top_n: int = 2000


RoISample = namedtuple("RoISample", [
    "rois",          # (B, R, 4): sampled RoIs, positives first, then negatives, then padding
    "labels",        # (B, R) float32: class 1..C of positives, 0 background, -1 padding
    "matches",       # (B, R) int32: gt row of positives, -1 elsewhere
    "box_targets",   # (B, R, 4): encoded with the box stds on positives, 0 elsewhere
    "box_masks",     # (B, R, 4): 1 on positives
    "mask_targets",  # (B, Rm, S, S): 0/1 masks of the first Rm rows (all the positives)
])


class BoxHead(HybridBlock):
    """Two fully connected layers of `channels` with ReLU ("2fc"), then the class logits
    (C + 1, N(0, 0.01)) and class-specific box deltas (4 C, N(0, 0.001)).

    Inputs: (N, channels_in, 7, 7) pooled RoI features.
    Outputs: logits (N, C + 1), deltas (N, C, 4), float32.
    """

    def __init__(self, classes, channels=1024, **kwargs):
        super().__init__(**kwargs)
        self._classes = classes
        # Detectron's c2_xavier_fill for the FC layers, as maskrcnn-benchmark's make_fc.
        xavier = init.Xavier("uniform", "in", 3)
        with self.name_scope():
            self.fc = nn.HybridSequential(prefix="fc_")
            self.fc.add(nn.Dense(channels, activation="relu", weight_initializer=xavier),
                        nn.Dense(channels, activation="relu", weight_initializer=xavier))
            self.cls = nn.Dense(classes + 1, weight_initializer=init.Normal(0.01),
                                prefix="cls_")
            self.box = nn.Dense(classes * 4, weight_initializer=init.Normal(0.001),
                                prefix="box_")

    def hybrid_forward(self, F, x):
        x = self.fc(x)
        deltas = F.reshape(self.box(x), shape=(0, self._classes, 4))
        return F.amp_cast(self.cls(x), dtype="float32"), F.amp_cast(deltas, dtype="float32")


class MaskHead(HybridBlock):
    """`num_convs` 3x3 convolutions of `channels` with ReLU, a 2x2 stride-2 transposed
    convolution with ReLU (14 -> 28), and a 1x1 convolution to one mask logit map per class
    (He normal fan-out initialisation, as maskrcnn-benchmark's mask head).

    Inputs: (N, channels_in, 14, 14). Outputs: (N, C, 28, 28) float32 logits.
    """

    def __init__(self, classes, channels=256, num_convs=4, **kwargs):
        super().__init__(**kwargs)
        he = init.Xavier("gaussian", "out", 2)
        with self.name_scope():
            self.body = nn.HybridSequential(prefix="")
            for _ in range(num_convs):
                self.body.add(nn.Conv2D(channels, 3, padding=1, activation="relu",
                                        weight_initializer=he))
            self.body.add(nn.Conv2DTranspose(channels, 2, strides=2, activation="relu",
                                             weight_initializer=he))
            self.logits = nn.Conv2D(classes, 1, weight_initializer=he, prefix="logits_")

    def hybrid_forward(self, F, x):
        return F.amp_cast(self.logits(self.body(x)), dtype="float32")


def roi_levels(rois, settings):
    """FPN level of each RoI (FPN paper eq. (1), maskrcnn-benchmark's LevelMapper):
    ``floor(k0 + log2(sqrt(w h) / 224))`` clamped to the pooled levels (P2..P5)."""
    w = rois.slice_axis(axis=-1, begin=2, end=3) - rois.slice_axis(axis=-1, begin=0, end=1)
    h = rois.slice_axis(axis=-1, begin=3, end=4) - rois.slice_axis(axis=-1, begin=1, end=2)
    scale = mx.nd.sqrt(mx.nd.relu(w * h)) / settings.canonical_scale
    level = mx.nd.floor(settings.canonical_level + mx.nd.log2(scale + 1e-6))
    first = int(round(math.log2(settings.strides[0])))
    return mx.nd.clip(level, first, first + len(settings.strides) - 1).squeeze(axis=-1)


def multilevel_roi_align(levels, rois, valid, pooled_size, settings):
    """RoIAlign of each RoI on its own FPN level (`roi_levels`).

    Each level pools only its own RoIs, gathered by index, and one `take` puts the rows back
    in RoI order (invalid RoIs take a zero row). Gathering costs one read of the levels from
    the device; pooling every RoI on every level and keeping each level's own (gluoncv's way,
    with the others given a negative batch index) took 4x the work: MXNet 1.9.1's CPU
    backward costs about as much per skipped RoI as per pooled one (25 ms for 1,024 skipped
    RoIs, 227 ms for 1,024 pooled ones, 7x7 of 64 channels on 2 cores), and its CPU forward
    leaves skipped rows unwritten.

    Parameters
    ----------
    levels : list of NDArray (B, C, H, W): P2..P5 (at least len(settings.strides)).
    rois : NDArray (B, R, 4); valid : NDArray (B, R), nonzero where the row is a RoI.
    pooled_size : int

    Returns
    -------
    NDArray (B * R, C, pooled_size, pooled_size) in the levels' dtype; rows of invalid RoIs
    are 0. Float16 levels are pooled in float32 (and the rows cast back): RoI coordinates
    of a 1333-pixel image lose half a pixel in float16, as MXNet's RoIAlign would take them
    in the data's type (NVIDIA's float16 Mask R-CNN keeps RoIAlign in float32 too).
    """
    batch, count = rois.shape[:2]
    ctx = rois.context
    first = int(round(math.log2(settings.strides[0])))
    level = roi_levels(rois, settings).reshape(-1).asnumpy()
    level[valid.reshape(-1).asnumpy() == 0] = -1
    index = mx.nd.arange(batch, ctx=ctx).reshape((-1, 1)).broadcast_to((batch, count))
    indexed = mx.nd.concat(index.reshape((-1, 1)).astype(rois.dtype), rois.reshape((-1, 4)),
                           dim=1)
    pooled, order = [], []
    for k, (feature, stride) in enumerate(zip(levels, settings.strides)):
        own = np.flatnonzero(level == first + k)
        if own.size:
            pooled.append(mx.nd.contrib.ROIAlign(
                _float32(feature), indexed.take(mx.nd.array(own, ctx=ctx)),
                pooled_size=(pooled_size, pooled_size), spatial_scale=1.0 / stride,
                sample_ratio=settings.sample_ratio))
            order.append(own)
    channels = levels[0].shape[1]
    pooled.append(mx.nd.zeros((1, channels, pooled_size, pooled_size), ctx=ctx))
    # Row n of the result is row position[n] of the pooled rows; invalid RoIs: the zero row.
    pooled_rows = sum(len(o) for o in order)
    position = np.full(batch * count, pooled_rows, np.int64)
    if order:
        position[np.concatenate(order)] = np.arange(pooled_rows)
    rows = mx.nd.concat(*pooled, dim=0).take(mx.nd.array(position, ctx=ctx))
    return rows if levels[0].dtype == np.float32 else rows.astype(levels[0].dtype)


def _float32(x):
    return x if x.dtype == np.float32 else x.astype("float32")


def sample_rois(proposals, num_proposals, object_boxes, crowd_boxes, labels, verts, polys,
                settings, crowd_ioa_thresh=0.7, seed=None):
    """RoI training sample and targets of a batch (maskrcnn-benchmark's FastRCNNSampling).

    The objects are appended to the proposals (so that every object has at least one RoI
    that matches it exactly); candidates are matched to the objects (IoU >= fg: positive,
    below: background; no low-quality matches), background candidates inside crowd regions
    ignored (`models.rpn.ignore_in_crowd`), and `ops.sample_balanced` draws up to
    `settings.num_sample` per image, a `pos_fraction` of them positive at most. The drawn
    rows are put first, positives before negatives, so that every image has R =
    `num_sample` rows and the mask targets need only the first ``round(R * pos_fraction)``.

    Parameters
    ----------
    proposals : (B, P, 4) from `models.rpn.rpn_proposals`; num_proposals : int32 (B,).
    object_boxes : (B, M, 4): objects only (crowd and padding rows -1).
    crowd_boxes : (B, K, 4) or None.
    labels : (B, M): the class 1..C of each object row.
    verts, polys : the batch's polygons (`ops.pack_polygons`; gt index = row of object_boxes).
    seed : int, optional: the sampler's seed.

    Returns
    -------
    RoISample
    """
    import ops  # here, not at the top: it loads the compiled ops/ library
    candidates, matches = _match_candidates(proposals, num_proposals, object_boxes,
                                            crowd_boxes, settings, crowd_ioa_thresh)
    drawn, pos_matches = ops.sample_balanced(matches, settings.num_sample, settings.pos_fraction,
                                             seed)
    # drawn: 1 positive, 0 negative, -1 not drawn; the top R of (drawn + 1) lists the
    # positives, then the negatives, then (when fewer were drawn) padding.
    keep = mx.nd.topk(drawn + 1, axis=1, k=min(settings.num_sample, candidates.shape[1]),
                      ret_typ="indices", dtype="int32")
    rois = batch_gather(candidates, keep)
    drawn = batch_gather(drawn, keep)
    roi_matches = batch_gather(pos_matches, keep)
    classes = batch_gather(labels.astype("float32"), mx.nd.maximum(roi_matches, 0))
    roi_labels = mx.nd.where(drawn > 0, classes, drawn)
    box_targets, box_masks = ops.box_encode(rois, object_boxes, roi_matches,
                                            stds=settings.box_stds)
    num_mask = min(int(round(settings.num_sample * settings.pos_fraction)), rois.shape[1])
    mask_targets = ops.polygon_masks(rois.slice_axis(axis=1, begin=0, end=num_mask),
                                     roi_matches.slice_axis(axis=1, begin=0, end=num_mask),
                                     verts, polys, settings.mask_size)
    return RoISample(rois, roi_labels, roi_matches, box_targets, box_masks, mask_targets)


def _match_candidates(proposals, num_proposals, object_boxes, crowd_boxes, settings,
                      crowd_ioa_thresh):
    """The candidates (proposals, then the objects) (B, P + M, 4) and their matches: object
    row, -1 background, -2 ignored (inside a crowd region, or a padding row)."""
    import ops
    candidates = mx.nd.concat(proposals, object_boxes, dim=1)
    rows = mx.nd.arange(proposals.shape[1], ctx=proposals.context).reshape((1, -1))
    real_proposal = mx.nd.broadcast_lesser(rows, num_proposals.astype("float32").reshape((-1, 1)))
    real_object = object_boxes.slice_axis(axis=2, begin=2, end=3).squeeze(axis=2) >= 0
    valid = mx.nd.concat(real_proposal, real_object, dim=1)
    matches, _ = ops.match_boxes(candidates, object_boxes, settings.fg_iou_thresh,
                                 settings.fg_iou_thresh, "none")
    matches = ignore_in_crowd(matches, candidates, crowd_boxes, crowd_ioa_thresh)
    # Padding rows of -1 have IoU 0 with everything: without this they would be background.
    matches = mx.nd.where(valid, matches.astype("float32"), -2 * mx.nd.ones_like(valid))
    return candidates, matches.astype("int32")


def roi_losses(cls_logits, box_deltas, mask_logits, sample, box_beta=1.0):
    """The RoI heads' three losses, as maskrcnn-benchmark's.

    Parameters
    ----------
    cls_logits : (B, R, C + 1); box_deltas : (B, R, C, 4); mask_logits : (B, Rm, C, S, S),
    the first Rm rows of the sample (which hold all its positives).
    sample : RoISample

    Returns
    -------
    (cls, box, mask) : float32 NDArrays of shape (1,). cls is the softmax cross-entropy
    averaged over the sampled RoIs; box the smooth L1 (turning point `box_beta`) of the
    ground-truth class's deltas, summed over the positives and divided by the sampled RoIs;
    mask the per-pixel sigmoid cross-entropy of the ground-truth class's mask, averaged over
    the positives' pixels (0 without positives).
    """
    labels = sample.labels
    sampled = labels >= 0
    count = mx.nd.maximum(sampled.sum(), 1)
    log_p = mx.nd.log_softmax(cls_logits, axis=-1)
    cls = -(mx.nd.pick(log_p, mx.nd.relu(labels), axis=-1) * sampled).sum() / count
    column = mx.nd.relu(labels - 1)  # the gt class's entry (any for negatives: masked out)
    deltas = pick_class(box_deltas, column)
    box = (smooth_l1(deltas - sample.box_targets, box_beta) * sample.box_masks).sum() / count
    num_mask = mask_logits.shape[1]
    positive = labels.slice_axis(axis=1, begin=0, end=num_mask) > 0
    masks = pick_class(mask_logits, column.slice_axis(axis=1, begin=0, end=num_mask))
    targets = sample.mask_targets.slice_axis(axis=1, begin=0, end=num_mask)
    pixels = mx.nd.broadcast_mul(binary_cross_entropy(masks, targets),
                                 positive.reshape((0, 0, 1, 1)))
    mask = pixels.sum() / (mx.nd.maximum(positive.sum(), 1) * masks[0, 0].size)
    return cls, box, mask


def detect_boxes(cls_logits, box_deltas, rois, num_rois, im_hw, input_hw, box_stds, settings):
    """Final boxes: per (RoI, class) decode and clip, score above the threshold, class-wise
    NMS, the best `max_detections` per image.

    Parameters
    ----------
    cls_logits : (B, R, C + 1); box_deltas : (B, R, C, 4); rois : (B, R, 4);
    num_rois : int32 (B,); im_hw : (B, 2); input_hw : (int, int), the padded input's size.

    Returns
    -------
    NDArray, float32, (B, max_detections, 6): rows (class 1..C, score, x1, y1, x2, y2) in
    input pixels, best first, padded with rows of -1 (`models.ssd.decode_detections`'s
    format).
    """
    scores, column, candidates = _scored_candidates(cls_logits, box_deltas, rois, num_rois,
                                                    im_hw, box_stds, settings)
    return _class_wise_nms(scores, column, candidates, input_hw, settings)


def _scored_candidates(cls_logits, box_deltas, rois, num_rois, im_hw, box_stds, settings):
    """The `pre_nms_top_n` best (RoI, class) pairs of each image at or above the score
    threshold: scores (B, K; NaN below the threshold and on padding RoIs), class - 1 (B, K)
    and decoded, clipped boxes (B, K, 4)."""
    import ops
    batch, count, classes = box_deltas.shape[:3]
    anchors = rois.expand_dims(2).broadcast_to((batch, count, classes, 4))
    boxes = ops.box_decode(box_deltas.reshape((batch, -1, 4)), anchors.reshape((batch, -1, 4)),
                           stds=box_stds, im_hw=im_hw)
    scores = mx.nd.softmax(cls_logits, axis=-1).slice_axis(axis=2, begin=1, end=None)
    rows = mx.nd.arange(count, ctx=rois.context).reshape((1, -1, 1))
    real = mx.nd.broadcast_lesser(rows, num_rois.astype("float32").reshape((-1, 1, 1)))
    scores = mx.nd.broadcast_mul(scores + 1, real) - 1  # -1 on padding RoIs
    scores = mx.nd.where(scores >= settings.score_thresh, scores, -mx.nd.ones_like(scores))
    top, index = mx.nd.topk(scores.reshape((batch, -1)), ret_typ="both", dtype="float64",
                            k=min(settings.pre_nms_top_n, count * classes))
    # NMS drops NaN scores: what is below the threshold takes no part.
    top = mx.nd.where(top >= 0, top, mx.nd.full(top.shape, float("nan"), ctx=top.context))
    column = index - mx.nd.floor(index / classes) * classes
    return top, column, batch_gather(boxes, index)


def _class_wise_nms(scores, column, boxes, input_hw, settings):
    """NMS per class in one call, the best `max_detections` kept, as detection rows."""
    import ops
    # Each class's boxes moved by their own offset, larger than the input, never overlap
    # another class's (torchvision's batched_nms).
    shift = (column * (max(input_hw) + 1)).astype("float32").expand_dims(2)
    keep, _ = ops.nms(boxes + shift, scores, iou_thresh=settings.nms_thresh,
                      max_out=settings.max_detections)
    rows = mx.nd.concat(column.astype("float32").expand_dims(2) + 1, scores.expand_dims(2),
                        boxes, dim=2)
    detections = batch_gather(rows, mx.nd.maximum(keep, 0))
    found = (keep >= 0).expand_dims(2).broadcast_like(detections)
    return mx.nd.where(found, detections, -mx.nd.ones_like(detections))


def pick_class(values, column):
    """values (B, R, C, ...), column (B, R) -> values[b, r, column[b, r]] (B, R, ...): the
    class-specific entries (box deltas, mask logits) of each row's class."""
    batch, count = column.shape
    b = mx.nd.arange(batch, ctx=column.context).reshape((-1, 1)).broadcast_to((batch, count))
    r = mx.nd.arange(count, ctx=column.context).reshape((1, -1)).broadcast_to((batch, count))
    return mx.nd.gather_nd(values, mx.nd.stack(b, r, column.astype("float32")))


def batch_gather(values, index):
    """values (B, N, ...), index (B, K) -> (B, K, ...): values[b, index[b, k]]."""
    batch, count = index.shape
    b = mx.nd.arange(batch, ctx=index.context).reshape((-1, 1)).broadcast_to((batch, count))
    return mx.nd.gather_nd(values, mx.nd.stack(b, index.astype("float32")))
