"""The Mask R-CNN pipelines on COCO (data/mask_rcnn_pipelines.py) through the DALI-to-MXNet
iterator: the recipe's resize and padding, one flip for image, boxes and polygons, crowd and
empty images, and the maxima."""
import logging

import numpy as np
import pytest

from data.coco import prepare_coco
from data.coco_pipelines import READER_NAME
from data.dali_iterator import DALIMXNetIterator, LastBatchPolicy
from data.mask_rcnn_pipelines import (mask_rcnn_eval_pipeline, mask_rcnn_train_pipeline,
                                      polygon_rows)
from tests.data.test_coco import write_split

TRAIN_OUTPUTS = ["images", "boxes", "labels", "polygons", "vertices", "im_hw"]
EVAL_OUTPUTS = ["images", "im_hw", "image_ids", "image_sizes"]
CATEGORIES = [dict(id=3, name="a"), dict(id=9, name="b")]


def _object(ann_id, image_id, category_id, polygons, iscrowd=0):
    xy = np.concatenate([np.reshape(p, (-1, 2)) for p in polygons])
    x1, y1 = xy.min(axis=0)
    x2, y2 = xy.max(axis=0)
    return dict(id=ann_id, image_id=image_id, category_id=category_id, iscrowd=iscrowd,
                bbox=[float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                area=float((x2 - x1) * (y2 - y1)), segmentation=[list(map(float, p))
                                                                 for p in polygons])


def _crowd(ann_id, image_id, bbox, height, width):
    return dict(id=ann_id, image_id=image_id, category_id=3, iscrowd=1, bbox=bbox,
                area=float(bbox[2] * bbox[3]),
                segmentation=dict(counts=[height * width], size=[height, width]))


@pytest.fixture(scope="module")
def polygon_coco(tmp_path_factory):
    """Five images of three sizes: objects with one or two polygons, a crowd region (RLE),
    an image without annotations; normalised with their polygons. Returns the dataset."""
    root = str(tmp_path_factory.mktemp("polygons") / "coco")
    images = [dict(id=1, file_name="a.png", width=96, height=64),
              dict(id=2, file_name="b.png", width=64, height=80),
              dict(id=3, file_name="c.png", width=64, height=64),
              dict(id=4, file_name="d.png", width=96, height=64),
              dict(id=5, file_name="e.png", width=64, height=80)]
    annotations = [
        _object(1, 1, 3, [[10, 5, 40, 8, 30, 30]]),
        _object(2, 1, 9, [[50, 40, 90, 42, 70, 60], [60, 10, 80, 10, 80, 20, 60, 20]]),
        _crowd(3, 1, [0, 0, 20, 20], 64, 96),
        _object(4, 2, 9, [[5, 5, 50, 10, 20, 70]]),
        _object(5, 4, 3, [[2, 3, 12, 4, 7, 30]]),
        _object(6, 4, 3, [[40, 30, 70, 33, 65, 60]]),
        _object(7, 5, 9, [[30, 20, 60, 25, 40, 75]]),
        # image 3 has no annotation
    ]
    write_split(root, "train2017", images, annotations, CATEGORIES)
    return prepare_coco(root, "train2017", str(tmp_path_factory.mktemp("cache")),
                        keep_segmentation=True)


def _train(dataset, batch_size=1, min_sizes=(80,), max_size=200, max_boxes=4,
           max_polygons=6, max_vertices=16, seed=0):
    pipeline = mask_rcnn_train_pipeline(
        file_root=dataset.image_dir, annotations_file=dataset.annotation_file, shard_id=0,
        num_shards=1, min_sizes=min_sizes, max_size=max_size, max_boxes=max_boxes,
        max_polygons=max_polygons, max_vertices=max_vertices, decoder_device="cpu",
        hw_decoder_load=0.0, dtype="float32", batch_size=batch_size, num_threads=1,
        device_id=None, seed=seed)
    return DALIMXNetIterator(pipeline, TRAIN_OUTPUTS, READER_NAME, LastBatchPolicy.DROP)


def _eval(dataset, batch_size=1, min_size=80, max_size=200):
    pipeline = mask_rcnn_eval_pipeline(
        file_root=dataset.image_dir, annotations_file=dataset.annotation_file, shard_id=0,
        num_shards=1, min_size=min_size, max_size=max_size, decoder_device="cpu",
        hw_decoder_load=0.0, dtype="float32", batch_size=batch_size, num_threads=1,
        device_id=None)
    return DALIMXNetIterator(pipeline, EVAL_OUTPUTS, READER_NAME, LastBatchPolicy.PARTIAL)


def _samples(iterator):
    out = []
    for batch in iterator:
        arrays = {k: v.asnumpy() for k, v in batch.items()}
        out += [{k: v[i] for k, v in arrays.items()} for i in range(len(arrays["images"]))]
    return out


def _resized(height, width, min_size, max_size):
    """maskrcnn-benchmark's Resize rule, in numpy: the reference."""
    scale = min(min_size / min(height, width), max_size / max(height, width))
    return int(np.floor(height * scale + 0.5)), int(np.floor(width * scale + 0.5))


@pytest.mark.parametrize("min_size, max_size", [(80, 200), (80, 110)])
def test_resize_keeps_the_aspect_and_pads_the_batch_to_a_multiple_of_32(polygon_coco,
                                                                          min_size, max_size):
    batch = next(iter(_eval(polygon_coco, batch_size=5, min_size=min_size,
                            max_size=max_size)))
    sizes = batch["image_sizes"].asnumpy()
    im_hw = batch["im_hw"].asnumpy()
    expected = [_resized(h, w, min_size, max_size) for h, w in sizes]
    np.testing.assert_array_equal(im_hw, expected)
    assert (min(expected[0]) < min_size) == (max_size == 110)  # the longer side capped
    images = batch["images"].asnumpy()
    height, width = images.shape[2:]
    assert height % 32 == 0 and width % 32 == 0
    assert height - 32 < im_hw[:, 0].max() <= height and width - 32 < im_hw[:, 1].max() <= width
    for image, (h, w) in zip(images, im_hw):
        assert np.all(image[:, h:, :] == 0) and np.all(image[:, :, w:] == 0)  # padding
        assert np.abs(image[:, :h, :w]).sum(axis=0).min() > 0 or h * w == 0  # content


def _reference(dataset, image_id, hw):
    """Boxes (x1, y1, x2, y2) and polygons of `image_id` in pixels of its resized size."""
    import json
    with open(dataset.annotation_file) as f:
        doc = json.load(f)
    image = next(im for im in doc["images"] if im["id"] == image_id)
    sy, sx = hw[0] / image["height"], hw[1] / image["width"]
    boxes, polygons = [], []
    for ann in doc["annotations"]:
        if ann["image_id"] == image_id:
            x, y, w, h = ann["bbox"]
            boxes.append([x * sx, y * sy, (x + w) * sx, (y + h) * sy])
            polygons += [np.reshape(p, (-1, 2)) * [sx, sy] for p in ann.get("segmentation", [])]
    return np.array(boxes), polygons


def _flipped(boxes, polygons, width):
    boxes = np.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1)
    return boxes, [np.stack([width - p[:, 0], p[:, 1]], 1) for p in polygons]


