"""Training targets: anchor/proposal matching, balanced sampling, RPN targets."""
import ctypes

from . import _library
from .boxes import box_encode
from ._checks import check_array, check_same, is_nd, module_of

LOW_QUALITY = {"none": 0, "all": 1, "between": 2}


def match_boxes(boxes, gt_boxes, fg_iou_thresh=0.7, bg_iou_thresh=0.3, low_quality="all",
                im_hw=None, allowed_border=0.0, offset=0.0):
    """Match boxes (anchors or proposals) to ground truth by IoU.

    Parameters
    ----------
    boxes : float32, (N, 4) shared by the batch, or (B, N, 4)
    gt_boxes : float32, (B, M, 4); rows of -1 (all coordinates negative) are padding, so
        an image without objects is a row of -1.
    fg_iou_thresh, bg_iou_thresh : float
        Best IoU >= fg: foreground; < bg: background; in between: ignored.
    low_quality : {"all", "between", "none"}
        Whether each gt keeps its best-matching boxes as foreground: "all" whatever their
        IoU (maskrcnn-benchmark, Detectron), "between" only those not below bg_iou_thresh
        (gluoncv's RPN target sampler), "none" never. Ties all count; a promoted box matches
        its own best gt. A gt whose best IoU is 0 promotes nothing.
    im_hw : float32 (B, 2) of (height, width), optional
        Boxes crossing the image border by more than ``allowed_border`` are ignored and take
        no part in matching (gluoncv's rule for RPN anchors).
    offset : float, 0 (gluoncv) or 1 (Detectron).

    Returns
    -------
    matches : int32, (B, N): gt index, -1 background, -2 ignore.
    max_iou : float32, (B, N): best IoU per box (-1 for border-crossing boxes).
    """
    if low_quality not in LOW_QUALITY:
        raise ValueError("low_quality must be one of {}, got {!r}".format(
            sorted(LOW_QUALITY), low_quality))
    if bg_iou_thresh > fg_iou_thresh:
        raise ValueError("bg_iou_thresh ({}) must not exceed fg_iou_thresh ({})".format(
            bg_iou_thresh, fg_iou_thresh))
    F = module_of(boxes)
    check_array(boxes, "boxes", [("N", 4), ("B", "N", 4)])
    check_array(gt_boxes, "gt_boxes", [("B", "M", 4)])
    inputs = [boxes, gt_boxes]
    if im_hw is not None:
        check_array(im_hw, "im_hw", [("B", 2)])
        inputs.append(im_hw)
    if is_nd(boxes) and is_nd(gt_boxes):
        sizes = [("gt_boxes", gt_boxes.shape[0])]
        sizes += [("boxes", boxes.shape[0])] if boxes.ndim == 3 else []
        sizes += [("im_hw", im_hw.shape[0])] if is_nd(im_hw) else []
        check_same(sizes, "batch sizes")
    out = F.mxops_match(*inputs, fg_thresh=fg_iou_thresh, bg_thresh=bg_iou_thresh,
                        low_quality=LOW_QUALITY[low_quality], use_im_hw=im_hw is not None,
                        allowed_border=allowed_border, offset=offset)
    return out[0], out[1]


def sample_balanced(matches, num_sample=256, pos_fraction=0.5, seed=None):
    """Random balanced subsample of matcher output, per image.

    Takes min(#foreground, round(num_sample * pos_fraction)) foreground boxes (matches >= 0)
    and fills up to num_sample with background boxes (matches == -1), uniformly at random
    without replacement, as gluoncv's RPNTargetSampler and maskrcnn-benchmark's
    BalancedPositiveNegativeSampler do.

    Parameters
    ----------
    matches : int32, (B, N), from :func:`match_boxes`.
    num_sample : int
    pos_fraction : float in [0, 1]
    seed : int >= 0, optional
        Fixes the draw: the same seed picks the same boxes, on CPU and GPU alike. Without
        one, each call takes the next seed of a sequence that :func:`seed` restarts.

    Returns
    -------
    labels : float32, (B, N): 1 sampled foreground, 0 sampled background, -1 not sampled
        (gluoncv's RPN cls_target convention).
    pos_matches : int32, (B, N): the match of sampled foreground boxes, -1 elsewhere.
    """
    if not 0.0 <= pos_fraction <= 1.0:
        raise ValueError("pos_fraction must be in [0, 1], got {}".format(pos_fraction))
    if num_sample < 0:
        raise ValueError("num_sample must be >= 0, got {}".format(num_sample))
    if seed is not None and seed < 0:
        raise ValueError("seed must be >= 0, got {}".format(seed))
    F = module_of(matches)
    check_array(matches, "matches", [("B", "N")], "int32")
    out = F.mxops_sample(matches, num_sample=int(num_sample), pos_fraction=float(pos_fraction),
                         seed=-1 if seed is None else int(seed))
    return out[0], out[1]


def seed(value):
    """Restart the seed sequence that :func:`sample_balanced` uses when given no seed.

    Calls made in the same order after the same ``seed(value)`` draw the same samples. (MXNet's
    engine may run independent calls in any order; pass ``seed=`` for exact repeats.)
    """
    lib = _library.handle()
    lib.mxops_seed_sampler.argtypes = [ctypes.c_uint64]
    lib.mxops_seed_sampler(ctypes.c_uint64(int(value) & (2 ** 64 - 1)))


def rpn_targets(anchors, gt_boxes, im_hw=None, num_sample=256, pos_fraction=0.5,
                fg_iou_thresh=0.7, bg_iou_thresh=0.3, low_quality="all", allowed_border=0.0,
                means=(0., 0., 0., 0.), stds=(1., 1., 1., 1.), seed=None, offset=0.0):
    """RPN training targets for a batch: match, sample, encode (three operator calls).

    Parameters are those of :func:`match_boxes`, :func:`sample_balanced` and
    :func:`box_encode`. With ``low_quality="between"`` and ``im_hw`` given, the targets
    follow gluoncv's RPNTargetGenerator; with the defaults, maskrcnn-benchmark's RPN.

    Returns
    -------
    cls_target : float32, (B, N): 1 positive, 0 negative, -1 ignore.
    box_target : float32, (B, N, 4): regression targets of sampled positives, 0 elsewhere.
    box_mask : float32, (B, N, 4): 1 on sampled positives.
    """
    matches, _ = match_boxes(anchors, gt_boxes, fg_iou_thresh, bg_iou_thresh, low_quality,
                             im_hw, allowed_border, offset)
    labels, pos_matches = sample_balanced(matches, num_sample, pos_fraction, seed)
    box_target, box_mask = box_encode(anchors, gt_boxes, pos_matches, means, stds, offset)
    return labels, box_target, box_mask
