"""SSD-FPN training: per-anchor targets and the losses (sigmoid focal + smooth L1).

NVIDIA's SSD320 v1.2 (TensorFlow object detection API config): argmax matching at IoU 0.5
with no ignore band and every ground-truth box's best anchor forced positive; focal loss
alpha 0.25, gamma 2; smooth L1 (Huber, delta 1) on the encoded boxes; both summed and
divided by the number of positive anchors. Class conventions as in `models.ssd`: targets
are 0 background, 1..C the object class (logit column c - 1), -1 ignored.
"""
import mxnet as mx
import numpy as np

from models.ssd import BOX_STDS


def encode_targets(anchors, gt_boxes, gt_labels, crowd_boxes=None, fg_iou_thresh=0.5,
                   bg_iou_thresh=0.5, crowd_ioa_thresh=0.5, stds=BOX_STDS):
    """Per-anchor class and box targets for a batch.

    An anchor whose best IoU with a ground-truth box is >= `fg_iou_thresh` takes that box's
    class; below `bg_iou_thresh` it is background; in between, ignored (no band with the
    recipe's 0.5 / 0.5). Each ground-truth box also claims its best anchors (ties included)
    whatever their IoU (TensorFlow's force_match_for_each_row). Background anchors lying
    mostly inside a crowd region (intersection over the anchor's area >= `crowd_ioa_thresh`:
    COCO's evaluation counts detections there as neither right nor wrong) are ignored.

    Parameters
    ----------
    anchors : NDArray, float32, (N, 4) pixel boxes (`SSDFPN.anchors`)
    gt_boxes : NDArray, float32, (B, M, 4), same coordinates: the objects; rows of -1 pad (an
        image without objects is one row of -1).
    gt_labels : NDArray, (B, M): classes 1..C (anything on padding rows).
    crowd_boxes : NDArray, float32, (B, K, 4), optional: crowd regions (COCO ``iscrowd``),
        rows of -1 pad. Their cost grows with N * K, so give only the crowd rows (K is small:
        `crowd_rows` makes them).
    stds : 4 floats, the box coder's (BOX_STDS).

    Returns
    -------
    cls_targets : NDArray, int32, (B, N): 0 background, 1..C class, -1 ignored.
    box_targets : NDArray, float32, (B, N, 4): encoded boxes of positive anchors, 0 elsewhere.
    """
    import ops  # here, not at the top: it loads the compiled ops/ library
    matches, _ = ops.match_boxes(anchors, gt_boxes, fg_iou_thresh, bg_iou_thresh,
                                 low_quality="all")
    box_targets, _ = ops.box_encode(anchors, gt_boxes, matches, stds=stds)
    batch = mx.nd.arange(matches.shape[0], ctx=matches.context, dtype="int32")
    index = mx.nd.stack(batch.reshape((-1, 1)).broadcast_like(matches), mx.nd.maximum(matches, 0))
    labels = mx.nd.gather_nd(gt_labels.astype("float32"), index)  # labels[b, matches[b, n]]
    matches = matches.astype("float32")
    # matches: gt index, -1 background, -2 between the thresholds.
    cls_targets = mx.nd.where(matches >= 0, labels, mx.nd.where(matches == -1,
                                                                mx.nd.zeros_like(labels),
                                                                -mx.nd.ones_like(labels)))
    if crowd_boxes is not None:
        in_crowd = intersection_over_area(anchors, crowd_boxes).max(axis=2) >= crowd_ioa_thresh
        cls_targets = mx.nd.where(in_crowd * (cls_targets == 0), -mx.nd.ones_like(labels),
                                  cls_targets)
    return cls_targets.astype("int32"), box_targets


def crowd_rows(boxes, labels, crowd_label):
    """Split a batch's rows into objects and crowd regions (numpy, on the host).

    Parameters
    ----------
    boxes : numpy.ndarray, (B, M, 4); labels : numpy.ndarray, (B, M)
        A training batch's rows: objects, then crowd regions labelled `crowd_label`, then
        padding rows of -1 (`data/coco_pipelines.py`).

    Returns
    -------
    (object_boxes, crowd_boxes)
        `boxes` with the crowd rows set to -1, and the crowd regions alone as (B, K, 4)
        padded with -1, K the most of any image (at least 1); crowd_boxes is None when the
        batch has no crowd region.
    """
    is_crowd = labels == crowd_label
    if not is_crowd.any():
        return boxes, None
    crowd = -np.ones((boxes.shape[0], int(is_crowd.sum(axis=1).max()), 4), np.float32)
    for image, rows in enumerate(is_crowd):
        crowd[image, :rows.sum()] = boxes[image, rows]
    return np.where(is_crowd[..., None], np.float32(-1), boxes), crowd


