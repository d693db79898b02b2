"""COCO mask evaluation (evaluation/coco.py with masks): the ground truth fed back through the
Mask R-CNN evaluation pipeline's sizes, as 28 x 28 masks over its boxes, scores a mask AP of
about 1 in the file's category ids, segm.json holds RLEs of the original images, and those
are the RLEs of the float64 reference paste (tests/ops/reference.py), as the cv2 paste's
were up to its fixed-point rounding."""
import json

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_util
from pycocotools.coco import COCO

from evaluation.coco import CocoDetections, evaluate_coco
from models.mask_rcnn import paste_masks
from tests.data.test_mask_rcnn_pipelines import _eval, polygon_coco  # noqa: F401 (fixture)
from tests.ops import reference as ref

MASK = 28


def _ground_truth_as_detections(coco, batch, mirror_masks=False):
    """Boxes in resized pixels, classes 1..C and 28 x 28 masks of every non-crowd object."""
    ids = batch["image_ids"].asnumpy()
    im_hw = batch["im_hw"].asnumpy()
    boxes = -np.ones((len(ids), 4, 4))
    classes = -np.ones((len(ids), 4), np.int64)
    masks = np.zeros((len(ids), 4, MASK, MASK), np.float32)
    categories = sorted(coco.getCatIds())
    for row, image_id in enumerate(ids.tolist()):
        image = coco.imgs[image_id]
        scale = np.array([im_hw[row][1] / image["width"], im_hw[row][0] / image["height"]] * 2)
        anns = [a for a in coco.imgToAnns[image_id] if not a["iscrowd"]]
        for k, ann in enumerate(anns):
            x, y, w, h = ann["bbox"]
            boxes[row, k] = np.array([x, y, x + w, y + h]) * scale
            classes[row, k] = categories.index(ann["category_id"]) + 1
            full = coco.annToMask(ann).astype(np.float32)
            inside = full[int(y):int(np.ceil(y + h)), int(x):int(np.ceil(x + w))]
            inside = inside[:, ::-1] if mirror_masks else inside
            masks[row, k] = cv2.resize(inside, (MASK, MASK), interpolation=cv2.INTER_LINEAR)
    return ids, boxes, classes, np.where(classes >= 1, 0.9, -1.0), masks


def _detections(dataset, mirror_masks=False, paste=paste_masks):
    coco = COCO(dataset.source_file)
    detections = CocoDetections(dataset.categories)
    for batch in _eval(dataset, batch_size=2, min_size=80, max_size=200):
        ids, boxes, classes, scores, masks = _ground_truth_as_detections(coco, batch,
                                                                         mirror_masks)
        detections.add(ids, boxes, classes, scores, batch["image_sizes"], batch["im_hw"],
                       masks=masks, paste=paste)
    return detections


def _one_by_one(paste_one):
    """A paste of an image's detections from a paste of one detection."""
    def paste(masks, boxes, image_hw):
        return np.stack([paste_one(m, b, image_hw) for m, b in zip(masks, boxes)])
    return paste


def _decoded(results):
    return [mask_util.decode(dict(r["segmentation"], counts=r["segmentation"]["counts"]
                                  .encode())) for r in results]


def test_ground_truth_masks_fed_back_score_a_mask_ap_of_about_1(polygon_coco, tmp_path):
    stats = evaluate_coco(polygon_coco.source_file, _detections(polygon_coco),
                          ("bbox", "segm"), out_dir=str(tmp_path), print_summary=False)
    assert stats["bbox"]["AP"] == pytest.approx(1.0, abs=1e-6)
    # Masks resampled to 28 x 28 and back lose a little at the edges, nothing more.
    assert stats["segm"]["AP50"] == pytest.approx(1.0, abs=1e-6)
    assert stats["segm"]["AP"] >= 0.9
    with open(tmp_path / "segm.json") as f:
        written = json.load(f)
    with open(polygon_coco.source_file) as f:
        doc = json.load(f)
    objects = [a for a in doc["annotations"] if not a["iscrowd"]]
    assert len(written) == len(objects)
    assert {r["category_id"] for r in written} == {3, 9}  # the file's ids, not 1..C
    sizes = {im["id"]: [im["height"], im["width"]] for im in doc["images"]}
    for result in written:
        assert result["segmentation"]["size"] == sizes[result["image_id"]]
        assert mask_util.area(dict(result["segmentation"],
                                   counts=result["segmentation"]["counts"].encode())) > 0
    assert (tmp_path / "bbox.json").exists()


def test_wrong_masks_in_right_boxes_score_a_low_mask_ap(polygon_coco):
    """The mask AP measures the masks: mirrored masks keep the boxes' AP and lose it."""
    stats = evaluate_coco(polygon_coco.source_file, _detections(polygon_coco, True),
                          ("bbox", "segm"), print_summary=False)
    assert stats["bbox"]["AP"] == pytest.approx(1.0, abs=1e-6)
    assert stats["segm"]["AP"] < 0.5


def test_segm_results_need_masks(polygon_coco):
    detections = CocoDetections(polygon_coco.categories)
    detections.add([1], np.array([[[0, 0, 10, 10]]]), np.array([[1]]), np.array([[0.5]]),
                   np.array([[64, 96]]), (64, 96))
    with pytest.raises(ValueError, match="without masks"):
        evaluate_coco(polygon_coco.source_file, detections, ("segm",), print_summary=False)


def test_segm_results_are_those_of_the_reference_paste(polygon_coco):
    ours = _detections(polygon_coco)
    reference = _detections(polygon_coco, paste=_one_by_one(ref.paste_mask))
    assert ours.results("segm") == reference.results("segm")  # RLE for RLE
    # The cv2 paste evaluation used before ops.paste_masks: its fixed-point weights move a
    # few edge pixels (4 of the 3,669 set here), not the scores.
    cv2_paste = _detections(polygon_coco, paste=_one_by_one(ref.paste_mask_cv2))
    ours_masks, cv2_masks = _decoded(ours.results("segm")), _decoded(cv2_paste.results("segm"))
    differ = sum(int((a != b).sum()) for a, b in zip(ours_masks, cv2_masks))
    assert differ <= 0.001 * sum(a.size for a in ours_masks)
    scores = [evaluate_coco(polygon_coco.source_file, d, ("segm",), print_summary=False)
              for d in (ours, cv2_paste)]
    assert scores[0] == scores[1]


def test_an_image_without_detections_pastes_nothing(polygon_coco):
    detections = CocoDetections(polygon_coco.categories)
    detections.add([1], -np.ones((1, 2, 4)), -np.ones((1, 2)), -np.ones((1, 2)),
                   np.array([[64, 96]]), (64, 96), masks=np.zeros((1, 2, MASK, MASK)),
                   paste=paste_masks)
    assert detections.results("segm") == [] and len(detections) == 0
