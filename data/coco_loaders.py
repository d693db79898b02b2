"""COCO loaders for SSD and Mask R-CNN: the DALI pipelines of `data/coco_pipelines.py` and
`data/mask_rcnn_pipelines.py` behind the loaders' common interface (`data.loaders.DALILoader`:
iteration, ``len()``, ``state()``), and a synthetic SSD training batch in the same format.

A loader config says which pipelines it reads (`CocoLoaderConfig`: SSD,
`MaskRCNNLoaderConfig`: Mask R-CNN); `build_coco_loader` does the rest the same way for both:
sharding, seeds, checkpoints and the bad-image recovery. SSD training batches are
``{"data", "boxes", "labels"}``, evaluation batches ``{"data", "image_ids", "image_sizes"}``;
Mask R-CNN's add ``polygons``, ``vertices`` and ``im_hw`` (see the pipelines' modules for
shapes and padding).
"""
from dataclasses import dataclass

import mxnet as mx
import numpy as np

from data.bad_records import CocoImageRecovery
from data.coco_check import check_command
from data.coco_pipelines import ssd_eval_pipeline, ssd_train_pipeline
from data.dali_iterator import LastBatchPolicy
from data.loaders import (DALILoader, DataError, RepeatedBatchLoader, WorkerDataConfig,
                          dali_checkpoint, device_context, synthetic_images)
from data.mask_rcnn_pipelines import (MAX_POLYGONS, MAX_SIZE, MAX_VERTICES, MIN_SIZE,
                                      mask_rcnn_eval_pipeline, mask_rcnn_train_pipeline)

TRAIN_OUTPUTS = ("data", "boxes", "labels")
EVAL_OUTPUTS = ("data", "image_ids", "image_sizes")


@dataclass
class CocoLoaderConfig(WorkerDataConfig):
    """The SSD loaders: the worker's settings, the square input side, and `max_boxes`, the
    number of rows objects and crowd regions are padded to (rows beyond are cut, with a count
    logged by `CocoDataset.check_max_boxes`)."""
    image_size: int = 320
    max_boxes: int = 100

    train_outputs = TRAIN_OUTPUTS
    eval_outputs = EVAL_OUTPUTS

    def train_pipeline(self, **common):
        return ssd_train_pipeline(image_size=self.image_size, max_boxes=self.max_boxes,
                                  layout=self.layout, **common)

    def eval_pipeline(self, **common):
        return ssd_eval_pipeline(image_size=self.image_size, layout=self.layout, **common)

    def check_rows(self, dataset):
        dataset.check_max_boxes(self.max_boxes)


@dataclass
class MaskRCNNLoaderConfig(WorkerDataConfig):
    """The Mask R-CNN loaders: the worker's settings, the resize (shorter side one of
    `min_sizes`, drawn per training image, evaluation taking the last, the largest of a
    multi-scale range; longer side at most `max_size`) and the rows boxes, polygons and
    vertices are padded to (NCHW only)."""
    min_sizes: tuple = (MIN_SIZE,)
    max_size: int = MAX_SIZE
    max_boxes: int = 100
    max_polygons: int = MAX_POLYGONS
    max_vertices: int = MAX_VERTICES

    train_outputs = TRAIN_OUTPUTS + ("polygons", "vertices", "im_hw")
    eval_outputs = ("data", "im_hw", "image_ids", "image_sizes")

    def train_pipeline(self, **common):
        return mask_rcnn_train_pipeline(min_sizes=self.min_sizes, max_size=self.max_size,
                                        max_boxes=self.max_boxes,
                                        max_polygons=self.max_polygons,
                                        max_vertices=self.max_vertices, **common)

    def eval_pipeline(self, **common):
        return mask_rcnn_eval_pipeline(min_size=self.min_sizes[-1], max_size=self.max_size,
                                       **common)

    def check_rows(self, dataset):
        dataset.check_max_boxes(self.max_boxes)
        dataset.check_max_polygons(self.max_polygons, self.max_vertices)