def intersection_over_area(boxes, regions):
    """boxes (N, 4) or (B, N, 4), regions (B, K, 4) -> (B, N, K): the area of each box inside
    each region over the box's area (0 for padding regions of -1 and boxes without area)."""
    if boxes.ndim == 2:
        boxes = boxes.expand_dims(0)
    a = boxes.expand_dims(2)      # (B or 1, N, 1, 4)
    b = regions.expand_dims(1)    # (B, 1, K, 4)
    lt = mx.nd.broadcast_maximum(a.slice_axis(axis=3, begin=0, end=2),
                                 b.slice_axis(axis=3, begin=0, end=2))
    rb = mx.nd.broadcast_minimum(a.slice_axis(axis=3, begin=2, end=4),
                                 b.slice_axis(axis=3, begin=2, end=4))
    wh = mx.nd.relu(rb - lt)
    inter = wh.slice_axis(axis=3, begin=0, end=1) * wh.slice_axis(axis=3, begin=1, end=2)
    size = mx.nd.relu(a.slice_axis(axis=3, begin=2, end=4) - a.slice_axis(axis=3, begin=0, end=2))
    area = size.slice_axis(axis=3, begin=0, end=1) * size.slice_axis(axis=3, begin=1, end=2)
    return mx.nd.broadcast_div(inter, mx.nd.maximum(area, 1e-12)).squeeze(axis=3)


def sigmoid_focal_loss(cls_logits, cls_targets, alpha=0.25, gamma=2.0):
    """Element-wise sigmoid focal loss, zero on ignored anchors.

    ``FL = -alpha_t (1 - p_t)^gamma log(p_t)`` per anchor and class, the class being
    positive where it is the anchor's target and negative elsewhere (background anchors:
    negative for every class). Written here rather than taken from gluoncv 0.10.5's
    FocalLoss, which takes the log of the sigmoid probability plus 1e-12 (so large logits
    lose the loss and its gradient), knows no background or ignored label, and averages
    where the recipe divides by the positive count. Here ``-log(p_t)`` is the binary
    cross-entropy on the logits, ``relu(x) - x t + log(1 + exp(-|x|))``, exact at any logit.

    Parameters
    ----------
    cls_logits : NDArray, float32, (B, N, C)
    cls_targets : NDArray, (B, N): 0 background, 1..C class, -1 ignored.

    Returns
    -------
    NDArray, float32, (B, N, C).
    """
    classes = cls_logits.shape[2]
    targets = cls_targets.astype("float32")
    # one_hot gives all-zero rows for the out-of-range -1 (background) and -2 (ignored).
    t = mx.nd.one_hot(targets - 1, classes)
    x = cls_logits
    cross_entropy = mx.nd.relu(x) - x * t + mx.nd.log1p(mx.nd.exp(-mx.nd.abs(x)))
    p = mx.nd.sigmoid(x)
    p_t = p * t + (1 - p) * (1 - t)
    alpha_t = alpha * t + (1 - alpha) * (1 - t)
    loss = alpha_t * (1 - p_t) ** gamma * cross_entropy
    return mx.nd.broadcast_mul(loss, (targets >= 0).expand_dims(2))


def ssd_loss(cls_logits, box_deltas, cls_targets, box_targets, alpha=0.25, gamma=2.0,
             average_over_workers=None):
    """The two SSD-FPN losses, each summed and divided by the number of positive anchors
    in the batch (at least 1).

    Parameters
    ----------
    cls_logits, box_deltas : NDArray, float32, (B, N, C) and (B, N, 4): the network's outputs.
    cls_targets, box_targets : NDArray, (B, N) and (B, N, 4): from `encode_targets`.
    alpha, gamma : float
        Focal loss parameters (0.25, 2).
    average_over_workers : callable, optional
        NDArray -> its mean over all workers (`engine.distributed.Distributed.mean`). The
        losses are then divided by the mean positive count per worker instead of this
        worker's own, so that the average of the workers' gradients (Horovod's) is the
        gradient of the whole global batch's loss over all of its positives: W workers with
        batch b train exactly like one with batch W*b (mmdetection's heads do the same with
        ``reduce_mean`` of the positive count). Each worker's own count would instead weigh
        an image by how few objects its worker's other images have.

    Returns
    -------
    dict: "cls" (focal loss over all non-ignored anchors) and "box" (smooth L1, delta 1,
    over positive anchors), float32 NDArrays of shape (1,). NVIDIA's TensorFlow config also
    divides the box loss by 4 (normalize_loc_loss_by_codesize); apply that as a loss weight.
    """
    positive = (cls_targets.astype("float32") > 0).expand_dims(2)
    num_positive = positive.sum()
    if average_over_workers is not None:
        num_positive = average_over_workers(num_positive)
    num_positive = mx.nd.maximum(num_positive, 1)
    cls = sigmoid_focal_loss(cls_logits, cls_targets, alpha, gamma).sum() / num_positive
    box = mx.nd.smooth_l1(box_deltas - box_targets, scalar=1.0)
    box = mx.nd.broadcast_mul(box, positive).sum() / num_positive
    return {"cls": cls, "box": box}
