"""ops.polygon_masks against its exact numpy rule and against pycocotools."""
import cv2
import mxnet as mx
import numpy as np
import pytest
from pycocotools import mask as coco_mask

import ops
from tests.ops import reference as ref


def star(rng, cx, cy, r, k):
    """A COCO-like simple polygon: k vertices at random radii around a centre."""
    ang = np.sort(rng.uniform(0, 2 * np.pi, k))
    rad = r * rng.uniform(0.5, 1.0, k)
    return np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1).reshape(-1).tolist()


def jittered_roi(rng, polygons, w, h, amount=0.1):
    xy = np.concatenate([np.reshape(p, (-1, 2)) for p in polygons])
    box = np.concatenate([xy.min(0), xy.max(0)])
    size = np.tile(box[2:] - box[:2], 2)
    box = box + rng.normal(0, amount, 4) * size
    return np.clip(box, 0, [w - 1, h - 1, w - 1, h - 1]).astype(np.float32)


def masks_for(images, rois, matches, size=28):
    verts, polys = ops.pack_polygons(images)
    out = ops.polygon_masks(mx.nd.array(rois), mx.nd.array(matches, dtype="int32"),
                            mx.nd.array(verts), mx.nd.array(polys, dtype="int32"), size)
    return out.asnumpy()


def mask_iou(a, b):
    a, b = a > 0.5, b > 0.5
    return (a & b).sum() / max((a | b).sum(), 1)


def test_exact_rule_on_many_objects(rng):
    images, rois, matches = [], [], []
    for _ in range(2):
        objects = []
        for _ in range(4):  # some objects in several parts, as COCO has
            cx, cy, r = rng.uniform(80, 400), rng.uniform(80, 300), rng.uniform(10, 80)
            parts = [star(rng, cx, cy, r, int(rng.integers(3, 25)))]
            if rng.uniform() < 0.5:
                parts.append(star(rng, cx + r, cy, r / 2, 6))
            objects.append(parts)
        images.append(objects)
        r_img = [jittered_roi(rng, objects[g], 640, 480) for g in (0, 1, 2, 3, 1, 2)]
        rois.append(r_img)
        matches.append([0, 1, 2, 3, -1, 2])
    rois = np.array(rois, np.float32)
    out = masks_for(images, rois, matches, 28)
    assert out.shape == (2, 6, 28, 28)
    for b in range(2):
        for r in range(6):
            g = matches[b][r]
            exp = ref.polygon_mask(rois[b, r], images[b][g] if g >= 0 else [], 28)
            np.testing.assert_array_equal(out[b, r], exp)
        assert out[b, 4].sum() == 0 and out[b, 0].sum() > 0


def test_agrees_with_pycocotools_crop_and_resize(rng):
    h, w, size = 480, 640, 28
    ious_full, ious_poly = [], []
    for _ in range(150):
        r = rng.uniform(10, 150)
        polygons = [star(rng, rng.uniform(r, w - r), rng.uniform(r, h - r), r,
                         int(rng.integers(5, 20)))]
        roi = jittered_roi(rng, polygons, w, h)
        if min(roi[2] - roi[0], roi[3] - roi[1]) < 2:
            continue
        ours = masks_for([[polygons]], roi[None, None], [[0]], size)[0, 0]
        # reference 1: full-image mask from pycocotools, cropped and resized
        full = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(polygons, h, w)))
        x1, y1, x2, y2 = [int(round(v)) for v in roi]
        crop = full[y1:y2, x1:x2].astype(np.float32)
        resized = cv2.resize(crop, (size, size), interpolation=cv2.INTER_LINEAR) >= 0.5
        ious_full.append(mask_iou(ours, resized))
        # reference 2: maskrcnn-benchmark's way, polygons moved into the RoI, then pycocotools
        scale = size / np.maximum(roi[2:] - roi[:2], 1)
        moved = [((np.reshape(p, (-1, 2)) - roi[:2]) * scale).reshape(-1).tolist()
                 for p in polygons]
        poly_mask = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(moved, size, size)))
        ious_poly.append(mask_iou(ours, poly_mask))
    assert np.mean(ious_full) >= 0.95, np.mean(ious_full)
    assert np.mean(ious_poly) >= 0.97, np.mean(ious_poly)


@pytest.mark.parametrize("scale", [1, 2, 5])
def test_exact_on_axis_aligned_rectangles(rng, scale):
    # RoIs of 28 * scale pixels and rectangles on multiples of scale: every mask cell is
    # wholly inside or outside, so crop + area-resize of the pycocotools mask is exact.
    size, h, w = 28, 400, 400
    for _ in range(20):
        x0, y0 = rng.integers(0, w - size * scale, 2)
        roi = np.array([x0, y0, x0 + size * scale, y0 + size * scale], np.float32)
        c = np.sort(rng.integers(-4, size + 5, 4).reshape(2, 2), axis=0) * scale
        rx1, rx2 = np.clip(x0 + c[:, 0], 0, w)
        ry1, ry2 = np.clip(y0 + c[:, 1], 0, h)
        if rx2 <= rx1 or ry2 <= ry1:
            continue
        rect = [[rx1, ry1, rx2, ry1, rx2, ry2, rx1, ry2]]
        ours = masks_for([[rect]], roi[None, None], [[0]], size)[0, 0]
        full = coco_mask.decode(coco_mask.frPyObjects(rect, h, w))[:, :, 0].astype(np.float32)
        crop = full[int(roi[1]):int(roi[3]), int(roi[0]):int(roi[2])]
        expected = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA) >= 0.5
        np.testing.assert_array_equal(ours > 0.5, expected)


def test_pack_polygons_layout():
    verts, polys = ops.pack_polygons([[[[0, 0, 4, 0, 4, 4]], [[1, 1, 2, 1, 2, 2], [5, 5, 6, 5, 6, 6, 5, 6]]], []])
    assert verts.shape == (2, 10, 2) and polys.shape == (2, 3, 3)
    np.testing.assert_array_equal(polys[0], [[0, 0, 3], [1, 3, 3], [1, 6, 4]])
    assert (polys[1] == -1).all()
    with pytest.raises(ValueError, match="odd number"):
        ops.pack_polygons([[[[0, 0, 4]]]])


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="matches must be int32"):
        ops.polygon_masks(mx.nd.zeros((1, 2, 4)), mx.nd.zeros((1, 2)), mx.nd.zeros((1, 3, 2)),
                          mx.nd.zeros((1, 1, 3), dtype="int32"))
    with pytest.raises(ValueError, match="RoI counts disagree"):
        ops.polygon_masks(mx.nd.zeros((1, 2, 4)), mx.nd.zeros((1, 3), dtype="int32"),
                          mx.nd.zeros((1, 3, 2)), mx.nd.zeros((1, 1, 3), dtype="int32"))
