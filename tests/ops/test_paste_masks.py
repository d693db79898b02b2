"""ops.paste_masks against the float64 reference of its formula (tests/ops/reference.py) and
against the cv2 paste it replaces; layouts, thresholds, Symbols, argument checks."""
import mxnet as mx
import numpy as np
import pytest

import ops
from tests.ops import reference as ref

# The kernel computes in float32: where the exact value lies this close to the threshold,
# rounding may put a pixel on either side. (Its coordinate error is a few float32 ulps of
# the mask coordinate, ~1e-6 for S = 28, the value's less than that.)
FLOAT32_BAND = 1e-5
# cv2.warpAffine's INTER_LINEAR rounds the source position to 1/32 of a mask pixel (after a
# 1/1024 fixed-point step): up to 1/64 + 1/1024 per axis, which moves a bilinear value by at
# most that much per unit of mask difference, on each of the two axes.
CV2_BAND = 2 * (1 / 64 + 1 / 1024)


def paste(masks, boxes, image_hw, threshold=0.5, column_major=False):
    return ops.paste_masks(mx.nd.array(masks), mx.nd.array(boxes), image_hw, threshold,
                           column_major).asnumpy()


def blob_masks(rng, n, size=28):
    """Mask-head-like probabilities: a noisy elliptical blob, sharp or soft."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    out = np.empty((n, size, size), np.float32)
    for i in range(n):
        cx, cy = rng.uniform(0.2, 0.8, 2) * size
        ax, ay = rng.uniform(0.15, 0.5, 2) * size
        r2 = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2
        logit = rng.uniform(2, 10) * (1 - r2) + rng.normal(0, 0.5, (size, size))
        out[i] = 1 / (1 + np.exp(-logit))
    return out


def awkward_boxes(rng, n, height, width):
    """Boxes of every kind: inside, partly or wholly outside the image, under a pixel, of
    zero width or height (some on pixel centres, where a zero-width box still shows),
    inverted, larger than the image."""
    xy = rng.uniform(-60, [width + 20, height + 20], (n, 2))
    wh = np.exp(rng.uniform(np.log(0.05), np.log(400), (n, 2)))
    boxes = np.concatenate([xy, xy + wh], 1)
    kind = np.arange(n) % 8
    boxes[kind == 1, 2] = boxes[kind == 1, 0]                       # zero width
    boxes[kind == 2, 3] = boxes[kind == 2, 1]                       # zero height
    centred = kind == 3                                             # zero width on centres
    boxes[centred, 0] = boxes[centred, 2] = np.floor(boxes[centred, 0]) + 0.5
    boxes[kind == 4] = boxes[kind == 4][:, [2, 3, 0, 1]]            # inverted
    boxes[kind == 5] = [-30, -40, width + 50, height + 10]          # beyond the image
    tiny = kind == 6                                                # under a pixel
    boxes[tiny, 2:] = boxes[tiny, :2] + rng.uniform(0.01, 1, (int(tiny.sum()), 2))
    return boxes.astype(np.float32)


def assert_matches_reference(out, masks, boxes, image_hw, threshold=0.5,
                             ambiguous_share=1e-4):
    """Each plane equals the float64 reference wherever rounding cannot decide it, and few
    pixels are that close to the threshold."""
    ambiguous = 0
    for mask, box, plane in zip(masks, boxes, out):
        values = ref.paste_values(mask, box, image_hw)
        near = np.abs(values - threshold) <= FLOAT32_BAND
        np.testing.assert_array_equal(plane[~near], (values >= threshold)[~near],
                                      err_msg="box {}".format(box.tolist()))
        ambiguous += int(near.sum())
    assert ambiguous <= ambiguous_share * out.size, ambiguous


@pytest.mark.parametrize("image_hw", [(480, 640), (64, 48)])
def test_equals_the_float64_reference(rng, image_hw):
    n = 120
    masks = np.concatenate([blob_masks(rng, n // 2),
                            rng.uniform(size=(n // 2, 28, 28)).astype(np.float32)])
    boxes = awkward_boxes(rng, n, *image_hw)
    out = paste(masks, boxes, image_hw)
    assert out.shape == (n,) + image_hw and out.dtype == np.uint8
    assert set(np.unique(out)) <= {0, 1} and out.sum() > 1000
    assert_matches_reference(out, masks, boxes, image_hw)


def test_tiny_and_degenerate_boxes(rng):
    # A zero-width box on a column of pixel centres is one pixel wide, where the mask's
    # outermost columns reach halfway: an all-ones mask gives exactly 0.5 there.
    ones = np.ones((7, 28, 28), np.float32)
    boxes = np.array([[10.5, 5, 10.5, 25], [10.2, 5, 10.2, 25], [10.5, 5, 10.4, 25],
                      [3.6, 3.6, 3.9, 3.9], [3.3, 3.3, 3.6, 3.6],
                      [10.4996, 5, 10.4996, 25], [10.498, 5, 10.498, 25]], np.float32)
    out = paste(ones, boxes, (32, 32))
    assert out[0].sum() == 20 and out[0][5:25, 10].all()   # the centre column only
    assert out[1].sum() == 0                                # no pixel centre inside
    assert out[2].sum() == 20                               # inverted: 1e-3 wide at x1
    assert out[3].sum() == 0                                # under a pixel, off centres
    assert out[4].sum() == 1 and out[4][3, 3] == 1          # under a pixel, on a centre
    # Zero width counts as 1e-3: a centre 0.4e-3 right of x1 is inside, 2e-3 right is not.
    assert out[5].sum() == 20 and out[6].sum() == 0
    assert_matches_reference(out, ones, boxes, (32, 32), ambiguous_share=1)
    masks = rng.uniform(size=(7, 28, 28)).astype(np.float32)
    assert_matches_reference(paste(masks, boxes, (32, 32)), masks, boxes, (32, 32))


@pytest.mark.parametrize("threshold", [0.05, 0.3, 0.9, 1.0])
def test_other_thresholds(rng, threshold):
    masks, boxes = blob_masks(rng, 30), awkward_boxes(rng, 30, 100, 120)
    assert_matches_reference(paste(masks, boxes, (100, 120), threshold), masks, boxes,
                             (100, 120), threshold)


@pytest.mark.parametrize("size", [1, 14, 56])
def test_other_mask_sizes(rng, size):
    masks = rng.uniform(size=(20, size, size)).astype(np.float32)
    boxes = awkward_boxes(rng, 20, 90, 70)
    assert_matches_reference(paste(masks, boxes, (90, 70)), masks, boxes, (90, 70))


def test_agrees_with_the_cv2_paste(rng):
    image_hw = (480, 640)
    masks = blob_masks(rng, 200)
    xy = rng.uniform(-40, [600, 440], (200, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(2, 400, (200, 2))], 1).astype(np.float32)
    out = paste(masks, boxes, image_hw)
    differ = 0
    for mask, box, plane in zip(masks, boxes, out):
        old = ref.paste_mask_cv2(mask, box, image_hw)
        moved = plane != old
        if moved.any():  # only where cv2's rounded weights can decide it
            values = ref.paste_values(mask, box, image_hw)
            assert np.abs(values[moved] - 0.5).max() <= CV2_BAND
        differ += int(moved.sum())
    assert differ <= 0.001 * out.size
    assert differ <= 0.005 * out.sum()  # also among the pixels that are set


def test_non_finite_boxes_paste_nothing():
    boxes = np.array([[np.nan, 0, 10, 10], [0, 0, np.inf, 10], [-np.inf, 0, 5, 5],
                      [1e9, 1e9, 2e9, 2e9]], np.float32)
    assert paste(np.ones((4, 28, 28), np.float32), boxes, (16, 16)).sum() == 0


def test_column_major_planes_are_the_row_major_ones_transposed(rng):
    masks, boxes = blob_masks(rng, 40), awkward_boxes(rng, 40, 70, 90)
    rows = paste(masks, boxes, (70, 90))
    columns = paste(masks, boxes, (70, 90), column_major=True)
    assert columns.shape == (40, 90, 70)
    np.testing.assert_array_equal(columns.transpose(0, 2, 1), rows)


def test_symbol_and_hybridized_block(rng):
    class Paste(mx.gluon.HybridBlock):
        def hybrid_forward(self, F, masks, boxes):  # pylint: disable=arguments-differ
            return ops.paste_masks(masks, boxes, (40, 50), threshold=0.4)

    masks, boxes = mx.nd.array(blob_masks(rng, 6)), mx.nd.array(awkward_boxes(rng, 6, 40, 50))
    net = Paste()
    eager = net(masks, boxes).asnumpy()
    net.hybridize()
    np.testing.assert_array_equal(net(masks, boxes).asnumpy(), eager)
    np.testing.assert_array_equal(eager, paste(masks.asnumpy(), boxes.asnumpy(), (40, 50), 0.4))
    m, b = mx.sym.var("m"), mx.sym.var("b")
    sym = ops.paste_masks(m, b, (40, 50), column_major=True)
    _, shapes, _ = sym.infer_shape(m=(6, 28, 28), b=(6, 4))
    _, types, _ = sym.infer_type(m=np.float32, b=np.float32)
    assert shapes == [(6, 50, 40)] and types == [np.uint8]


@pytest.mark.parametrize("masks, boxes, kwargs, error, match", [
    ((3, 28, 28), (3, 4), dict(image_hw=(10, 10), threshold=0), ValueError,
     "threshold must be > 0"),
    ((3, 28, 27), (3, 4), {}, ValueError, r"masks must have shape \(N, S, S\)"),
    ((3, 28), (3, 4), {}, ValueError, "masks must have shape"),
    ((3, 28, 28), (3, 5), {}, ValueError, "boxes must have shape"),
    ((3, 28, 28), (2, 4), {}, ValueError, "detection counts disagree: masks=3, boxes=2"),
    ((3, 28, 28), (3, 4), dict(image_hw=(0, 10)), ValueError, "image_hw must be"),
    ((3, 28, 28), (3, 4), dict(image_hw=(10, 10.5)), ValueError, "image_hw must be"),
    ((3, 28, 28), (3, 4), dict(image_hw=(10,)), ValueError, "image_hw must be"),
])
def test_bad_arguments_are_named(masks, boxes, kwargs, error, match):
    kwargs = dict(dict(image_hw=(10, 10)), **kwargs)
    with pytest.raises(error, match=match):
        ops.paste_masks(mx.nd.zeros(masks), mx.nd.zeros(boxes), **kwargs)


def test_bad_dtypes_are_named():
    with pytest.raises(TypeError, match="masks must be float32, got float64"):
        ops.paste_masks(mx.nd.zeros((1, 4, 4), dtype="float64"), mx.nd.zeros((1, 4)), (8, 8))
    with pytest.raises(TypeError, match="boxes must be float32, got float16"):
        ops.paste_masks(mx.nd.zeros((1, 4, 4)), mx.nd.zeros((1, 4), dtype="float16"), (8, 8))


def test_operator_checks_its_arguments():
    # the C++ checks, reached directly through the registered operator (as Symbols are)
    m, b = mx.nd.zeros((2, 5, 5)), mx.nd.zeros((2, 4))
    with pytest.raises(mx.base.MXNetError, match="mxops_paste_masks: expects masks"):
        mx.nd.mxops_paste_masks(m, mx.nd.zeros((3, 4)), image_hw=(8, 8)).wait_to_read()
    with pytest.raises(mx.base.MXNetError, match="mxops_paste_masks: image_hw must be"):
        mx.nd.mxops_paste_masks(m, b, image_hw=(8, -1)).wait_to_read()
    with pytest.raises(mx.base.MXNetError, match="mxops_paste_masks: threshold must be > 0"):
        mx.nd.mxops_paste_masks(m, b, image_hw=(8, 8), threshold=-0.5).wait_to_read()
    with pytest.raises(mx.base.MXNetError, match="mxops_paste_masks: boxes must be float32"):
        mx.nd.mxops_paste_masks(m, b.astype("float64"), image_hw=(8, 8)).wait_to_read()


def test_out_is_written(rng):
    masks, boxes = blob_masks(rng, 5), awkward_boxes(rng, 5, 30, 40)
    out = mx.nd.full((5, 40, 30), 7, dtype="uint8")
    result = ops.paste_masks(mx.nd.array(masks), mx.nd.array(boxes), (30, 40),
                             column_major=True, out=out)
    assert result is out
    np.testing.assert_array_equal(out.asnumpy(), paste(masks, boxes, (30, 40), 0.5, True))
    with pytest.raises(ValueError, match=r"out must have shape \(N, 30, 40\)"):
        ops.paste_masks(mx.nd.array(masks), mx.nd.array(boxes), (30, 40), out=out)
    with pytest.raises(TypeError, match="out must be uint8"):
        ops.paste_masks(mx.nd.array(masks), mx.nd.array(boxes), (30, 40), column_major=True,
                        out=out.astype("float32"))
