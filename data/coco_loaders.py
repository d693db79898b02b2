"""COCO detection loaders for SSD: the DALI pipelines of `data/coco_pipelines.py` behind the
loaders' common interface (`data.loaders.DALILoader`: iteration, ``len()``, ``state()``).

Training batches are ``{"data", "boxes", "labels", "crowd_boxes"}``; evaluation batches
``{"data", "image_ids", "image_sizes"}`` (see `data/coco_pipelines.py` for shapes and padding).
"""
from dataclasses import dataclass

from data.coco_pipelines import ssd_eval_pipeline, ssd_train_pipeline
from data.dali_iterator import LastBatchPolicy
from data.loaders import DALILoader, DataError, dali_checkpoint

TRAIN_OUTPUTS = ("data", "boxes", "labels", "crowd_boxes")
EVAL_OUTPUTS = ("data", "image_ids", "image_sizes")


@dataclass
class CocoLoaderConfig:
    """What the COCO loaders need, independent of the command line.

    `device_id` is this worker's GPU, or None on CPU; `max_boxes` and `max_crowd_boxes` are the
    rows objects and crowd regions are padded to (objects beyond are cut, with a count logged
    by `CocoDataset.check_max_boxes`).
    """
    backend: str
    batch_size: int
    image_size: int = 320
    dtype: str = "float32"
    layout: str = "NCHW"
    rank: int = 0
    world_size: int = 1
    device_id: int = None
    num_threads: int = 4
    seed: int = 0
    hw_decoder_load: float = 0.65
    max_boxes: int = 100
    max_crowd_boxes: int = 20


def build_coco_loader(config, dataset, split, checkpoint=None):
    """The SSD loader of `split` ("train" or "val") over a prepared `data.coco.CocoDataset`.

    Parameters
    ----------
    config : CocoLoaderConfig
    dataset : data.coco.CocoDataset
    split : str
        "train" (shuffled, augmented, images without objects skipped, last incomplete batch
        dropped) or "val" (every image once across workers, partial last batch kept).
    checkpoint : object, optional
        What `state()` returned when the checkpoint was taken.
    """
    if config.backend not in ("dali-cpu", "dali-gpu"):
        raise DataError(f"detection data is read by DALI: use --data-backend dali-cpu or "
                        f"dali-gpu, not {config.backend}")
    gpu = config.backend == "dali-gpu"
    if gpu and config.device_id is None:
        raise DataError("--data-backend dali-gpu needs a GPU; use dali-cpu on CPU machines")
    common = dict(file_root=dataset.image_dir, annotations_file=dataset.annotation_file,
                  shard_id=config.rank, num_shards=config.world_size,
                  image_size=config.image_size, decoder_device="mixed" if gpu else "cpu",
                  hw_decoder_load=config.hw_decoder_load, dtype=config.dtype,
                  layout=config.layout, batch_size=config.batch_size,
                  num_threads=config.num_threads, device_id=config.device_id if gpu else None,
                  seed=config.seed + 1000 * config.rank, enable_checkpointing=True,
                  checkpoint=dali_checkpoint(checkpoint))
    if split == "train":
        dataset.check_max_boxes(config.max_boxes, config.max_crowd_boxes)
        pipeline = ssd_train_pipeline(max_boxes=config.max_boxes,
                                      max_crowd_boxes=config.max_crowd_boxes,
                                      crowd_label=dataset.crowd_label, **common)
        return DALILoader(pipeline, TRAIN_OUTPUTS, LastBatchPolicy.DROP)
    pipeline = ssd_eval_pipeline(**common)
    return DALILoader(pipeline, EVAL_OUTPUTS, LastBatchPolicy.PARTIAL)