def build_coco_loader(config, dataset, split, checkpoint=None):
    """The loader of `split` ("train" or "val") over a prepared `data.coco.CocoDataset`.

    Parameters
    ----------
    config : CocoLoaderConfig or MaskRCNNLoaderConfig
        The worker's settings and which pipelines to read.
    dataset : data.coco.CocoDataset
    split : str
        "train" (shuffled, augmented, images without objects skipped, last incomplete batch
        dropped) or "val" (every image once across workers, partial last batch kept).
    checkpoint : object, optional
        What `state()` returned when the checkpoint was taken.
    """
    if config.backend == "synthetic":
        if not isinstance(config, CocoLoaderConfig):
            raise DataError("--data-backend synthetic feeds SSD training only; Mask R-CNN "
                            "reads dali-cpu or dali-gpu data")
        return SyntheticDetectionLoader(config, dataset, split)
    if config.backend not in ("dali-cpu", "dali-gpu"):
        raise DataError(f"detection data is read by DALI: use --data-backend dali-cpu or "
                        f"dali-gpu (or synthetic for training), not {config.backend}")
    gpu = config.backend == "dali-gpu"
    if gpu and config.device_id is None:
        raise DataError("--data-backend dali-gpu needs a GPU; use dali-cpu on CPU machines")
    common = dict(file_root=dataset.image_dir, num_shards=config.world_size,
                  decoder_device="mixed" if gpu else "cpu",
                  hw_decoder_load=config.hw_decoder_load, dtype=config.dtype,
                  batch_size=config.batch_size, num_threads=config.num_threads,
                  device_id=config.device_id if gpu else None, enable_checkpointing=True)
    seed = config.seed + 1000 * config.rank
    # DALI cannot skip an image it fails to decode. Evaluation stops, saying how to find
    # them all; training leaves them out or stops as --bad-data says (data.bad_records).
    hint = (f"find every image of {dataset.image_dir} that fails with "
            f"`{check_command(dataset.image_dir)}`, then replace or remove it")
    if split != "train":
        pipeline = config.eval_pipeline(annotations_file=dataset.annotation_file,
                                        shard_id=config.rank, seed=seed,
                                        checkpoint=dali_checkpoint(checkpoint), **common)
        return DALILoader(pipeline, config.eval_outputs, LastBatchPolicy.PARTIAL,
                          failure_hint=hint)
    config.check_rows(dataset)

    def make_pipeline(annotations_file, shard_id, pass_index=None, state=None):
        # The pipeline of one pass without bad images gets a random stream of its own.
        pass_seed = seed if pass_index is None else seed + 7919 * (pass_index + 1)
        return config.train_pipeline(annotations_file=annotations_file, shard_id=shard_id,
                                     seed=pass_seed, checkpoint=state, **common)

    saved = checkpoint if isinstance(checkpoint, dict) else {}
    recovery = CocoImageRecovery(dataset, make_pipeline, config.rank, config.world_size,
                                 config.bad_data, config.num_threads,
                                 saved.get("excluded", ()))
    if recovery.excluded:  # resumed after images were left out: the same pipelines
        pipeline = recovery.pipeline(saved.get("passes", 0), dali_checkpoint(checkpoint))
    else:
        pipeline = make_pipeline(dataset.annotation_file, config.rank,
                                 state=dali_checkpoint(checkpoint))
    return DALILoader(pipeline, config.train_outputs, LastBatchPolicy.DROP, recovery, saved,
                      hint)


class SyntheticDetectionLoader(RepeatedBatchLoader):
    """One random training batch in the format of `ssd_train_pipeline`, made once and yielded
    again and again: it measures the training step (network, target encoding, losses) without
    the cost of reading data.

    Images are standard-normal values (the scale of normalised images) on the worker's device;
    every image has `objects` boxes, the data set's mean number of objects per training image
    (at least 1, at most ``config.max_boxes``), so that target encoding does the work real
    batches give it. Boxes and labels are on the CPU, as the DALI loaders give them; boxes are
    [x1, y1, x2, y2] relative to the image, classes 1..C of `dataset` (no crowd regions), and
    padding rows are -1. An epoch has as many batches as the real training split
    would give this worker.

    Parameters
    ----------
    config : CocoLoaderConfig
    dataset : data.coco.CocoDataset
        The training split (its classes, object counts and image count).
    split : str
        "train"; evaluation needs ground truth, which random images lack.
    """

    def __init__(self, config, dataset, split):
        if split != "train":
            raise DataError("--data-backend synthetic feeds detection training only (random "
                            "images have no ground truth to evaluate against); use --mode "
                            "train, or dali-cpu / dali-gpu data")
        rng = np.random.default_rng(config.seed + 1000 * config.rank)
        size = config.image_size
        height, width = (size, size) if isinstance(size, int) else size
        stats = dataset.stats
        images = max(1, stats["images"] - stats.get("empty_images", 0))
        self.objects = int(min(config.max_boxes, max(1, round(stats["objects"] / images))))
        boxes, labels = synthetic_boxes(rng, config.batch_size, self.objects, config.max_boxes,
                                        dataset.num_classes)
        self._batch = {
            "data": synthetic_images(rng, config.batch_size, (3, height, width), config.layout,
                                     config.dtype, device_context(config.device_id)),
            "boxes": mx.nd.array(boxes, dtype="float32"),
            "labels": mx.nd.array(labels, dtype="int32")}
        self._length = max(1, images // config.world_size // config.batch_size)


def synthetic_boxes(rng, batch_size, objects, max_boxes, num_classes):
    """Random boxes and classes padded as the training pipeline pads them.

    Returns
    -------
    boxes : numpy.ndarray, float32, (batch_size, max_boxes, 4)
        `objects` valid rows first, [x1, y1, x2, y2] in 0..1 with sides 0.1-0.5 of the
        image, then rows of -1.
    labels : numpy.ndarray, int32, (batch_size, max_boxes)
        Classes 1..`num_classes` on valid rows, -1 on padding.
    """
    centres = rng.uniform(0.25, 0.75, (batch_size, objects, 2))
    sides = rng.uniform(0.1, 0.5, (batch_size, objects, 2))
    valid = np.clip(np.concatenate([centres - sides / 2, centres + sides / 2], axis=2), 0, 1)
    boxes = np.full((batch_size, max_boxes, 4), -1, np.float32)
    labels = np.full((batch_size, max_boxes), -1, np.int32)
    boxes[:, :objects] = valid
    labels[:, :objects] = rng.integers(1, num_classes + 1, (batch_size, objects))
    return boxes, labels
