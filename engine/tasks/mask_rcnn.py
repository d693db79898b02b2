"""Mask R-CNN (R-50-FPN): the network's five losses over its own targets, COCO box and mask AP.

Batches come from `data/mask_rcnn_pipelines.py` through `data/coco_loaders.py`: training
batches ``{"data", "boxes", "labels", "polygons", "vertices", "im_hw"}`` (boxes and vertices
in pixels of the resized image, crowd regions after the objects with the crowd label, rows of
-1 pad), evaluation batches ``{"data", "im_hw", "image_ids", "image_sizes"}``. The network
makes its targets itself (`models.mask_rcnn`: anchors, matching, sampling and polygon mask
targets through `ops/`); evaluation pastes the detections' masks into each original image
(`models.mask_rcnn.paste_masks`: one `ops/` call per image, on the worker's device), gathers
every worker's detections to rank 0 and scores boxes and masks with pycocotools
(`evaluation/coco.py`).

Each loss is normalised per worker by its own counts (sampled anchors, sampled RoIs, and the
positive RoIs for the mask loss), as maskrcnn-benchmark normalises per GPU. Averaging the
workers' gradients (Horovod) equals one worker's gradient over the global batch where those
counts are the same on every worker: nearly so for the recipe's 256 anchors and 512 RoIs per
image, not for the mask loss's positives (tests/engine/test_horovod.py makes them equal).
"""
import functools
import logging

from data.mask_rcnn_pipelines import polygon_rows
from engine.tasks import Task
from evaluation.coco import CocoDetections, evaluate_coco, gather_detections, percent
from models.mask_rcnn import paste_masks

log = logging.getLogger(__name__)


class MaskRCNNTask(Task):
    """Instance segmentation on COCO-format data.

    Parameters
    ----------
    ctx : mxnet.Context
        The worker's device.
    val_dataset : data.coco.CocoDataset or None
        The evaluation split (its source json and categories); None when not evaluating.
    out_dir : str or None
        Where rank 0 writes ``bbox.json`` and ``segm.json`` of each evaluation.
    seed : int
        This worker's seed of the anchor and RoI samplers (one stream per worker).
    """

    main_metric = "AP"
    display_metrics = ("AP", "mask_AP")
    target_metrics = {"target_bbox_map": "AP", "target_mask_map": "mask_AP"}

    def __init__(self, ctx, val_dataset=None, out_dir=None, seed=0):
        self.ctx = ctx
        self.val_dataset = val_dataset
        self.out_dir = out_dir
        self.seed = seed
        self.steps = 0  # training batches seen: the samplers' seed moves on with each
        self.dropped_polygons = 0

    def summary(self, metrics):
        return (f"box AP {metrics['AP']:.2f}  AP50 {metrics['AP50']:.2f}  mask AP "
                f"{metrics['mask_AP']:.2f}  AP50 {metrics['mask_AP50']:.2f}  "
                f"({metrics['images']} images)")

    def train_losses(self, net, batch):
        """{rpn_objectness, rpn_box, roi_cls, roi_box, mask} of one batch."""
        boxes = batch["boxes"].asnumpy()
        polygons, dropped = polygon_rows(batch["polygons"].asnumpy(),
                                         batch["vertices"].asnumpy(), boxes.shape[1])
        if dropped and not self.dropped_polygons:
            log.warning("a training batch held %d polygon(s) beyond --max-polygons / "
                        "--max-vertices or of objects beyond --max-boxes: left out of the "
                        "mask targets (warned once)", dropped)
        self.dropped_polygons += dropped
        # A seed per step: resuming replays the same samples (see state_dict).
        seed = (self.seed * 1_000_003 + self.steps) % 2 ** 31
        self.steps += 1
        return net.train_losses(batch["data"].as_in_context(self.ctx), boxes,
                                batch["labels"].asnumpy(), batch["vertices"], polygons,
                                batch["im_hw"], seed=seed)

    def evaluate(self, net, loader, dist):
        """COCO box and mask AP/AR (12 statistics each, in percent; mask ones prefixed
        ``mask_``) over all workers."""
        detections = CocoDetections(self.val_dataset.categories)
        paste = functools.partial(paste_masks, ctx=self.ctx)
        for batch in loader:
            im_hw = batch["im_hw"].asnumpy()
            found, masks = net(batch["data"].as_in_context(self.ctx), im_hw)
            found = found.asnumpy()
            detections.add(batch["image_ids"].asnumpy(), found[:, :, 2:6], found[:, :, 0],
                           found[:, :, 1], batch["image_sizes"].asnumpy(), im_hw,
                           masks=masks.asnumpy(), paste=paste)
        merged = gather_detections(detections, dist.gather_objects, "eval.coco_detections")
        metrics = None
        if dist.is_main:
            stats = evaluate_coco(self.val_dataset.source_file, merged, ("bbox", "segm"),
                                  out_dir=self.out_dir)
            metrics = percent(stats["bbox"])
            metrics.update({f"mask_{name}": value
                            for name, value in percent(stats["segm"]).items()})
            metrics["images"] = len(merged.image_ids)
        return dist.broadcast_object(metrics, "eval.coco_metrics")

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state.get("steps", 0)

