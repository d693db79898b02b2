"""Non-maximum suppression and RPN proposal selection."""
from ._checks import check_array, check_same, is_nd, module_of


def nms(boxes, scores, iou_thresh=0.7, max_out=-1, offset=0.0):
    """Greedy non-maximum suppression per image.

    Boxes are visited by descending score (ties: lower index first; NaN scores are
    dropped); a box is dropped when its IoU with an already kept box exceeds iou_thresh.

    Parameters
    ----------
    boxes : float32, (B, N, 4), or (N, 4) for a single image (NDArray only)
    scores : float32, (B, N), or (N,)
    iou_thresh : float
    max_out : int, most boxes kept per image (-1: N).
    offset : float, 0 (gluoncv, torchvision) or 1 (Detectron).

    Returns
    -------
    keep : int32, (B, K) indices of kept boxes, best first, padded with -1 (K = max_out).
    num_keep : int32, (B,).
    For unbatched input: keep (K,) and num_keep (1,).
    """
    F = module_of(boxes)
    single = is_nd(boxes) and boxes.ndim == 2
    if single:
        check_array(boxes, "boxes", [("N", 4)])
        check_array(scores, "scores", [("N",)])
        boxes, scores = boxes.expand_dims(0), scores.expand_dims(0)
    check_array(boxes, "boxes", [("B", "N", 4)])
    check_array(scores, "scores", [("B", "N")])
    if is_nd(boxes) and is_nd(scores):
        check_same([("boxes", boxes.shape[:2]), ("scores", scores.shape)], "shapes (B, N)")
    keep, num = F.mxops_nms(boxes, scores, iou_thresh=iou_thresh, max_out=int(max_out),
                            offset=offset)
    return (keep[0], num) if single else (keep, num)


def select_proposals(boxes, scores, level_sizes, pre_nms_top_n=2000, post_nms_top_n=1000,
                     iou_thresh=0.7, min_size=0.0, offset=0.0):
    """RPN proposals from decoded boxes, as maskrcnn-benchmark's FPN RPN selects them.

    Per image and level: drop boxes narrower or lower than ``min_size`` (and NaN scores),
    keep the ``pre_nms_top_n`` best, NMS at ``iou_thresh`` keeping at most
    ``post_nms_top_n``; then keep the ``post_nms_top_n`` best over all levels.
    The seed's defaults: training pre 2000 per level (12000 without FPN) and post 2000,
    testing 1000 / 1000 (6000 / 1000 without FPN), NMS 0.7.

    Parameters
    ----------
    boxes : float32, (B, N, 4), e.g. from :func:`ops.box_decode`, levels concatenated.
    scores : float32, (B, N) objectness.
    level_sizes : list of int, boxes per level (summing to N); one level for plain RPN.

    Returns
    -------
    rois : float32, (B, post_nms_top_n, 4), best first, padded with -1.
    roi_scores : float32, (B, post_nms_top_n), padded with -1.
    num_rois : int32, (B,), the number of valid rows.
    """
    F = module_of(boxes)
    check_array(boxes, "boxes", [("B", "N", 4)])
    check_array(scores, "scores", [("B", "N")])
    level_sizes = tuple(int(s) for s in level_sizes)
    if is_nd(boxes):
        check_same([("boxes", boxes.shape[:2]), ("scores", scores.shape)], "shapes (B, N)")
        if sum(level_sizes) != boxes.shape[1]:
            raise ValueError("level_sizes {} sum to {}, but there are {} boxes per image"
                             .format(level_sizes, sum(level_sizes), boxes.shape[1]))
    if pre_nms_top_n <= 0 or post_nms_top_n <= 0:
        raise ValueError("pre_nms_top_n and post_nms_top_n must be positive")
    out = F.mxops_proposals(boxes, scores, level_sizes=level_sizes,
                            pre_nms_top_n=int(pre_nms_top_n),
                            post_nms_top_n=int(post_nms_top_n), iou_thresh=iou_thresh,
                            min_size=min_size, offset=offset)
    return out[0], out[1], out[2]
