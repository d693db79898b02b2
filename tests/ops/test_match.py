"""ops.match_boxes against the numpy reference (exact: IoU bits agree)."""
import mxnet as mx
import numpy as np
import pytest

import ops
from tests.ops import reference as ref

MODES = {"none": 0, "all": 1, "between": 2}


def pad(gts, m):
    """Stack per-image gt arrays into (B, m, 4), padding with -1 rows."""
    out = -np.ones((len(gts), m, 4), np.float32)
    for b, g in enumerate(gts):
        out[b, :len(g)] = g
    return out


def grid_anchors():
    return ops.generate_anchors([(20, 30)], [16], [[32, 64, 128]]).asnumpy()


def check(anchors, gt, mode, fg=0.7, bg=0.3, im_hw=None, border=0.0, offset=0.0):
    im = None if im_hw is None else mx.nd.array(im_hw)
    matches, best = ops.match_boxes(mx.nd.array(anchors), mx.nd.array(gt), fg, bg, mode, im,
                                    border, offset)
    matches, best = matches.asnumpy(), best.asnumpy()
    assert matches.dtype == np.int32
    for b in range(gt.shape[0]):
        a = anchors if anchors.ndim == 2 else anchors[b]
        hw = None if im_hw is None else im_hw[b]
        exp_m, exp_best = ref.match(a, gt[b], fg, bg, MODES[mode], hw, border, offset)
        np.testing.assert_array_equal(matches[b], exp_m)
        np.testing.assert_array_equal(best[b], exp_best)
    return matches


@pytest.mark.parametrize("mode", ["none", "all", "between"])
@pytest.mark.parametrize("trial", range(4))
def test_random_images(rng, mode, trial):
    anchors = grid_anchors()
    gts = [ref.random_boxes(rng, int(rng.integers(1, 12)), 250, 8, 120) for _ in range(3)]
    matches = check(anchors, pad(gts, 12), mode, fg=0.6)
    assert (matches == -1).any() and (matches == -2).any()
    if mode == "all":  # every gt keeps at least one anchor
        for b, g in enumerate(gts):
            assert set(np.unique(matches[b][matches[b] >= 0])) == set(range(len(g)))


def test_low_quality_modes_differ_as_documented(rng):
    # a tiny gt: its best anchor has IoU below bg_thresh, so only "all" keeps it
    anchors = grid_anchors()
    gt = pad([np.array([[100, 100, 104, 104]], np.float32)], 1)
    m_all = check(anchors, gt, "all")
    m_between = check(anchors, gt, "between")
    m_none = check(anchors, gt, "none")
    assert (m_all == 0).sum() >= 1
    assert (m_between == 0).sum() == 0 and (m_none == 0).sum() == 0


def test_ties_all_promoted():
    # two anchors with identical IoU to the gt: both are its best matches
    anchors = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [5, 0, 25, 10]], np.float32)
    gt = pad([np.array([[10, 0, 20, 10]], np.float32)], 2)
    matches = check(anchors, gt, "all", fg=0.9, bg=0.2)
    np.testing.assert_array_equal(matches[0], [-1, -1, 0])
    # the same below the background threshold: IoU 0.2 each, both promoted in "all" mode
    anchors = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], np.float32)
    gt = pad([np.array([[5, 0, 25, 10]], np.float32)], 1)
    matches = check(anchors, gt, "all", fg=0.9, bg=0.3)
    np.testing.assert_array_equal(matches[0], [0, 0, -1])


def test_images_without_ground_truth(rng):
    anchors = grid_anchors()
    gt = pad([ref.random_boxes(rng, 3, 400), np.zeros((0, 4), np.float32)], 3)
    matches = check(anchors, gt, "all")
    assert (matches[1] == -1).all()


def test_padding_rows_never_match(rng):
    anchors = ref.random_boxes(rng, 500, 100, 5, 50)
    gt = -np.ones((1, 6, 4), np.float32)
    gt[0, 2] = [10, 10, 60, 60]
    gt[0, 5] = [30, 30, 90, 90]
    matches = check(anchors, gt, "all")
    assert set(np.unique(matches[matches >= 0])) <= {2, 5}


def test_border_anchors_are_ignored(rng):
    anchors = grid_anchors()
    gts = [ref.random_boxes(rng, 5, 250, 10, 150) for _ in range(2)]
    im_hw = np.array([[320, 480], [250, 300]], np.float32)
    for border in (0.0, 16.0):
        matches = check(anchors, pad(gts, 5), "between", im_hw=im_hw, border=border)
        outside = anchors[:, 2] >= 300 + border
        assert (matches[1][outside] == -2).all()


def test_per_image_boxes_and_offset(rng):
    boxes = np.stack([ref.random_boxes(rng, 300, 200, 5, 80) for _ in range(2)])
    gts = [ref.random_boxes(rng, 4, 200, 20, 80) for _ in range(2)]
    check(boxes, pad(gts, 4), "all", fg=0.5, bg=0.5, offset=1.0)


def test_many_ground_truth_boxes(rng):
    # more gt than one CUDA tile (256) and a wide IoU spread
    anchors = ref.random_boxes(rng, 3000, 500, 5, 100)
    check(anchors, pad([ref.random_boxes(rng, 300, 500, 5, 100)], 300), "all", 0.5, 0.4)


def test_bad_arguments_are_named():
    a, g = mx.nd.zeros((10, 4)), mx.nd.zeros((1, 2, 4))
    with pytest.raises(ValueError, match="low_quality must be one of"):
        ops.match_boxes(a, g, low_quality="best")
    with pytest.raises(ValueError, match="must not exceed"):
        ops.match_boxes(a, g, 0.3, 0.7)
    with pytest.raises(ValueError, match="gt_boxes must have shape"):
        ops.match_boxes(a, mx.nd.zeros((2, 4)))
    with pytest.raises(ValueError, match="batch sizes disagree"):
        ops.match_boxes(mx.nd.zeros((3, 10, 4)), g)
