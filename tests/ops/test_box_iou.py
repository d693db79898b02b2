"""ops.box_iou against numpy and mx.nd.contrib.box_iou."""
import mxnet as mx
import numpy as np
import pytest

import ops
from tests.ops import reference as ref


def nd(x, dtype="float32"):
    return mx.nd.array(x, dtype=dtype)


@pytest.mark.parametrize("n,m", [(1, 1), (7, 3), (300, 17), (1000, 100), (64, 1)])
@pytest.mark.parametrize("offset", [0.0, 1.0])
def test_matches_numpy(rng, n, m, offset):
    a, b = ref.random_boxes(rng, n), ref.random_boxes(rng, m)
    out = ops.box_iou(nd(a), nd(b), offset=offset).asnumpy()
    np.testing.assert_array_equal(out, ref.iou(a, b, offset))


def test_matches_contrib_box_iou(rng):
    a, b = ref.random_boxes(rng, 2000), ref.random_boxes(rng, 50)
    ours = ops.box_iou(nd(a), nd(b)).asnumpy()
    theirs = mx.nd.contrib.box_iou(nd(a), nd(b), format="corner").asnumpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_batched(rng):
    a = np.stack([ref.random_boxes(rng, 50) for _ in range(3)])
    b = np.stack([ref.random_boxes(rng, 9) for _ in range(3)])
    out = ops.box_iou(nd(a), nd(b)).asnumpy()
    assert out.shape == (3, 50, 9)
    for k in range(3):
        np.testing.assert_array_equal(out[k], ref.iou(a[k], b[k]))


def test_degenerate_boxes_have_zero_iou():
    a = np.array([[5, 5, 5, 5],        # a point
                  [0, 0, 10, 0],       # a horizontal segment
                  [10, 10, 0, 0],      # inverted
                  [0, 0, 10, 10],      # a normal box
                  [-1, -1, -1, -1]],   # padding
                 np.float32)
    out = ops.box_iou(nd(a), nd(a)).asnumpy()
    assert np.isfinite(out).all()
    expected = np.zeros((5, 5), np.float32)
    expected[3, 3] = 1.0
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out, ref.iou(a, a))


def test_identical_and_disjoint():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    b = np.array([[0, 0, 10, 10], [0, 0, 5, 10], [100, 100, 110, 110]], np.float32)
    out = ops.box_iou(nd(a), nd(b)).asnumpy()
    np.testing.assert_allclose(out, [[1, 0.5, 0], [0, 0, 0]])


def test_very_large_n(rng):
    a, b = ref.random_boxes(rng, 200000), ref.random_boxes(rng, 5)
    out = ops.box_iou(nd(a), nd(b)).asnumpy()
    np.testing.assert_array_equal(out, ref.iou(a, b))


def test_hybrid_block_through_F(rng):
    class Iou(mx.gluon.HybridBlock):
        def hybrid_forward(self, F, x, y):  # pylint: disable=arguments-differ
            return ops.box_iou(x, y) * 2

    a, b = ref.random_boxes(rng, 40), ref.random_boxes(rng, 6)
    net = Iou()
    eager = net(nd(a), nd(b)).asnumpy()
    net.hybridize()
    hybrid = net(nd(a), nd(b)).asnumpy()
    np.testing.assert_array_equal(eager, 2 * ref.iou(a, b))
    np.testing.assert_array_equal(hybrid, eager)


def test_symbol_shape_inference():
    a, b = mx.sym.var("a"), mx.sym.var("b")
    _, out_shapes, _ = ops.box_iou(a, b).infer_shape(a=(2, 30, 4), b=(2, 7, 4))
    assert out_shapes == [(2, 30, 7)]


@pytest.mark.parametrize("a_shape,b_shape,match", [
    ((5, 3), (4, 4), "a must have shape"),
    ((5, 4), (2, 4, 4), "both be batched"),
    ((2, 5, 4), (3, 4, 4), "batch sizes"),
])
def test_bad_shapes_are_named(a_shape, b_shape, match):
    with pytest.raises(ValueError, match=match):
        ops.box_iou(mx.nd.zeros(a_shape), mx.nd.zeros(b_shape))


def test_bad_dtype_is_named():
    with pytest.raises(TypeError, match="a must be float32, got float64"):
        ops.box_iou(mx.nd.zeros((3, 4), dtype="float64"), mx.nd.zeros((3, 4)))


def test_operator_reports_shape_errors():
    # the C++ shape check, reached directly through the registered operator
    with pytest.raises(mx.base.MXNetError, match="mxops_box_iou: expects a"):
        mx.nd.mxops_box_iou(mx.nd.zeros((3, 5)), mx.nd.zeros((2, 4))).wait_to_read()
