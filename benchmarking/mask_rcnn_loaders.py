"""The Mask R-CNN training data path alone, side by side: the project's DALI pipeline with the
targets made before the network runs, against gluoncv's data path.

Both read the same COCO-layout training split on the same cores, resize by the same rule
(shorter side `min_size`, longer at most `max_size`), flip and normalise, and both end with
what the training step takes from them before the network runs: the images, the objects'
boxes, classes and masks, and the RPN's anchor targets (256 anchors sampled per image, half
positive at most, IoU 0.7 / 0.3, for the anchors of P2-P6: sizes 32-512, ratios 0.5/1/2):

=====================  =====================================================================
loader                 what it is
=====================  =====================================================================
``gluoncv``            gluoncv's own path, as its ``train_mask_rcnn.py`` builds it
                       (`benchmarking.gluoncv_mask_rcnn.train_loader`): ``COCOInstance``,
                       ``MaskRCNNDefaultTrainTransform`` (resize, flip, a full-image mask per
                       object rasterised from its polygons, normalise, RPN anchor targets) in
                       a ``DataLoader`` with one worker process per core, a
                       ``SplitSortedBucketSampler`` and ``MaskRCNNTrainBatchify``, each
                       batch moved to the CPU context as its loop does
``gluoncv-in-``        the same in this process, without workers: faster on a few cores,
``process``            as each batch request of the DataLoader carries the pickled
                       ``MaskRCNNTrainBatchify`` (1.4 MB, with the network's symbols: about
                       30 ms to pickle here and 80 ms to unpickle in the worker)
``dali-cpu``           `data.mask_rcnn_pipelines.mask_rcnn_train_pipeline` through
                       `data.coco_loaders.build_coco_loader` on DALI CPU threads, then in this
                       process what the training step does before its network runs
                       (`engine.tasks.mask_rcnn.MaskRCNNTask`, `models.mask_rcnn`): the
                       polygon rows (`polygon_rows`), objects and crowd regions apart
                       (`models.mask_rcnn.ground_truth`), and `models.rpn.rpn_targets`
``dali-cpu-pipeline``  the DALI pipeline alone (where the time of ``dali-cpu`` goes; not
                       comparable with gluoncv's, which has targets)
``dali-gpu``           ``dali-cpu`` with GPU decoding and the targets on the GPU
=====================  =====================================================================

The two differ in where the mask targets come from: gluoncv's transform rasterises every
object's mask at the image's size and its network crops them to the sampled RoIs; the
project keeps the polygons and rasterises each sampled RoI's 28x28 target inside the
training step (`ops`), which needs the proposals, so no data path can make it. The RoI
sampling and mask targets run in the network on both sides. The loaders take turns over
several rounds (`benchmarking.loaders.time_in_turns`), gluoncv's first in each round
(``ratio_to_gluoncv`` is over ``gluoncv``, its script's way).
"""
import os
import tempfile

from benchmarking.detection_loaders import TRAIN_SPLIT, time_gluoncv_first
from benchmarking.loaders import LoaderSkipped, prepared_start
from data.streams import endless

LOADERS = ("gluoncv", "gluoncv-in-process", "dali-cpu", "dali-cpu-pipeline", "dali-gpu")
DESCRIPTIONS = {"dali-cpu": "DALI Mask R-CNN pipeline (CPU) + polygon rows + rpn_targets",
                "dali-cpu-pipeline": "the same without targets (where the time goes)",
                "dali-gpu": "DALI Mask R-CNN pipeline (GPU) + rpn_targets on the GPU",
                "gluoncv": "gluoncv MaskRCNNDefaultTrainTransform (masks + RPN targets), "
                           "DataLoader",
                "gluoncv-in-process": "the same without worker processes"}
_NO_DATA = "the loader produced no batch (fewer training images than one batch?)"


