"""COCO data root checks, category ids, and the normalised annotation file (data/coco.py).

`write_split` and the `quirky_coco` / `demo_coco` fixtures are shared with
tests/data/test_coco_pipelines.py and tests/evaluation/test_coco_eval.py.
"""
import json
import logging
import os

import cv2
import numpy as np
import pytest

from data.coco import CategoryMap, CocoError, prepare_coco
from data.demo import make_detection

# Categories in file order (not sorted), with COCO-like gaps: classes follow the sorted ids.
QUIRKY_CATEGORIES = [dict(id=90, name="zebra"), dict(id=1, name="person"),
                     dict(id=5, name="plane")]


def write_split(root, split, images, annotations, categories):
    """A COCO split under `root`: annotations/instances_<split>.json and <split>/ images.

    `images` are dicts with id, file_name, width, height and optionally ``grey`` (a one-
    channel file) or ``pixels`` (the array to write); files are written by their extension.
    """
    folder = os.path.join(root, split)
    os.makedirs(folder, exist_ok=True)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    rng = np.random.default_rng(0)
    for image in images:
        pixels = image.pop("pixels", None)
        if pixels is None:
            shape = (image["height"], image["width"]) + (() if image.pop("grey", False)
                                                         else (3,))
            pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        assert cv2.imwrite(os.path.join(folder, image["file_name"]), pixels)
    path = os.path.join(root, "annotations", f"instances_{split}.json")
    with open(path, "w") as f:
        json.dump(dict(images=images, annotations=annotations, categories=categories), f)
    return path


def _ann(ann_id, image_id, category_id, bbox, iscrowd=0):
    return dict(id=ann_id, image_id=image_id, category_id=category_id, bbox=bbox,
                area=float(bbox[2] * bbox[3]), iscrowd=iscrowd)


def write_quirky_split(root, split="val2017"):
    """Four images with COCO's quirks: a colour JPEG with a crowd region listed first, a box
    past the border and two boxes without area; an RGB PNG; a greyscale JPEG; an empty one."""
    images = [dict(id=1, file_name="a.jpg", width=100, height=80),
              dict(id=2, file_name="b.png", width=60, height=40),
              dict(id=3, file_name="c.jpg", width=50, height=50, grey=True),
              dict(id=4, file_name="d.jpg", width=40, height=30)]
    annotations = [_ann(11, 1, 1, [10, 10, 30, 30], iscrowd=1),
                   _ann(12, 1, 5, [20, 20, 40, 30]),
                   _ann(13, 1, 90, [80, 60, 40, 40]),      # past the corner: clipped
                   _ann(14, 1, 1, [50, 50, 0, 10]),        # zero width: dropped
                   _ann(15, 1, 1, [120, 10, 10, 10]),      # right of the image: dropped
                   _ann(21, 2, 90, [6, 4, 30, 20]),
                   _ann(31, 3, 1, [5, 5, 20, 20])]
    return write_split(root, split, images, annotations, QUIRKY_CATEGORIES)


@pytest.fixture
def quirky_coco(tmp_path):
    """A COCO root with the quirky val2017 split; returns (root, cache folder)."""
    write_quirky_split(str(tmp_path / "coco"))
    return str(tmp_path / "coco"), str(tmp_path / "cache")


@pytest.fixture(scope="session")
def demo_coco(tmp_path_factory):
    """The demo detection set, small: 8 train and 7 val images of 96 x 96 (read only)."""
    root = str(tmp_path_factory.mktemp("demo") / "coco")
    make_detection(root, train_images=8, val_images=7, size=96, progress=False)
    return root


def _load(path):
    with open(path) as f:
        return json.load(f)


