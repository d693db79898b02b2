"""COCO box and mask evaluation with pycocotools: collect detections, gather them, score them.

A typical evaluation (every worker runs the loop; rank 0 scores)::

    detections = CocoDetections(dataset.categories)
    for batch in eval_loader:                       # data.coco_pipelines.ssd_eval_pipeline
        boxes, classes, scores = decode(net(batch["images"]))   # input-image coordinates
        detections.add(batch["image_ids"], boxes, classes, scores,
                       image_sizes=batch["image_sizes"], input_size=(320, 320))
    detections = gather_detections(detections, dist.gather_objects)
    if dist.is_main:
        stats = evaluate_bbox(dataset.source_file, detections, out_dir=workspace)

Mask R-CNN adds each detection's mask (``masks=`` of `CocoDetections.add`: probabilities over
its box, pasted into the original image and run-length encoded there) and scores both with
``evaluate_coco(..., iou_types=("bbox", "segm"))``, writing ``bbox.json`` and ``segm.json``.

Detections are kept per image: an image added twice (a padded batch, a sample read by two
workers) keeps its last detections instead of counting them twice.
"""
import contextlib
import io
import os

import numpy as np

from engine.files import write_json

__all__ = ["STAT_NAMES", "CocoDetections", "evaluate_bbox", "evaluate_coco",
           "gather_detections", "percent", "write_results"]

# COCOeval.stats in order: AP at IoU 0.50:0.95, 0.50, 0.75, for small/medium/large objects;
# AR with at most 1, 10, 100 detections per image, then for small/medium/large objects.
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
              "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _numpy(array):
    return array.asnumpy() if hasattr(array, "asnumpy") else np.asarray(array)


class CocoDetections:
    """Detections per image, in the source file's category ids and original pixels.

    Parameters
    ----------
    categories : data.coco.CategoryMap
        The source annotation file's categories: training class c is category
        ``categories.to_category(c)``.
    """

    def __init__(self, categories):
        self.categories = categories
        # image id -> (category ids (N,), scores (N,), boxes xywh (N, 4), RLE masks or None)
        self._images = {}

    def add(self, image_ids, boxes, classes, scores, image_sizes, input_size, masks=None,
            paste=None):
        """Add one batch of detections.

        Parameters
        ----------
        image_ids : (B,) ints
            COCO image ids (the eval pipeline's ``image_ids``).
        boxes : (B, N, 4) floats
            [x1, y1, x2, y2] in the coordinates of the network input of `input_size`.
        classes : (B, N) ints
            Training classes 1..C; rows with a class below 1 (background, -1 padding) are
            ignored.
        scores : (B, N) floats
        image_sizes : (B, 2) ints
            Original [height, width] of each image (the eval pipeline's ``image_sizes``).
        input_size : (float, float) or (B, 2)
            (height, width) the boxes refer to: (320, 320) for pixels of a 320 x 320 input,
            (1, 1) for boxes relative to the image; or one per image (Mask R-CNN's
            ``im_hw``: each image's resized size).
        masks : (B, N, S, S) floats, optional
            Each detection's mask probabilities over its box (Mask R-CNN).
        paste : callable, optional
            With `masks`: ``paste(masks, boxes, (height, width))`` gives the (N, height,
            width) 0/1 masks of the original image for an image's N detections, boxes in its
            pixels (`models.mask_rcnn.paste_masks`: all of them in one call).

        NDArrays or numpy arrays.
        """
        image_ids, boxes, classes, scores, image_sizes = (
            _numpy(a) for a in (image_ids, boxes, classes, scores, image_sizes))
        input_sizes = np.broadcast_to(_numpy(input_size), (len(image_sizes), 2))
        masks = None if masks is None else _numpy(masks)
        for i, image_id in enumerate(image_ids.reshape(-1).tolist()):
            keep = classes[i] >= 1
            height, width = (float(v) for v in image_sizes[i])
            in_height, in_width = (float(v) for v in input_sizes[i])
            # Undo the resize (each axis on its own: SSD's resize does not keep the aspect),
            # then keep the box inside the image as the ground truth is.
            scale = np.array([width / in_width, height / in_height] * 2)
            ltrb = boxes[i][keep].astype(np.float64) * scale
            segmentations = None
            if masks is not None:
                segmentations = _encoded_masks(masks[i][keep], ltrb, (int(height), int(width)),
                                               paste)
            ltrb = np.clip(ltrb, 0, [width, height, width, height])
            xywh = np.concatenate([ltrb[:, :2], ltrb[:, 2:] - ltrb[:, :2]], axis=1)
            self._images[int(image_id)] = (
                self.categories.to_category(classes[i][keep].astype(np.int64)),
                scores[i][keep].astype(np.float64), xywh, segmentations)

    @property
    def image_ids(self):
        """The ids of the images added so far, sorted."""
        return sorted(self._images)

    def __len__(self):
        """The number of detections."""
        return sum(len(entry[1]) for entry in self._images.values())

    def state(self):
        """What `update` takes: a picklable dict (for gathering across workers)."""
        return dict(self._images)

    def update(self, state):
        """Add the images of another `state()` (an image present in both takes its
        detections from `state`)."""
        self._images.update(state)

    def results(self, iou_type="bbox"):
        """The detections in COCO's result format, by image id: ``[{"image_id",
        "category_id", "bbox": [x, y, w, h], "score"}]``, or with ``iou_type="segm"``
        ``"segmentation"`` (RLE) instead of ``"bbox"``."""
        results = []
        for image_id in self.image_ids:
            categories, scores, boxes, segmentations = self._images[image_id]
            for k, (cat, score) in enumerate(zip(categories, scores)):
                if iou_type == "segm":
                    if segmentations is None:
                        raise ValueError(f"image {image_id} has detections without masks; "
                                         f"segm results need masks= in add()")
                    shape = dict(segmentation=segmentations[k])
                else:
                    shape = dict(bbox=[float(v) for v in boxes[k]])
                results.append(dict(image_id=image_id, category_id=int(cat), **shape,
                                    score=float(score)))
        return results