def level_shapes(height, width, strides):
    """(H, W) of each pyramid level of a padded height x width input: ``ceil`` of the side
    over the level's stride (`models.fpn.RCNNFPN` halves with ``ceil``)."""
    return [(-(-height // s), -(-width // s)) for s in strides]


class RPNTargetMaker:
    """What the training step makes from a DALI batch before its network runs: polygon rows,
    objects and crowd regions apart, and the RPN's anchor targets (the recipe's
    `models.rpn.RPNSettings`; anchors cached by input size; one sampler seed per batch)."""

    def __init__(self, classes, crowd_label, ctx):
        from models.rpn import RPNSettings
        self.classes, self.crowd_label, self.ctx = classes, crowd_label, ctx
        self.settings = RPNSettings()
        self.anchors = {}
        self.seed = 0

    def __call__(self, batch):
        from data.mask_rcnn_pipelines import polygon_rows
        from models.mask_rcnn import ground_truth
        from models.rpn import rpn_targets
        boxes = batch["boxes"].asnumpy()
        polygons, _ = polygon_rows(batch["polygons"].asnumpy(), batch["vertices"].asnumpy(),
                                   boxes.shape[1])
        objects, crowd, _ = ground_truth(boxes, batch["labels"].asnumpy(), self.classes,
                                         self.crowd_label, self.ctx)
        im_hw = batch["im_hw"].as_in_context(self.ctx).astype("float32")
        self.seed += 1
        cls_target, box_target, box_mask = rpn_targets(
            self._anchors(*batch["data"].shape[2:4]), objects, crowd, im_hw, self.settings,
            seed=self.seed)
        return {"data": batch["data"], "rpn_cls_targets": cls_target,
                "rpn_box_targets": box_target, "rpn_box_masks": box_mask,
                "polygons": polygons, "vertices": batch["vertices"]}

    def _anchors(self, height, width):
        from models.rpn import fpn_anchors
        if (height, width) not in self.anchors:
            shapes = level_shapes(height, width, self.settings.anchor_strides)
            self.anchors[height, width] = fpn_anchors(shapes, self.settings, self.ctx)
        return self.anchors[height, width]


def dali_batches(name, dataset, batch_size, min_size, max_size, threads):
    """Endless batches of the project's Mask R-CNN training pipeline with the targets the
    training step makes before its network (or without, for "dali-cpu-pipeline"), and a
    note."""
    import mxnet as mx

    from data.coco_loaders import MaskRCNNLoaderConfig, build_coco_loader
    gpu = name == "dali-gpu"
    if gpu and mx.context.num_gpus() == 0:
        raise LoaderSkipped("MXNet sees no GPU here")
    config = MaskRCNNLoaderConfig(backend="dali-gpu" if gpu else "dali-cpu",
                                  batch_size=batch_size, num_threads=threads,
                                  device_id=0 if gpu else None, min_sizes=(min_size,),
                                  max_size=max_size)
    batches = endless(build_coco_loader(config, dataset, "train"), no_data=_NO_DATA)
    if name == "dali-cpu-pipeline":
        return batches, f"{threads} DALI threads"
    targets = RPNTargetMaker(dataset.num_classes, dataset.crowd_label,
                             mx.gpu(0) if gpu else mx.cpu())
    threads_here = os.environ.get("OMP_NUM_THREADS", "MXNet's default")
    return ((targets(batch) for batch in batches),
            f"{threads} DALI threads; targets in this process (OMP_NUM_THREADS {threads_here})")


def gluoncv_batches(dataset, net, batch_size, workers):
    """Endless batches of gluoncv's Mask R-CNN training data path, and a note."""
    from benchmarking.gluoncv_mask_rcnn import train_batches
    names = ("data", "label", "masks", "rpn_cls_targets", "rpn_box_targets", "rpn_box_masks")
    return ((dict(zip(names, batch)) for batch in train_batches(net, dataset, batch_size,
                                                                workers)),
            f"{workers} worker processes" if workers else "in this process")


def compare_mask_rcnn_loaders(data_root, batch_size, min_size, max_size, threads,
                              warmup_batches, round_batches, rounds, names=LOADERS,
                              on_result=None, on_round=None):
    """Time the Mask R-CNN training data paths of `names` (of this module's `LOADERS`) in
    turns on the training split: the parameters and rows of
    `benchmarking.detection_loaders.compare_detection_loaders`, with the resize rule
    (`min_size`, `max_size`: int) in place of its `image_size`.
    """
    import ops  # noqa: F401  (load the ops/ library before MXNet runs: see train.py)
    from data.coco import prepare_coco
    with tempfile.TemporaryDirectory(prefix="benchmark-coco-") as cache:
        dataset = prepare_coco(data_root, TRAIN_SPLIT, cache, keep_segmentation=True)

        def start(name):
            if name.startswith("gluoncv"):
                workers = threads if name == "gluoncv" else 0
                return _gluoncv_start(data_root, batch_size, min_size, max_size, workers)
            return lambda: dali_batches(name, dataset, batch_size, min_size, max_size, threads)
        return time_gluoncv_first(names, start, batch_size, warmup_batches, round_batches,
                                  rounds, on_result, on_round)


def _gluoncv_start(data_root, batch_size, min_size, max_size, workers):
    """The gluoncv loader's start function; its dataset (pycocotools' index) and network
    (anchors, feature shapes) are made once, outside the timed turns."""
    from benchmarking.gluoncv_mask_rcnn import training_setup
    return prepared_start(lambda: training_setup(data_root, min_size, max_size, batch_size),
                          lambda made: gluoncv_batches(*made, batch_size, workers))
