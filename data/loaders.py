"""Classification data loaders, one per `--data-backend`, all yielding the same batches.

Every loader yields ``{"data": NDArray (N, C, H, W) or (N, H, W, C), "label": int32 NDArray
(N,)}``, has ``len()`` (batches per epoch on this worker) and ``state()`` (what a checkpoint
needs to resume it exactly, or None), and starts over by itself after each epoch. The training
loop therefore never branches on the backend.

=============  ====================================================================
backend        what it is
=============  ====================================================================
``dali-gpu``   DALI, JPEG decoding on the GPU (nvJPEG + hardware decoder), fastest
``dali-cpu``   DALI, everything on CPU threads; the default where MXNet sees no GPU
``mxnet``      ``mx.io.ImageRecordIter`` with the same augmentations, as a baseline
``synthetic``  one random batch on the device, repeated: measures compute alone
=============  ====================================================================
"""
import base64
import math
import os
from dataclasses import dataclass

import mxnet as mx
import numpy as np

from data.dali_iterator import DALIMXNetIterator, LastBatchPolicy
from data.pipelines import (IMAGENET_MEAN, IMAGENET_STD, READER_NAME,
                            classification_train_pipeline, classification_val_pipeline)

BACKENDS = ("dali-gpu", "dali-cpu", "mxnet", "synthetic")


class DataError(ValueError):
    """The data given cannot be read; the message says what to do."""


@dataclass
class WorkerDataConfig:
    """What every loader needs to know of the worker it feeds, whatever the task.

    `device_id` is the GPU of this worker, or None on CPU; `rank` and `world_size` choose its
    shard; `seed` is the run's (each worker's pipeline adds its rank).
    """
    backend: str
    batch_size: int
    dtype: str = "float32"
    layout: str = "NCHW"
    rank: int = 0
    world_size: int = 1
    device_id: int = None
    num_threads: int = 4
    seed: int = 0
    hw_decoder_load: float = 0.65


@dataclass
class LoaderConfig(WorkerDataConfig):
    """Classification loaders: the worker's settings, and the data and augmentation.

    `image_shape` is (channels, height, width) of the network input.
    """
    data_root: str = None
    image_shape: tuple = (3, 224, 224)
    random_area: tuple = (0.08, 1.0)
    random_aspect_ratio: tuple = (3 / 4, 4 / 3)
    resize_shorter: int = None  # validation; default keeps the 256/224 ratio of ImageNet
    pad_channels: bool = False
    num_classes: int = 1000  # synthetic labels
    num_examples: int = None  # synthetic epoch length (all workers together), if given

    @property
    def crop_size(self):
        return tuple(self.image_shape[1:])

    @property
    def val_resize_shorter(self):
        return self.resize_shorter or int(round(self.image_shape[1] * 256 / 224))


def record_files(data_root, split):
    """Paths of `split`.rec and `split`.idx under `data_root`, checked to exist and be readable.

    Raises
    ------
    DataError
        Naming the missing or unreadable file and how to make it.
    """
    if not os.path.isdir(data_root):
        raise DataError(f"data root {data_root!r} is not a directory; pass --data-root with the "
                        f"folder holding train.rec/.idx and val.rec/.idx "
                        f"(make them with `python -m data.im2rec`)")
    rec = os.path.join(data_root, f"{split}.rec")
    idx = os.path.join(data_root, f"{split}.idx")
    if not os.path.isfile(rec):
        raise DataError(f"{rec} does not exist; create it with "
                        f"`python -m data.im2rec {os.path.join(data_root, split)} IMAGE_FOLDER`")
    if not os.path.isfile(idx):
        raise DataError(f"{rec} has no index {idx}; DALI needs it to shard the data. Rebuild "
                        f"it with `python -m data.im2rec --index-only {rec}`")
    for path in (rec, idx):
        if not os.access(path, os.R_OK):
            raise DataError(f"{path} is not readable (check its permissions)")
        if os.path.getsize(path) == 0:
            raise DataError(f"{path} is empty; recreate it with `python -m data.im2rec`")
    return rec, idx


def build_loader(config, split, checkpoint=None):
    """The loader of `split` ("train" or "val") for `config.backend`.

    Parameters
    ----------
    config : LoaderConfig
    split : str
        "train" (shuffled, augmented, last incomplete batch dropped) or "val" (file order,
        centre crop, every sample exactly once across workers).
    checkpoint : object, optional
        What `state()` returned when the checkpoint was taken; resumes the exact sample order
        and random augmentations (DALI backends).
    """
    if config.backend not in BACKENDS:
        raise DataError(f"unknown data backend {config.backend!r}; choose one of {BACKENDS}")
    if config.backend == "synthetic":
        return SyntheticLoader(config, split)
    rec, idx = record_files(config.data_root, split)
    if config.backend == "mxnet":
        return RecordIterLoader(config, split, rec, idx)
    return _classification_dali_loader(config, split, rec, idx, checkpoint)


