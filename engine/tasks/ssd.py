"""SSD-FPN detection (SSD320 v1.2): focal and smooth-L1 losses over anchor targets, COCO box AP.

Batches come from `data/coco_pipelines.py` through `data/coco_loaders.py`: training batches
``{"data", "boxes", "labels"}`` (boxes relative to the image, crowd regions after the objects
with the crowd label, rows of -1 pad),
evaluation batches ``{"data", "image_ids", "image_sizes"}``. Targets are made on the worker's
device from the network's anchors (`models/ssd_loss.py`, through `ops/`); evaluation decodes
and suppresses (`models/ssd.py`), gathers every worker's detections to rank 0 and scores them
with pycocotools (`evaluation/coco.py`).
"""
import numpy as np
from mxnet import nd

from engine.tasks import Task
from evaluation.coco import CocoDetections, evaluate_bbox, gather_detections, percent
from models.ssd_loss import crowd_rows, encode_targets, ssd_loss


class SSDTask(Task):
    """Single-shot detection on COCO-format data.

    Parameters
    ----------
    ctx : mxnet.Context
        The worker's device.
    image_size : int
        Side of the square network input (320 for SSD320).
    anchors : NDArray
        (N, 4) pixel anchors of the network for `image_size` (`SSDFPN.anchors`), on `ctx`.
    crowd_label : int or None
        The label of crowd regions in training batches (`CocoDataset.crowd_label`): anchors
        inside them are ignored. None: no batch has crowd regions.
    val_dataset : data.coco.CocoDataset or None
        The evaluation split (its source json and categories); None when not evaluating.
    out_dir : str or None
        Where rank 0 writes ``bbox.json`` of each evaluation.
    score_thresh, nms_thresh, max_detections
        Inference post-processing (`models.ssd.decode_detections`).
    dist : engine.distributed.Distributed, optional
        The workers: the losses are normalised by the mean positive count over them (see
        `models.ssd_loss.ssd_loss`); None for one worker.
    """

    main_metric = "AP"
    display_metrics = ("AP", "AP50")
    target_metrics = {"target_bbox_map": "AP"}

    def __init__(self, ctx, image_size, anchors, crowd_label=None, val_dataset=None,
                 out_dir=None, score_thresh=0.05, nms_thresh=0.6, max_detections=100,
                 dist=None):
        self.ctx = ctx
        self.average_over_workers = None
        if dist is not None and dist.size > 1:
            self.average_over_workers = lambda count: dist.mean(count, "loss.num_positive")
        self.detect_options = {"score_thresh": score_thresh, "nms_thresh": nms_thresh,
                               "max_detections": max_detections}
        self.image_size = image_size
        self.anchors = anchors
        self.crowd_label = crowd_label
        self.val_dataset = val_dataset
        self.out_dir = out_dir

    def summary(self, metrics):
        return (f"box AP {metrics['AP']:.2f}  AP50 {metrics['AP50']:.2f}  AP75 "
                f"{metrics['AP75']:.2f}  AR100 {metrics['AR100']:.2f}  ({metrics['images']} "
                f"images)")

    def targets(self, batch):
        """Per-anchor class and box targets of a training batch (boxes scaled to pixels; crowd
        regions taken apart, so that anchors inside them are ignored)."""
        # Boxes and labels come on the host from every loader: split them there.
        boxes, labels = batch["boxes"].asnumpy(), batch["labels"].asnumpy()
        crowd = None
        if self.crowd_label is not None:
            boxes, crowd = crowd_rows(boxes, labels, self.crowd_label)
        return encode_targets(self.anchors, self._to_pixels(boxes), nd.array(labels, self.ctx),
                              None if crowd is None else self._to_pixels(crowd))

    def _to_pixels(self, boxes):
        # Padding rows stay -1: only valid rows (>= 0) are scaled.
        return nd.array(np.where(boxes >= 0, boxes * float(self.image_size), boxes), self.ctx)

    def train_losses(self, net, batch):
        """{"cls": focal loss, "box": smooth-L1 loss}, each over the positive anchor count."""
        cls_targets, box_targets = self.targets(batch)
        cls_logits, box_deltas = net(batch["data"].as_in_context(self.ctx))
        return ssd_loss(cls_logits, box_deltas, cls_targets, box_targets,
                        average_over_workers=self.average_over_workers)

    def evaluate(self, net, loader, dist):
        """COCO box AP/AR (the 12 statistics, AP in percent like top-1) over all workers."""
        detections = CocoDetections(self.val_dataset.categories)
        for batch in loader:
            found = net.detect(batch["data"].as_in_context(self.ctx),
                               **self.detect_options).asnumpy()
            detections.add(batch["image_ids"].asnumpy(), found[:, :, 2:6], found[:, :, 0],
                           found[:, :, 1], batch["image_sizes"].asnumpy(),
                           (self.image_size, self.image_size))
        merged = gather_detections(detections, dist.gather_objects, "eval.coco_detections")
        metrics = None
        if dist.is_main:
            stats = evaluate_bbox(self.val_dataset.source_file, merged, out_dir=self.out_dir)
            metrics = percent(stats)
            metrics["images"] = len(merged.image_ids)
        return dist.broadcast_object(metrics, "eval.coco_metrics")
