"""COCO box evaluation (evaluation/coco.py): ids and pixels back to the file's, gathering
across workers, the 12 statistics."""
import json
import os

import numpy as np
import pytest

from data.coco import CategoryMap, prepare_coco
from engine.distributed import Distributed
from evaluation.coco import STAT_NAMES, CocoDetections, evaluate_bbox, gather_detections
from tests.data.test_coco import demo_coco  # noqa: F401 (fixture)
from tests.data.test_coco_pipelines import _eval

# The demo's five categories renumbered with gaps and out of order, as COCO's are.
SPARSE_IDS = {1: 90, 2: 1, 3: 5, 4: 33, 5: 17}
INPUT = 32  # the eval pipeline's output side


@pytest.fixture
def sparse_val(demo_coco, tmp_path):
    """The demo val split with category ids 1, 5, 17, 33, 90; returns (json, dataset)."""
    with open(os.path.join(demo_coco, "annotations", "instances_val2017.json")) as f:
        doc = json.load(f)
    for category in doc["categories"]:
        category["id"] = SPARSE_IDS[category["id"]]
    for ann in doc["annotations"]:
        ann["category_id"] = SPARSE_IDS[ann["category_id"]]
    path = str(tmp_path / "instances_sparse.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    return doc, prepare_coco(demo_coco, "val2017", str(tmp_path / "cache"),
                             annotation_file=path)


def _ground_truth_as_detections(doc, dataset, batch):
    """The batch's ground truth as a network would output it: classes 1..C, boxes ltrb in
    pixels of the INPUT x INPUT input, padded with -1 rows."""
    ids = batch["image_ids"].asnumpy()
    boxes = -np.ones((len(ids), 8, 4))
    classes = -np.ones((len(ids), 8), dtype=np.int64)
    for row, image_id in enumerate(ids):
        image = next(im for im in doc["images"] if im["id"] == image_id)
        anns = [a for a in doc["annotations"] if a["image_id"] == image_id]
        for k, ann in enumerate(anns):
            x, y, w, h = ann["bbox"]
            boxes[row, k] = np.array([x, y, x + w, y + h]) * INPUT / np.array(
                [image["width"], image["height"]] * 2)
            classes[row, k] = dataset.categories.to_class(ann["category_id"])
    return ids, boxes, classes, np.where(classes >= 1, 0.9, -1.0)


def test_ground_truth_fed_back_scores_ap_1_with_the_files_category_ids(sparse_val, tmp_path):
    """The whole way back: eval pipeline ids and sizes, classes 1..C to ids 1, 5, 17, 33, 90,
    the resize undone; ground truth as predictions must then be perfect."""
    doc, dataset = sparse_val
    detections = CocoDetections(dataset.categories)
    for batch in _eval(dataset, batch_size=3, image_size=INPUT):
        ids, boxes, classes, scores = _ground_truth_as_detections(doc, dataset, batch)
        detections.add(batch["image_ids"], boxes, classes, scores,
                       image_sizes=batch["image_sizes"], input_size=(INPUT, INPUT))
    stats = evaluate_bbox(dataset.source_file, detections, out_dir=str(tmp_path / "out"),
                          print_summary=False)
    assert list(stats) == list(STAT_NAMES)
    assert stats["AP"] == pytest.approx(1.0) and stats["AP50"] == pytest.approx(1.0)
    assert stats["AR100"] == pytest.approx(1.0)
    with open(tmp_path / "out" / "bbox.json") as f:
        written = json.load(f)
    assert len(written) == len(doc["annotations"])
    truth = sorted((a["image_id"], a["category_id"]) for a in doc["annotations"])
    assert sorted((r["image_id"], r["category_id"]) for r in written) == truth
    assert {r["category_id"] for r in written} <= set(SPARSE_IDS.values())


def test_boxes_are_mapped_back_to_original_pixels_per_axis():
    """SSD stretches images to a square: x and y scale differently on the way back."""
    detections = CocoDetections(CategoryMap([dict(id=7, name="a"), dict(id=3, name="b")]))
    detections.add(image_ids=[42], boxes=[[[8, 16, 24, 32], [0, 0, 1, 1]]],
                   classes=[[2, -1]], scores=[[0.5, -1]], image_sizes=[[100, 200]],
                   input_size=(32, 32))
    assert detections.results() == [dict(image_id=42, category_id=7, score=0.5,
                                          bbox=[50.0, 50.0, 100.0, 50.0])]


def test_no_detections_score_zero_without_crashing(sparse_val, tmp_path, capsys):
    """An untrained network can output nothing; pycocotools alone crashes on an empty list."""
    _, dataset = sparse_val
    stats = evaluate_bbox(dataset.source_file, CocoDetections(dataset.categories),
                          out_dir=str(tmp_path))
    assert stats["AP"] == 0.0 and stats["AP50"] == 0.0 and stats["AR100"] == 0.0
    with open(tmp_path / "bbox.json") as f:
        assert json.load(f) == []
    summary = capsys.readouterr().out.splitlines()  # the 12 lines, without pycocotools' chatter
    assert len(summary) == 12
    assert summary[0].startswith(" Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all")


def test_detections_of_unknown_images_are_refused(sparse_val):
    _, dataset = sparse_val
    detections = CocoDetections(dataset.categories)
    detections.add([5], [[[0, 0, 4, 4]]], [[1]], [[0.5]], [[96, 96]], (32, 32))
    with pytest.raises(ValueError, match=r"1 image id\(s\) with detections are not in"):
        evaluate_bbox(dataset.source_file, detections, print_summary=False)


def _detections_of(categories, image_ids):
    detections = CocoDetections(categories)
    for image_id in image_ids:
        detections.add([image_id], [[[0, 0, 8, 8]]], [[1]], [[image_id / 100]], [[96, 96]],
                       (32, 32))
    return detections


def test_gather_merges_every_workers_images_once():
    """Rank 0 scores the images of all workers; an image two workers saw (padding) counts
    once."""
    categories = CategoryMap([dict(id=4, name="a")])
    workers = [_detections_of(categories, [1, 2, 3]), _detections_of(categories, [3, 4])]
    calls = []

    def gather_objects(obj, name):  # what two Horovod workers' allgather returns
        calls.append(name)
        return [workers[0].state(), workers[1].state()]

    merged = gather_detections(workers[0], gather_objects, name="val.coco")
    assert calls == ["val.coco"]
    assert merged.image_ids == [1, 2, 3, 4] and len(merged) == 4
    single = gather_detections(workers[1], Distributed(None).gather_objects)
    assert single.results() == workers[1].results()