class DALILoader:
    """A DALI pipeline (built with ``enable_checkpointing=True`` and its reader named
    `READER_NAME`) behind the common loader interface; every task's DALI loaders are one.

    Parameters
    ----------
    pipeline : nvidia.dali.Pipeline
    output_names : sequence of str
        The batch dict's keys, one per pipeline output.
    policy : LastBatchPolicy
        DROP for training (equal step counts on every worker), PARTIAL for evaluation.
    """

    def __init__(self, pipeline, output_names, policy):
        self._iterator = DALIMXNetIterator(pipeline, output_names, READER_NAME, policy)

    def __iter__(self):
        return iter(self._iterator)

    def __len__(self):
        return len(self._iterator)

    def state(self):
        # DALI serialises reader positions and random generator states as bytes; base64
        # keeps them inside the checkpoint's JSON.
        return base64.b64encode(self._iterator.checkpoints()[0]).decode("ascii")


def dali_checkpoint(state):
    """The bytes a DALI pipeline restores from, given what `DALILoader.state()` returned."""
    return base64.b64decode(state) if state else None


def _classification_dali_loader(config, split, rec, idx, checkpoint=None):
    gpu = config.backend == "dali-gpu"
    if gpu and config.device_id is None:
        raise DataError("--data-backend dali-gpu needs a GPU; use dali-cpu on CPU machines")
    common = dict(rec_path=rec, idx_path=idx, shard_id=config.rank,
                  num_shards=config.world_size, crop_size=config.crop_size,
                  decoder_device="mixed" if gpu else "cpu",
                  hw_decoder_load=config.hw_decoder_load, dtype=config.dtype,
                  layout=config.layout, pad_channels=config.pad_channels,
                  batch_size=config.batch_size, num_threads=config.num_threads,
                  device_id=config.device_id if gpu else None,
                  # Different augmentation streams per worker, reproducible per seed.
                  seed=config.seed + 1000 * config.rank, enable_checkpointing=True,
                  checkpoint=dali_checkpoint(checkpoint))
    if split == "train":
        pipeline = classification_train_pipeline(
            random_area=config.random_area, random_aspect_ratio=config.random_aspect_ratio,
            **common)
        _check_shard_holds_a_batch(pipeline, rec, config)
        policy = LastBatchPolicy.DROP
    else:
        pipeline = classification_val_pipeline(resize_shorter=config.val_resize_shorter,
                                                **common)
        policy = LastBatchPolicy.PARTIAL
    return DALILoader(pipeline, ["data", "label"], policy)


class RecordIterLoader:
    """`mx.io.ImageRecordIter` with the DALI pipelines' augmentations, as a baseline.

    Training reads this worker's part of the file (`num_parts`). Validation reads the whole
    file on every worker and keeps this worker's contiguous shard, as DALI shards it: parts
    are split by bytes, not samples, and the last batch wraps around to the file's start (the
    next epoch then starts where the wrap ended), so each pass uses a fresh iterator and
    counts samples by their index in the file.
    """

    def __init__(self, config, split, rec, idx):
        self.config = config
        self.train = split == "train"
        self.num_records = _count_index_entries(idx)
        options = dict(path_imgrec=rec, path_imgidx=idx, data_shape=tuple(config.image_shape),
                       batch_size=config.batch_size, preprocess_threads=config.num_threads,
                       mean_r=IMAGENET_MEAN[0], mean_g=IMAGENET_MEAN[1], mean_b=IMAGENET_MEAN[2],
                       std_r=IMAGENET_STD[0], std_g=IMAGENET_STD[1], std_b=IMAGENET_STD[2],
                       seed=config.seed + 1000 * config.rank)
        if self.train:
            options.update(shuffle=True, rand_mirror=True, random_resized_crop=True,
                           min_random_area=config.random_area[0],
                           max_random_area=config.random_area[1],
                           min_aspect_ratio=config.random_aspect_ratio[0],
                           max_aspect_ratio=config.random_aspect_ratio[1],
                           num_parts=config.world_size, part_index=config.rank)
        else:
            options.update(shuffle=False, resize=config.val_resize_shorter)
        self._options = options
        self._iterator = mx.io.ImageRecordIter(**options) if self.train else None
        # Parts differ in size; training takes whole batches of the smallest possible part so
        # that every worker takes the same number of steps.
        self._train_batches = self.num_records // config.world_size // config.batch_size
        self._shard = _shard_range(self.num_records, config.rank, config.world_size)

    def __iter__(self):
        return self._train_stream() if self.train else self._val_stream()

    def _train_stream(self):
        produced = 0
        while produced < self._train_batches:  # restart the part if it runs out early
            self._iterator.reset()
            for batch in self._iterator:
                yield self._convert(batch.data[0], batch.label[0])
                produced += 1
                if produced == self._train_batches:
                    return

    def _val_stream(self):
        start, end = self._shard
        position = 0  # index of the batch's first sample in the file
        for batch in mx.io.ImageRecordIter(**self._options):
            first, last = max(start, position), min(end, position + self.config.batch_size)
            if first < last:
                rows = slice(first - position, last - position)
                yield self._convert(batch.data[0][rows], batch.label[0][rows])
            position += self.config.batch_size
            if position >= end:
                return

    def _convert(self, data, label):
        if self.config.layout == "NHWC":
            data = data.transpose((0, 2, 3, 1))
        if self.config.dtype != "float32":
            data = data.astype(self.config.dtype)
        return {"data": data, "label": label.astype("int32")}

    def __len__(self):
        if self.train:
            return self._train_batches
        start, end = self._shard
        return math.ceil((end - start) / self.config.batch_size)

    def state(self):
        return None  # ImageRecordIter cannot resume mid-stream; a resumed run reshuffles


