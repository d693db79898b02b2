"""ops.box_encode / ops.box_decode against numpy, MXNet's contrib ops and each other."""
import math

import mxnet as mx
import numpy as np
import pytest

import ops
from tests.ops import reference as ref

RCNN_STDS = (0.1, 0.1, 0.2, 0.2)


@pytest.mark.parametrize("means,stds,offset", [((0, 0, 0, 0), (1, 1, 1, 1), 0.0),
                                               ((0.1, -0.2, 0.05, 0), RCNN_STDS, 0.0),
                                               ((0, 0, 0, 0), RCNN_STDS, 1.0)])
def test_encode_matches_numpy(rng, means, stds, offset):
    anchors = ref.random_boxes(rng, 3000, 500, 4, 200)
    gt = np.stack([ref.random_boxes(rng, 6, 500, 4, 200) for _ in range(2)])
    matches = rng.integers(-2, 6, (2, 3000)).astype(np.int32)
    t, m = ops.box_encode(mx.nd.array(anchors), mx.nd.array(gt),
                          mx.nd.array(matches, dtype="int32"), means, stds, offset)
    t, m = t.asnumpy(), m.asnumpy()
    for b in range(2):
        pos = matches[b] >= 0
        exp = ref.encode(anchors[pos], gt[b][matches[b][pos]], means, stds, offset)
        # float32 arithmetic on coordinates up to ~700 px over widths down to 4 px
        np.testing.assert_allclose(t[b][pos], exp, rtol=1e-5, atol=3e-4)
        assert (t[b][~pos] == 0).all()
        np.testing.assert_array_equal(m[b], np.repeat(pos[:, None], 4, 1).astype(np.float32))


def test_encode_matches_contrib(rng):
    anchors = ref.random_boxes(rng, 500, 300, 4, 100)[None]
    gt = ref.random_boxes(rng, 5, 300, 4, 100)[None]
    matches = rng.integers(-1, 5, (1, 500)).astype(np.int32)
    ours, _ = ops.box_encode(mx.nd.array(anchors), mx.nd.array(gt),
                             mx.nd.array(matches, dtype="int32"), stds=RCNN_STDS)
    samples = mx.nd.array((matches >= 0).astype(np.float32))
    theirs, _ = mx.nd.contrib.box_encode(samples, mx.nd.array(np.maximum(matches, 0)),
                                         mx.nd.array(anchors), mx.nd.array(gt),
                                         mx.nd.array([0, 0, 0, 0]), mx.nd.array(RCNN_STDS))
    np.testing.assert_allclose(ours.asnumpy(), theirs.asnumpy(), rtol=1e-5, atol=1e-5)


def test_decode_matches_numpy_and_contrib(rng):
    anchors = ref.random_boxes(rng, 2000, 500, 4, 200)
    deltas = rng.normal(0, 1.5, (2, 2000, 4)).astype(np.float32)
    out = ops.box_decode(mx.nd.array(deltas), mx.nd.array(anchors), stds=RCNN_STDS,
                         clip=math.log(1000 / 16)).asnumpy()
    for b in range(2):
        exp = ref.decode(deltas[b], anchors, stds=RCNN_STDS, clip=math.log(1000 / 16))
        np.testing.assert_allclose(out[b], exp, rtol=1e-5, atol=1e-3)
    theirs = mx.nd.contrib.box_decode(mx.nd.array(deltas), mx.nd.array(anchors[None]),
                                      *RCNN_STDS, clip=math.log(1000 / 16), format="corner")
    np.testing.assert_allclose(out, theirs.asnumpy(), rtol=1e-5, atol=1e-3)


def test_decode_clip_and_image(rng):
    anchors = np.stack([ref.random_boxes(rng, 800, 300, 4, 200) for _ in range(2)])
    deltas = rng.normal(0, 3, (2, 800, 4)).astype(np.float32)
    deltas[0, :5, 2:] = 50  # would overflow exp without the clip
    im_hw = np.array([[300, 400], [250, 260]], np.float32)
    out = ops.box_decode(mx.nd.array(deltas), mx.nd.array(anchors), clip=2.0,
                         im_hw=mx.nd.array(im_hw), offset=1.0).asnumpy()
    assert np.isfinite(out).all()
    for b in range(2):
        exp = ref.decode(deltas[b], anchors[b], clip=2.0, im_hw=im_hw[b], offset=1.0)
        np.testing.assert_allclose(out[b], exp, rtol=1e-5, atol=1e-3)
    assert out[1, :, 0::2].max() <= 259 and out[1, :, 1::2].max() <= 249


def test_roundtrip(rng):
    anchors = ref.random_boxes(rng, 1000, 500, 4, 200)
    gt = ref.random_boxes(rng, 1000, 500, 4, 200)
    t, _ = ops.box_encode(mx.nd.array(anchors), mx.nd.array(gt[None]),
                          mx.nd.arange(1000, dtype="int32").reshape((1, -1)), stds=RCNN_STDS)
    back = ops.box_decode(t, mx.nd.array(anchors), stds=RCNN_STDS, clip=-1).asnumpy()[0]
    np.testing.assert_allclose(back, gt, rtol=1e-4, atol=2e-3)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="means needs 4 values"):
        ops.box_decode(mx.nd.zeros((1, 3, 4)), mx.nd.zeros((3, 4)), means=(0, 0))
    with pytest.raises(ValueError, match="box counts disagree"):
        ops.box_decode(mx.nd.zeros((1, 3, 4)), mx.nd.zeros((5, 4)))
    with pytest.raises(TypeError, match="matches must be int32"):
        ops.box_encode(mx.nd.zeros((3, 4)), mx.nd.zeros((1, 2, 4)), mx.nd.zeros((1, 3)))
