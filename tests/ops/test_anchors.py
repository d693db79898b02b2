"""ops.generate_anchors equals gluoncv's RPNAnchorGenerator for the same configuration."""
import mxnet as mx
import numpy as np
import pytest
from gluoncv.model_zoo.rcnn.rpn.anchor import RPNAnchorGenerator

import ops

RATIOS = (0.5, 1, 2)


def gluoncv_anchors(stride, base_size, scales, feat_hw, ratios=RATIOS):
    gen = RPNAnchorGenerator(stride=stride, base_size=base_size, ratios=list(ratios),
                             scales=list(scales), alloc_size=(128, 128))
    gen.initialize()
    return gen(mx.nd.zeros((1, 1) + tuple(feat_hw))).asnumpy().reshape(-1, 4)


def test_fpn_levels_equal_gluoncv():
    # gluoncv's mask_rcnn_fpn_resnet50_v1b_coco: strides 4..64, base 16, scales 2..32
    strides, scales = (4, 8, 16, 32, 64), (2, 4, 8, 16, 32)
    feats = [(50, 76), (25, 38), (13, 19), (7, 10), (4, 5)]
    expected = np.concatenate([gluoncv_anchors(st, 16, (s,), hw)
                               for st, s, hw in zip(strides, scales, feats)])
    ours = ops.generate_anchors(feats, strides, [16 * s for s in scales], RATIOS).asnumpy()
    assert ours.shape == expected.shape
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize("stride,scales,ratios", [
    (16, (2, 4, 8, 16, 32), (0.5, 1, 2)),     # gluoncv Faster R-CNN C4
    (16, (8,), (0.5, 1, 2)),
    (8, (1.5, 3), (0.3, 1, 3.7)),              # sizes not multiples of the stride
    (5, (4.2,), (0.25,)),
])
def test_single_level_equals_gluoncv(stride, scales, ratios):
    expected = gluoncv_anchors(stride, 16, scales, (9, 13), ratios)
    ours = ops.generate_anchors([(9, 13)], [stride], [[16 * s for s in scales]], ratios)
    np.testing.assert_array_equal(ours.asnumpy(), expected)


def test_takes_feature_maps_as_nd_and_sym():
    feats = [mx.nd.zeros((2, 256, 6, 8), dtype="float16"), mx.nd.zeros((2, 256, 3, 4))]
    nd_out = ops.generate_anchors(feats, (8, 16), (32, 64)).asnumpy()
    assert nd_out.shape == ((6 * 8 + 3 * 4) * 3, 4)
    syms = [mx.sym.var("p3"), mx.sym.var("p4")]
    out = ops.generate_anchors(syms, (8, 16), (32, 64))
    res = out.eval(ctx=mx.cpu(), p3=feats[0], p4=feats[1])[0].asnumpy()
    np.testing.assert_array_equal(res, nd_out)


def test_bad_configuration_is_named():
    with pytest.raises(ValueError, match="one feature map, stride and size entry per level"):
        ops.generate_anchors([(4, 4)], (8, 16), (32, 64))
    with pytest.raises(ValueError, match="same number of sizes"):
        ops.generate_anchors([(4, 4), (2, 2)], (8, 16), ((32, 40), 64))