def test_one_flip_moves_image_boxes_and_polygons_alike(polygon_coco):
    """Every training sample equals its evaluation sample (same resize), either as it is or
    mirrored, in its pixels, boxes and polygon vertices; both cases occur."""
    originals = {int(s["image_ids"]): s for s in _samples(_eval(polygon_coco))}
    seen = set()
    for epoch_seed in range(3):
        for sample in _samples(_train(polygon_coco, seed=epoch_seed)):
            h, w = sample["im_hw"]
            labels = sample["labels"]
            boxes = sample["boxes"][labels >= 0]
            rows, _ = polygon_rows(sample["polygons"][None], sample["vertices"][None], 4)
            vertices = [sample["vertices"][s:s + n] for _, s, n in rows[0] if n > 0]
            matched = False
            for image_id, original in originals.items():
                ref_boxes, ref_polygons = _reference(polygon_coco, image_id, (h, w))
                if ref_boxes.shape != boxes.shape:
                    continue
                for flip in (False, True):
                    want_boxes, want_polygons = (_flipped(ref_boxes, ref_polygons, w) if flip
                                                 else (ref_boxes, ref_polygons))
                    if not np.allclose(boxes, want_boxes, atol=0.05):
                        continue
                    assert len(vertices) == len(want_polygons)
                    for got, want in zip(vertices, want_polygons):
                        np.testing.assert_allclose(got, want, atol=0.05)
                    pixels = original["images"][:, :h, :w]
                    pixels = pixels[:, :, ::-1] if flip else pixels
                    np.testing.assert_allclose(sample["images"][:, :h, :w], pixels, atol=1e-4)
                    matched = True
                    seen.add(flip)
            assert matched, sample["boxes"]
    assert seen == {False, True}


