"""Box operators: IoU, regression encode/decode, FPN anchors."""
import math

import mxnet as mx

from ._checks import check_array, check_four, check_same, is_nd, module_of

# maskrcnn-benchmark's cap on predicted log-scale deltas (BBOX_XFORM_CLIP).
DEFAULT_CLIP = math.log(1000.0 / 16)


def box_iou(a, b, offset=0.0):
    """IoU of every box of ``a`` with every box of ``b`` (corner format).

    Parameters
    ----------
    a : NDArray or Symbol, float32, (N, 4) or (B, N, 4)
    b : NDArray or Symbol, float32, (M, 4) or (B, M, 4), same rank as ``a``
    offset : float
        Added to widths and heights: 0 (gluoncv, default) or 1 (Detectron).

    Returns
    -------
    NDArray or Symbol, float32, (N, M) or (B, N, M). Boxes without area have IoU 0.
    """
    F = module_of(a)
    pa = check_array(a, "a", [("N", 4), ("B", "N", 4)])
    pb = check_array(b, "b", [("M", 4), ("B", "M", 4)])
    if pa is not None and pb is not None:
        if len(pa) != len(pb):
            raise ValueError("a and b must both be batched or both not, got {} and {}".format(
                a.shape, b.shape))
        if len(pa) == 3:
            check_same([("a", a.shape[0]), ("b", b.shape[0])], "batch sizes")
    return F.mxops_box_iou(a, b, offset=offset)


def box_encode(boxes, gt_boxes, matches, means=(0., 0., 0., 0.), stds=(1., 1., 1., 1.),
               offset=0.0):
    """Regression targets from boxes (anchors, proposals) to their matched ground truth.

    Parameters
    ----------
    boxes : float32, (N, 4) shared by the batch, or (B, N, 4)
    gt_boxes : float32, (B, M, 4)
    matches : int32, (B, N); rows with a match in [0, M) are encoded, others get zeros.
    means, stds : 4 floats each; targets are ((dx, dy, log dw, log dh) - means) / stds, as
        gluoncv's NormalizedBoxCenterEncoder (RPN: stds 1; R-CNN: stds (.1, .1, .2, .2)).
    offset : float, 0 (gluoncv) or 1 (Detectron).

    Returns
    -------
    (targets, masks) : float32, (B, N, 4) each; masks are 1 on encoded rows.
    """
    F = module_of(boxes)
    check_array(boxes, "boxes", [("N", 4), ("B", "N", 4)])
    check_array(gt_boxes, "gt_boxes", [("B", "M", 4)])
    check_array(matches, "matches", [("B", "N")], "int32")
    if is_nd(boxes) and is_nd(gt_boxes) and is_nd(matches):
        check_same([("gt_boxes", gt_boxes.shape[0]), ("matches", matches.shape[0])] +
                   ([("boxes", boxes.shape[0])] if boxes.ndim == 3 else []), "batch sizes")
        check_same([("boxes", boxes.shape[-2]), ("matches", matches.shape[1])], "box counts")
    out = F.mxops_box_encode(boxes, gt_boxes, matches, means=check_four(means, "means"),
                             stds=check_four(stds, "stds"), offset=offset)
    return out[0], out[1]


def box_decode(deltas, anchors, means=(0., 0., 0., 0.), stds=(1., 1., 1., 1.),
               clip=DEFAULT_CLIP, im_hw=None, offset=0.0):
    """Apply regression deltas to anchors (inverse of :func:`box_encode`).

    Parameters
    ----------
    deltas : float32, (B, N, 4)
    anchors : float32, (N, 4) shared, or (B, N, 4)
    means, stds : 4 floats each (deltas * stds + means are applied).
    clip : float
        Cap on dw, dh before exp (default log(1000/16)); negative: no cap.
    im_hw : float32 (B, 2) of (height, width), optional
        If given, boxes are clipped to [0, width - offset] x [0, height - offset].
    offset : float, 0 (gluoncv) or 1 (Detectron).

    Returns
    -------
    float32, (B, N, 4) boxes in corner format.
    """
    F = module_of(deltas)
    check_array(deltas, "deltas", [("B", "N", 4)])
    check_array(anchors, "anchors", [("N", 4), ("B", "N", 4)])
    if is_nd(deltas) and is_nd(anchors):
        check_same([("deltas", deltas.shape[1]), ("anchors", anchors.shape[-2])], "box counts")
    inputs = [deltas, anchors]
    if im_hw is not None:
        check_array(im_hw, "im_hw", [("B", 2)])
        inputs.append(im_hw)
    return F.mxops_box_decode(*inputs, means=check_four(means, "means"),
                              stds=check_four(stds, "stds"), clip=clip,
                              clip_to_image=im_hw is not None, offset=offset)


def generate_anchors(features, strides, sizes, ratios=(0.5, 1, 2)):
    """FPN anchors, identical to gluoncv's RPNAnchorGenerator for the same configuration.

    Parameters
    ----------
    features : list of NDArray/Symbol (..., H, W), one per level (only shapes are read),
        or list of (H, W) tuples (then CPU NDArrays are returned).
    strides : list of float, one per level (e.g. (4, 8, 16, 32, 64)).
    sizes : list, one entry per level: an anchor side length or a list of them (gluoncv's
        ``base_size * scale``, e.g. (32, 64, 128, 256, 512)).
    ratios : aspect ratios h / w, the same on every level.

    Returns
    -------
    float32, (sum_l H_l * W_l * len(sizes_l) * len(ratios), 4): levels in order; within a
    level row-major cells, then ratios, then sizes, as gluoncv orders them.
    """
    if len(features) != len(strides) or len(sizes) != len(strides):
        raise ValueError("need one feature map, stride and size entry per level: got {}, {} "
                         "and {}".format(len(features), len(strides), len(sizes)))
    per_level = [list(s) if isinstance(s, (list, tuple)) else [s] for s in sizes]
    if len({len(s) for s in per_level}) != 1:
        raise ValueError("every level needs the same number of sizes, got {}".format(sizes))
    if all(isinstance(f, (tuple, list)) for f in features):
        features = [mx.nd.zeros(tuple(int(v) for v in f), dtype="float32") for f in features]
    F = module_of(features[0])
    return F.mxops_anchors(*features, strides=tuple(float(s) for s in strides),
                           sizes=tuple(float(v) for s in per_level for v in s),
                           ratios=tuple(float(r) for r in ratios))