def test_category_ids_map_to_contiguous_classes_and_back():
    """COCO's ids have gaps (1-90 for 80 classes); training needs 1..C and predictions need
    the file's ids again."""
    categories = CategoryMap(QUIRKY_CATEGORIES)
    assert categories.num_classes == 3
    assert categories.names == ("person", "plane", "zebra")
    np.testing.assert_array_equal(categories.to_class([1, 5, 90]), [1, 2, 3])
    np.testing.assert_array_equal(categories.to_category([1, 2, 3]), [1, 5, 90])
    assert categories.to_category(categories.to_class(90)) == 90
    with pytest.raises(CocoError, match="category id 7 is not one"):
        categories.to_class([1, 7])
    with pytest.raises(CocoError, match=r"outside 1\.\.3"):
        categories.to_category([0, 4])


def test_normalised_file_has_classes_clipped_boxes_and_crowd_regions_last(quirky_coco):
    """What DALI reads: classes 1..C, crowd regions as class C+1 after the image's objects,
    boxes inside the image, boxes without area gone, empty images still listed."""
    root, cache = quirky_coco
    dataset = prepare_coco(root, "val2017", cache)
    doc = _load(dataset.annotation_file)
    assert doc["categories"] == [dict(id=1, name="person"), dict(id=2, name="plane"),
                                 dict(id=3, name="zebra"), dict(id=4, name="crowd")]
    assert dataset.crowd_label == 4
    assert [im["id"] for im in doc["images"]] == [1, 2, 3, 4]
    first = [(a["id"], a["category_id"], a["bbox"], a["iscrowd"]) for a in doc["annotations"]
             if a["image_id"] == 1]
    assert first == [(12, 2, [20, 20, 40, 30], 0),
                     (13, 3, [80, 60, 20, 20], 0),
                     (11, 4, [10, 10, 30, 30], 1)]
    stats = dataset.stats
    assert (stats["images"], stats["objects"], stats["crowd"]) == (4, 4, 1)
    assert (stats["clipped"], stats["dropped_zero_area"], stats["empty_images"]) == (1, 2, 1)
    assert stats["max_objects_per_image"] == 2


def test_normalised_file_is_reused_until_the_source_changes(quirky_coco):
    """Normalising all of train2017 takes a while: an unchanged source reuses the file, a
    changed one (or a vanished image) makes a new one; no temporary file is left."""
    root, cache = quirky_coco
    first = prepare_coco(root, "val2017", cache)
    again = prepare_coco(root, "val2017", cache)
    assert (first.reused, again.reused) == (False, True)
    assert again.annotation_file == first.annotation_file
    assert again.stats == first.stats and again.categories.category_ids == (1, 5, 90)
    assert sorted(os.listdir(cache)) == sorted(
        os.path.basename(first.annotation_file)[: -len(".json")] + suffix
        for suffix in (".json", ".meta.json"))

    source = os.path.join(root, "annotations", "instances_val2017.json")
    doc = _load(source)
    doc["annotations"] = doc["annotations"][:-1]  # image 3 loses its object
    with open(source, "w") as f:
        json.dump(doc, f)
    changed = prepare_coco(root, "val2017", cache)
    assert not changed.reused and changed.annotation_file != first.annotation_file
    assert changed.stats["empty_images"] == 2

    os.remove(os.path.join(root, "val2017", "c.jpg"))
    with pytest.raises(CocoError, match="c.jpg"):
        prepare_coco(root, "val2017", cache)


def test_missing_image_is_an_error_naming_it_and_the_count(quirky_coco):
    root, cache = quirky_coco
    os.remove(os.path.join(root, "val2017", "c.jpg"))
    with pytest.raises(CocoError) as error:
        prepare_coco(root, "val2017", cache)
    message = str(error.value)
    assert "1 of the 4 images" in message and "c.jpg" in message
    assert "instances_val2017.json" in message and "missing_images='skip'" in message