def test_crowd_regions_have_boxes_without_polygons_and_empty_images_are_skipped(polygon_coco):
    samples = _samples(_train(polygon_coco))
    assert len(samples) == 4  # image 3 has no annotation
    crowd = polygon_coco.crowd_label
    with_crowd = [s for s in samples if (s["labels"] == crowd).any()]
    assert len(with_crowd) == 1
    labels = with_crowd[0]["labels"]
    np.testing.assert_array_equal(labels[:3], [1, 2, crowd])  # objects first, then crowd
    rows, dropped = polygon_rows(with_crowd[0]["polygons"][None],
                                 with_crowd[0]["vertices"][None], 4)
    assert dropped == 0
    # Object 0 has one polygon, object 1 two, the crowd region (row 2) none.
    np.testing.assert_array_equal(rows[0][rows[0][:, 0] >= 0][:, 0], [0, 1, 1])
    np.testing.assert_array_equal(rows[0][rows[0][:, 0] >= 0][:, 2], [3, 3, 4])


def test_rows_beyond_the_maxima_are_cut_and_their_polygons_dropped_and_counted(polygon_coco):
    samples = _samples(_train(polygon_coco, max_boxes=1, max_vertices=5))
    image_1 = next(s for s in samples if s["polygons"][0, 2] == 3 and s["boxes"][0, 0] >= 0
                   and (s["polygons"][:, 0] == 1).sum() == 2)
    assert image_1["boxes"].shape == (1, 4)
    rows, dropped = polygon_rows(image_1["polygons"][None], image_1["vertices"][None], 1)
    # Its second object (two polygons) is beyond max_boxes: both polygons dropped.
    assert dropped == 2
    np.testing.assert_array_equal(rows[0][0], [0, 0, 3])
    assert (rows[0][1:] == -1).all()
    # A polygon whose vertices run past max_vertices is dropped too.
    polygons = np.array([[[0, 0, 3], [0, 3, 7], [-1, -1, -1]]], np.int32)
    rows, dropped = polygon_rows(polygons, np.zeros((1, 5, 2), np.float32), 4)
    assert dropped == 1
    np.testing.assert_array_equal(rows[0], [[0, 0, 3], [-1, -1, -1], [-1, -1, -1]])


def test_multi_scale_training_draws_each_shorter_side(polygon_coco):
    shorter = set()
    for seed in range(4):
        for sample in _samples(_train(polygon_coco, min_sizes=(64, 96), seed=seed)):
            shorter.add(int(min(sample["im_hw"])))
    assert shorter == {64, 96}


def test_images_with_more_polygons_than_the_maxima_are_counted_and_named(polygon_coco,
                                                                         caplog):
    stats = polygon_coco.stats
    assert stats["max_polygons_per_image"] == 3 and stats["max_vertices_per_image"] == 10
    with caplog.at_level(logging.WARNING):
        assert polygon_coco.check_max_polygons(2, 9) == (1, 1)
    assert "--max-polygons" in caplog.text and "--max-vertices" in caplog.text
    caplog.clear()
    assert polygon_coco.check_max_polygons(3, 10) == (0, 0)
    assert caplog.text == ""