class RepeatedBatchLoader:
    """A loader that yields one batch (``self._batch``, made by the subclass) ``self._length``
    times per epoch; it has no position to checkpoint."""

    def __iter__(self):
        for _ in range(self._length):
            yield self._batch

    def __len__(self):
        return self._length

    def state(self):
        return None


class SyntheticLoader(RepeatedBatchLoader):
    """One random batch, made once on the worker's device and yielded again and again.

    An epoch has `num_examples` samples over all workers when given, else as many as the
    real data set under `data_root` would have, else 10,000.
    """

    def __init__(self, config, split):
        ctx = device_context(config.device_id)
        rng = np.random.default_rng(config.seed)
        self._batch = {
            "data": synthetic_images(rng, config.batch_size, config.image_shape, config.layout,
                                     config.dtype, ctx),
            "label": mx.nd.array(rng.integers(0, config.num_classes, config.batch_size),
                                 ctx=ctx, dtype="int32")}
        self._length = self._epoch_batches(config, split)

    @staticmethod
    def _epoch_batches(config, split):
        idx = os.path.join(config.data_root or "", f"{split}.idx")
        if config.num_examples:
            samples = config.num_examples
        elif config.data_root and os.path.isfile(idx):
            samples = _count_index_entries(idx)
        else:
            samples = 10_000
        return max(1, samples // config.world_size // config.batch_size)


def device_context(device_id):
    """The worker's device: GPU `device_id`, or the CPU when it is None."""
    return mx.gpu(device_id) if device_id is not None else mx.cpu()


def synthetic_images(rng, batch_size, image_shape, layout, dtype, ctx):
    """A batch of standard-normal "images" (the scale of normalised ones) on `ctx`, for the
    synthetic backends of every task.

    Parameters
    ----------
    rng : numpy.random.Generator
    batch_size : int
    image_shape : (int, int, int)
        Channels, height, width.
    layout : str
        "NCHW" or "NHWC".
    dtype : str
    ctx : mxnet.Context
    """
    c, h, w = image_shape
    shape = (batch_size, c, h, w) if layout == "NCHW" else (batch_size, h, w, c)
    return mx.nd.array(rng.standard_normal(shape), ctx=ctx, dtype=dtype)


def _check_shard_holds_a_batch(pipeline, rec, config):
    # Training drops incomplete batches; a shard smaller than one batch would have none.
    pipeline.build()
    samples = pipeline.reader_meta(READER_NAME)["epoch_size"]
    if samples // config.world_size < config.batch_size:
        raise DataError(f"{rec} holds {samples} samples: fewer samples per worker than one "
                        f"batch of {config.batch_size} with {config.world_size} worker(s); "
                        f"lower the batch size or the worker count")


def _count_index_entries(idx_path):
    with open(idx_path) as f:
        return sum(1 for line in f if line.strip())


def _shard_range(num_records, rank, world_size):
    """The [start, end) sample indices of worker `rank`, the way DALI's readers shard."""
    return (num_records * rank // world_size, num_records * (rank + 1) // world_size)
