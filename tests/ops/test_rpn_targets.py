"""ops.rpn_targets reproduces gluoncv's RPNTargetGenerator on sample images.

gluoncv subsamples with np.random, so the comparison is in two parts: with num_sample
large enough that nothing is subsampled, foreground / background / ignore sets, matches
and box targets must be the same; with the real num_sample, the counts must be the same
and the samples drawn from those sets.
"""
import mxnet as mx
import numpy as np
import pytest
from gluoncv.model_zoo.rcnn.rpn.rpn_target import RPNTargetGenerator

import ops
from tests.ops import reference as ref

STRIDES, SIZES = (4, 8, 16, 32, 64), (32, 64, 128, 256, 512)


def fpn_anchors(h, w):
    feats = [(int(np.ceil(h / s)), int(np.ceil(w / s))) for s in STRIDES]
    return ops.generate_anchors(feats, STRIDES, SIZES).asnumpy()


def sample_image(rng, h, w, count):
    """gt boxes inside an h x w image, sizes from 12 to 400 pixels."""
    wh = np.exp(rng.uniform(np.log(12), np.log(400), (count, 2)))
    wh = np.minimum(wh, [w - 2, h - 2])
    xy = rng.uniform(0, 1, (count, 2)) * ([w, h] - wh)
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


def gluoncv_targets(gt, anchors, h, w, num_sample):
    gen = RPNTargetGenerator(num_sample=num_sample, pos_iou_thresh=0.7, neg_iou_thresh=0.3,
                             pos_ratio=0.5, stds=(1., 1., 1., 1.))
    cls, box, mask = gen(mx.nd.array(gt), mx.nd.array(anchors), w, h)
    return np.asarray(cls), np.asarray(box), np.asarray(mask)


def ours(gt, anchors, h, w, num_sample, seed=0):
    cls, box, mask = ops.rpn_targets(mx.nd.array(anchors), mx.nd.array(gt[None]),
                                     im_hw=mx.nd.array([[h, w]]), num_sample=num_sample,
                                     low_quality="between", seed=seed)
    return cls.asnumpy()[0], box.asnumpy()[0], mask.asnumpy()[0]


@pytest.mark.parametrize("h,w,count", [(480, 640, 6), (600, 800, 15), (320, 512, 1)])
def test_same_candidates_matches_and_targets(rng, h, w, count):
    anchors, gt = fpn_anchors(h, w), sample_image(rng, h, w, count)
    everything = 10 ** 8  # no subsampling on either side
    g_cls, g_box, g_mask = gluoncv_targets(gt, anchors, h, w, everything)
    o_cls, o_box, o_mask = ours(gt, anchors, h, w, everything)
    np.testing.assert_array_equal(o_cls, g_cls)
    assert (o_cls == 1).sum() >= count  # each object has at least one positive
    pos = o_cls == 1
    np.testing.assert_allclose(o_box[pos], g_box[pos], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(o_mask, g_mask)
    # and the matches behind them: gluoncv matches positives to their best gt
    matches, _ = ops.match_boxes(mx.nd.array(anchors), mx.nd.array(gt[None]), 0.7, 0.3,
                                 "between", mx.nd.array([[h, w]]))
    best_gt = ref.iou(anchors, gt).argmax(1)
    np.testing.assert_array_equal(matches.asnumpy()[0][pos], best_gt[pos])


@pytest.mark.parametrize("trial", range(3))
def test_same_sample_statistics(rng, trial):
    h, w = 600, 800
    anchors, gt = fpn_anchors(h, w), sample_image(rng, h, w, 1 + 5 * trial)
    full, _, _ = gluoncv_targets(gt, anchors, h, w, 10 ** 8)
    np.random.seed(trial)
    g_cls, _, _ = gluoncv_targets(gt, anchors, h, w, 256)
    o_cls, o_box, o_mask = ours(gt, anchors, h, w, 256, seed=trial)
    for value in (1, 0):  # same counts, drawn from the same candidates
        assert (o_cls == value).sum() == (g_cls == value).sum()
        assert (full[o_cls == value] == value).all()
    assert ((o_mask[:, 0] > 0) == (o_cls == 1)).all()
    assert (o_box[o_cls != 1] == 0).all()


def test_hybridized_block_gives_the_same_targets(rng):
    class Targets(mx.gluon.HybridBlock):
        def hybrid_forward(self, F, anchors, gt, im_hw):  # pylint: disable=arguments-differ
            return ops.rpn_targets(anchors, gt, im_hw, low_quality="between", seed=3)

    h, w = 320, 512
    args = (mx.nd.array(fpn_anchors(h, w)), mx.nd.array(sample_image(rng, h, w, 4)[None]),
            mx.nd.array([[h, w]]))
    net = Targets()
    eager = [x.asnumpy() for x in net(*args)]
    net.hybridize()
    hybrid = [x.asnumpy() for x in net(*args)]
    for e, hy in zip(eager, hybrid):
        np.testing.assert_array_equal(e, hy)
    assert (eager[0] == 1).sum() > 0
