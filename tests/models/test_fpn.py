"""FPN P3-P7: level sizes and widths, odd sizes, the top-down path."""
import mxnet as mx
import numpy as np

from models.fpn import FPN


def _fpn_and_inputs(sizes=(9, 5, 3), in_channels=(8, 16, 32)):
    fpn = FPN(in_channels, channels=16)
    fpn.initialize()
    rng = np.random.default_rng(0)
    inputs = [mx.nd.array(rng.normal(size=(2, c, s, s))) for c, s in zip(in_channels, sizes)]
    return fpn, inputs


def test_levels_have_the_width_and_halving_sizes():
    # Odd sizes: the upsampled level above is one larger than the lateral and is cropped.
    fpn, inputs = _fpn_and_inputs()
    shapes = [p.shape for p in fpn(*inputs)]
    assert shapes == [(2, 16, s, s) for s in (9, 5, 3, 2, 1)]


def test_every_level_sees_the_coarsest_input():
    fpn, inputs = _fpn_and_inputs()
    before = [p.asnumpy() for p in fpn(*inputs)]
    inputs[2] = inputs[2] + 1.0
    after = [p.asnumpy() for p in fpn(*inputs)]
    for b, a in zip(before, after):
        assert np.abs(a - b).max() > 1e-3


def test_top_down_path_is_nearest_neighbour_upsampling():
    # Each value repeated 2x2, then cropped to the (odd-sized) lateral it is added to.
    fpn, _ = _fpn_and_inputs()
    x = mx.nd.array(np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3))
    like = mx.nd.zeros((1, 1, 3, 5))
    up = fpn._upsample_like(mx.nd, x, like).asnumpy()[0, 0]
    np.testing.assert_array_equal(up, [[0, 0, 1, 1, 2], [0, 0, 1, 1, 2], [3, 3, 4, 4, 5]])
