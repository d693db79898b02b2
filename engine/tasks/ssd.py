"""SSD-FPN detection (SSD320 v1.2): focal and smooth-L1 losses over anchor targets, COCO box AP.

Batches come from `data/coco_pipelines.py` through `data/coco_loaders.py`: training batches
``{"data", "boxes", "labels", "crowd_boxes"}`` (boxes relative to the image, rows of -1 pad),
evaluation batches ``{"data", "image_ids", "image_sizes"}``. Targets are made on the worker's
device from the network's anchors (`models/ssd_loss.py`, through `ops/`); evaluation decodes
and suppresses (`models/ssd.py`), gathers every worker's detections to rank 0 and scores them
with pycocotools (`evaluation/coco.py`).
"""
from mxnet import nd

from engine.tasks import Task
from evaluation.coco import CocoDetections, evaluate_bbox, gather_detections
from models.ssd_loss import encode_targets, ssd_loss


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
    val_dataset : data.coco.CocoDataset or None
        The evaluation split (its source json and categories); None when not evaluating.
    out_dir : str or None
        Where rank 0 writes ``bbox.json`` of each evaluation.
    score_thresh, nms_thresh, max_detections
        Inference post-processing (`models.ssd.decode_detections`).
    """

    main_metric = "AP"
    display_metrics = ("AP", "AP50")

    def __init__(self, ctx, image_size, anchors, val_dataset=None, out_dir=None,
                 score_thresh=0.05, nms_thresh=0.6, max_detections=100):
        self.ctx = ctx
        self.detect_options = {"score_thresh": score_thresh, "nms_thresh": nms_thresh,
                               "max_detections": max_detections}
        self.image_size = image_size
        self.anchors = anchors
        self.val_dataset = val_dataset
        self.out_dir = out_dir

    def summary(self, metrics):
        return (f"box AP {metrics['AP']:.2f}  AP50 {metrics['AP50']:.2f}  AP75 "
                f"{metrics['AP75']:.2f}  AR100 {metrics['AR100']:.2f}  ({metrics['images']} "
                f"images)")

    def targets(self, batch):
        """Per-anchor class and box targets of a training batch (boxes scaled to pixels; crowd
        regions marked so that anchors inside them are ignored)."""
        scale = float(self.image_size)
        boxes = batch["boxes"].as_in_context(self.ctx)
        crowd = batch["crowd_boxes"].as_in_context(self.ctx)
        labels = batch["labels"].as_in_context(self.ctx)
        # Padding rows stay -1 after scaling: only valid rows (>= 0) are multiplied.
        all_boxes = nd.concat(boxes, crowd, dim=1)
        all_boxes = nd.where(all_boxes >= 0, all_boxes * scale, all_boxes)
        all_labels = nd.concat(labels.astype("float32"),
                               nd.zeros(crowd.shape[:2], ctx=self.ctx), dim=1)
        is_crowd = nd.concat(nd.zeros(labels.shape, ctx=self.ctx),
                             nd.ones(crowd.shape[:2], ctx=self.ctx), dim=1)
        return encode_targets(self.anchors, all_boxes, all_labels, is_crowd)

    def train_losses(self, net, batch):
        """{"cls": focal loss, "box": smooth-L1 loss}, each over the positive anchor count."""
        cls_targets, box_targets = self.targets(batch)
        cls_logits, box_deltas = net(batch["data"].as_in_context(self.ctx))
        return ssd_loss(cls_logits, box_deltas, cls_targets, box_targets)

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
            metrics = {name: 100.0 * value if value >= 0 else value
                       for name, value in stats.items()}
            metrics["images"] = len(merged.image_ids)
        return dist.broadcast_object(metrics, "eval.coco_metrics")