def test_missing_image_can_be_skipped_with_its_annotations(quirky_coco, caplog):
    """Left out with its annotations, counted; taken in again once it is back."""
    root, cache = quirky_coco
    os.remove(os.path.join(root, "val2017", "c.jpg"))
    with caplog.at_level(logging.WARNING, logger="data.coco"):
        dataset = prepare_coco(root, "val2017", cache, missing_images="skip")
    assert "1 of the 4 images" in caplog.text
    doc = _load(dataset.annotation_file)
    assert [im["id"] for im in doc["images"]] == [1, 2, 4]
    assert all(a["image_id"] != 3 for a in doc["annotations"])
    assert dataset.stats["skipped_missing"] == ["c.jpg"]
    assert prepare_coco(root, "val2017", cache, missing_images="skip").reused
    assert cv2.imwrite(os.path.join(root, "val2017", "c.jpg"), np.zeros((50, 50), np.uint8))
    back = prepare_coco(root, "val2017", cache, missing_images="skip")
    assert not back.reused and back.num_images == 4


def test_malformed_json_names_the_file_and_the_json_error(quirky_coco):
    root, cache = quirky_coco
    source = os.path.join(root, "annotations", "instances_val2017.json")
    with open(source) as f:
        text = f.read()
    with open(source, "w") as f:
        f.write(text[: len(text) // 2])  # a truncated download
    with pytest.raises(CocoError, match=r"instances_val2017\.json is not valid JSON: .* at "
                                        r"line 1 column \d+"):
        prepare_coco(root, "val2017", cache)
    with open(source, "w") as f:
        json.dump([1, 2], f)
    with pytest.raises(CocoError, match="holds a JSON list"):
        prepare_coco(root, "val2017", cache)


@pytest.mark.parametrize("remove, expected", [
    ("", "is not a directory"),
    ("annotations/instances_val2017.json", r"instances_val2017\.json does not exist"),
    ("val2017", r"image folder .*val2017 does not exist"),
], ids=["root", "annotation-file", "image-folder"])
def test_missing_root_parts_are_named(quirky_coco, remove, expected):
    root, cache = quirky_coco
    target = os.path.join(root, remove)
    if os.path.isdir(target):
        for folder, _, files in os.walk(target, topdown=False):
            for name in files:
                os.remove(os.path.join(folder, name))
            os.rmdir(folder)
    else:
        os.remove(target)
    with pytest.raises(CocoError, match=expected):
        prepare_coco(root, "val2017", cache)


def test_overridden_names_are_used(quirky_coco):
    """Non-standard layouts: the annotation file and the image folder can be named."""
    root, cache = quirky_coco
    os.rename(os.path.join(root, "val2017"), os.path.join(root, "pictures"))
    os.rename(os.path.join(root, "annotations", "instances_val2017.json"),
              os.path.join(root, "labels.json"))
    dataset = prepare_coco(root, "val2017", cache, annotation_file="labels.json",
                           image_dir="pictures")
    assert dataset.image_dir == os.path.join(root, "pictures")
    assert dataset.num_images == 4


@pytest.mark.parametrize("field, value, expected", [
    ("bbox", [1, 2, 3], r"annotation 31 has bbox \[1, 2, 3\]"),
    ("category_id", 7, r"annotation 31 has category_id 7, which is not among"),
], ids=["bbox", "category"])
def test_bad_annotations_are_named(quirky_coco, field, value, expected):
    root, cache = quirky_coco
    source = os.path.join(root, "annotations", "instances_val2017.json")
    doc = _load(source)
    doc["annotations"][-1][field] = value
    with open(source, "w") as f:
        json.dump(doc, f)
    with pytest.raises(CocoError, match=expected):
        prepare_coco(root, "val2017", cache)


def test_rows_beyond_max_boxes_are_counted_and_reported(quirky_coco, caplog):
    root, cache = quirky_coco
    dataset = prepare_coco(root, "val2017", cache)
    with caplog.at_level(logging.WARNING, logger="data.coco"):
        assert dataset.check_max_boxes(3) == (0, 0)
        assert caplog.text == ""
        assert dataset.check_max_boxes(1) == (1, 2)  # image 1: two objects, one crowd region
    assert "1 image(s)" in caplog.text and "max_boxes=1" in caplog.text
