"""ops.nms and ops.select_proposals against the numpy references (exact)."""
import mxnet as mx
import numpy as np
import pytest

import ops
from tests.ops import reference as ref


def clustered_boxes(rng, n, objects=30, size=800.0):
    """Boxes jittered around a few objects, as RPN outputs are: plenty of overlap."""
    centres = ref.random_boxes(rng, objects, size, 20, 300)
    pick = centres[rng.integers(0, objects, n)]
    wh = (pick[:, 2:] - pick[:, :2])
    jitter = rng.normal(0, 0.08, (n, 4)) * np.concatenate([wh, wh], 1)
    return (pick + jitter).astype(np.float32)


def run_nms(boxes, scores, thresh, max_out=-1):
    keep, num = ops.nms(mx.nd.array(boxes), mx.nd.array(scores), thresh, max_out)
    return keep.asnumpy(), num.asnumpy()


@pytest.mark.parametrize("n,thresh", [(1, 0.5), (50, 0.3), (2000, 0.7), (3000, 0.5)])
def test_nms_matches_reference(rng, n, thresh):
    boxes = np.stack([clustered_boxes(rng, n) for _ in range(2)])
    scores = rng.uniform(size=(2, n)).astype(np.float32)
    keep, num = run_nms(boxes, scores, thresh)
    for b in range(2):
        exp = ref.nms(boxes[b], scores[b], thresh, n)
        assert num[b] == len(exp)
        np.testing.assert_array_equal(keep[b, :num[b]], exp)
        assert (keep[b, num[b]:] == -1).all()


def test_nms_ties_nan_and_degenerate(rng):
    boxes = clustered_boxes(rng, 600, objects=5)
    boxes[::7, 2:] = boxes[::7, :2]          # zero-area boxes
    boxes[5::11, 2] = boxes[5::11, 0] - 3    # inverted boxes
    scores = rng.integers(0, 5, 600).astype(np.float32) / 4  # many exact ties
    scores[::13] = np.nan
    scores[1::17] = -0.0
    keep, num = run_nms(boxes[None], scores[None], 0.6)
    exp = ref.nms(boxes, scores, 0.6, 600)
    np.testing.assert_array_equal(keep[0, :num[0]], exp)
    assert not np.isin(keep[0, :num[0]], np.nonzero(np.isnan(scores))[0]).any()


def test_nms_max_out_and_single_image(rng):
    boxes = clustered_boxes(rng, 1000)
    scores = rng.uniform(size=1000).astype(np.float32)
    keep, num = ops.nms(mx.nd.array(boxes), mx.nd.array(scores), 0.5, max_out=20)
    assert keep.shape == (20,) and num.asnumpy()[0] == 20
    np.testing.assert_array_equal(keep.asnumpy(), ref.nms(boxes, scores, 0.5, 20))


def test_nms_very_large_n(rng):
    boxes = clustered_boxes(rng, 100000, objects=200, size=3000)
    scores = rng.uniform(size=100000).astype(np.float32)
    keep, num = run_nms(boxes[None], scores[None], 0.7, max_out=300)
    np.testing.assert_array_equal(keep[0, :num[0]], ref.nms(boxes, scores, 0.7, 300))


def run_proposals(boxes, scores, sizes, pre, post, thresh, min_size=0.0, offset=0.0):
    rois, rs, num = ops.select_proposals(mx.nd.array(boxes), mx.nd.array(scores), sizes, pre,
                                         post, thresh, min_size, offset)
    return rois.asnumpy(), rs.asnumpy(), num.asnumpy()


@pytest.mark.parametrize("sizes,pre,post,min_size", [
    ((3000, 1200, 300, 80, 20), 500, 300, 0.0),     # FPN-like, pre < level sizes
    ((400, 100, 25), 2000, 1000, 5.0),              # pre larger than every level
    ((5000,), 1200, 200, 0.0),                      # plain RPN: one level
])
def test_proposals_match_reference(rng, sizes, pre, post, min_size):
    n = sum(sizes)
    boxes = np.stack([clustered_boxes(rng, n) for _ in range(2)])
    scores = rng.uniform(size=(2, n)).astype(np.float32)
    scores[1] = np.round(scores[1] * 50) / 50  # many exact ties
    rois, rs, num = run_proposals(boxes, scores, sizes, pre, post, 0.7, min_size)
    for b in range(2):
        exp = ref.proposals(boxes[b], scores[b], sizes, pre, post, 0.7, min_size)
        assert num[b] == len(exp)
        np.testing.assert_array_equal(rois[b, :num[b]], boxes[b][exp])
        np.testing.assert_array_equal(rs[b, :num[b]], scores[b][exp])
        assert (rois[b, num[b]:] == -1).all() and (rs[b, num[b]:] == -1).all()


def test_proposals_with_nothing_valid(rng):
    boxes = clustered_boxes(rng, 100)[None]
    scores = np.full((1, 100), np.nan, np.float32)
    rois, rs, num = run_proposals(boxes, scores, (60, 40), 50, 10, 0.7)
    assert num[0] == 0 and (rois == -1).all() and (rs == -1).all()


def test_bad_arguments_are_named():
    b, s = mx.nd.zeros((1, 10, 4)), mx.nd.zeros((1, 10))
    with pytest.raises(ValueError, match="sum to 9"):
        ops.select_proposals(b, s, (5, 4))
    with pytest.raises(ValueError, match="scores must have shape"):
        ops.nms(b, mx.nd.zeros((10,)))
    with pytest.raises(mx.base.MXNetError, match="level_sizes sum to 9 but there are 10"):
        mx.nd.mxops_proposals(b, s, level_sizes=(5, 4)).wait_to_read()