def _encoded_masks(masks, boxes, image_hw, paste):
    """COCO RLEs (counts as str: JSON and pickle friendly) of an image's masks pasted into
    it."""
    from pycocotools import mask as mask_util
    if len(boxes) == 0:
        return []
    pasted = paste(masks, boxes, image_hw)
    # pycocotools encodes (H, W, N) Fortran-ordered masks: no copy when paste gives
    # Fortran-ordered planes, as models.mask_rcnn.paste_masks does.
    encoded = mask_util.encode(np.asfortranarray(pasted.transpose(1, 2, 0), dtype=np.uint8))
    return [dict(size=[int(v) for v in rle["size"]], counts=rle["counts"].decode("ascii"))
            for rle in encoded]


def percent(stats):
    """COCOeval statistics in percent (as top-1 is reported); -1 (nothing to measure) stays
    -1."""
    return {name: 100.0 * value if value >= 0 else value for name, value in stats.items()}


def gather_detections(detections, gather_objects, name="coco_detections"):
    """Every worker's detections in one `CocoDetections` (on every worker; score them on
    rank 0).

    Parameters
    ----------
    detections : CocoDetections
        This worker's.
    gather_objects : callable
        ``gather_objects(obj, name)`` returns every worker's `obj` in rank order, as
        `engine.distributed.Distributed.gather_objects`; every worker must call this with the
        same `name`.
    name : str
        The collective's name.
    """
    merged = CocoDetections(detections.categories)
    for state in gather_objects(detections.state(), name):
        merged.update(state)
    return merged


def write_results(path, results):
    """Write COCO results (a list of dicts) as JSON, atomically."""
    write_json(path, results)


def evaluate_bbox(annotation_file, detections, out_dir=None, image_ids=None,
                  print_summary=True):
    """COCO box AP and AR: `evaluate_coco` with ``iou_types=("bbox",)``, its stats alone."""
    return evaluate_coco(annotation_file, detections, ("bbox",), out_dir, image_ids,
                         print_summary)["bbox"]


def evaluate_coco(annotation_file, detections, iou_types=("bbox",), out_dir=None,
                  image_ids=None, print_summary=True):
    """COCO AP and AR of `detections` against the source annotation file.

    Parameters
    ----------
    annotation_file : str
        The *source* COCO json (its own category ids; crowd regions are handled by COCOeval).
    detections : CocoDetections or list of dict
        The detections, or results in COCO's format (then `iou_types` is one type).
    iou_types : sequence of str
        "bbox" (boxes) and/or "segm" (masks: the detections need them).
    out_dir : str, optional
        Where to write ``bbox.json`` / ``segm.json`` (the results; written atomically).
    image_ids : collection of int, optional
        The images to score; by default every image of `annotation_file`, so that an image
        never added counts as one with no detections.
    print_summary : bool
        Print COCOeval's 12-line summary of each type.

    Returns
    -------
    dict
        For each IoU type, the 12 statistics named by `STAT_NAMES` (floats). No detections at
        all give 0; a statistic with no ground truth to measure (e.g. APs without small
        objects) is -1, as COCOeval reports it.
    """
    from pycocotools.coco import COCO

    chatter = io.StringIO()  # pycocotools prints progress; only the summaries are shown
    with contextlib.redirect_stdout(chatter):
        ground_truth = COCO(annotation_file)
    stats = {}
    for iou_type in iou_types:
        results = (detections.results(iou_type) if isinstance(detections, CocoDetections)
                   else detections)
        if out_dir is not None:
            write_results(os.path.join(out_dir, f"{iou_type}.json"), results)
        stats[iou_type], summary = _score(ground_truth, annotation_file, results, iou_type,
                                          image_ids)
        if print_summary:
            print(f"{iou_type}:\n{summary}" if len(iou_types) > 1 else summary, end="")
    return stats


def _score(ground_truth, annotation_file, results, iou_type, image_ids):
    """COCOeval's 12 statistics, and its 12-line summary as text."""
    from pycocotools.cocoeval import COCOeval

    unknown = {r["image_id"] for r in results} - set(ground_truth.getImgIds())
    if unknown:
        raise ValueError(f"{len(unknown)} image id(s) with detections are not in "
                         f"{annotation_file} (e.g. {sorted(unknown)[:5]}); evaluate against "
                         f"the annotation file of the split the images came from")
    chatter = io.StringIO()
    with contextlib.redirect_stdout(chatter):
        predicted = (ground_truth.loadRes([dict(r) for r in results]) if results
                     else _no_results(ground_truth))
        evaluator = COCOeval(ground_truth, predicted, iouType=iou_type)
        if image_ids is not None:
            evaluator.params.imgIds = sorted(int(i) for i in image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluator.summarize()
    return ({name: float(value) for name, value in zip(STAT_NAMES, evaluator.stats)},
            summary.getvalue())


def _no_results(ground_truth):
    # COCO.loadRes fails on an empty list (it looks at the first result's keys); an empty
    # result set scored normally gives AP 0 for every category with ground truth.
    from pycocotools.coco import COCO
    empty = COCO()
    empty.dataset = dict(images=list(ground_truth.dataset["images"]),
                         categories=list(ground_truth.dataset["categories"]), annotations=[])
    empty.createIndex()
    return empty
