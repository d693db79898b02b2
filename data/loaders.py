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
import gc
import math
import os
from dataclasses import dataclass

import mxnet as mx
import numpy as np

from data.bad_records import (RecordShardRecovery, check_index_covers_file,
                              image_record_iter_failure)
from data.dali_iterator import DALIMXNetIterator, LastBatchPolicy
from data.decode_check import keep_failed
from data.files import DataError, record_files  # noqa: F401  (part of this module's API)
from data.pipelines import (HW_DECODER_LOAD, IMAGENET_MEAN, IMAGENET_STD, READER_NAME,
                            classification_train_pipeline, classification_val_pipeline,
                            val_resize_shorter)

BACKENDS = ("dali-gpu", "dali-cpu", "mxnet", "synthetic")


@dataclass
class WorkerDataConfig:
    """What every loader needs to know of the worker it feeds, whatever the task.

    `device_id` is the GPU of this worker, or None on CPU; `rank` and `world_size` choose its
    shard; `seed` is the run's (each worker's pipeline adds its rank); `bad_data` is what a
    record that fails to decode does ("skip" or "stop", see `data.bad_records`).
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
    hw_decoder_load: float = HW_DECODER_LOAD
    bad_data: str = "skip"


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
        return self.resize_shorter or val_resize_shorter(self.image_shape[1])


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

    DALI cannot skip a sample that fails to decode: the pipeline dies. With a `recovery`
    (`data.bad_records.RecordShardRecovery`) the loader has the bad records found and,
    under ``--bad-data skip``, goes on with pipelines that leave them out (one per pass,
    over the pass's shard). Each pass keeps the length passes had before, so that every
    worker takes the same number of steps. Without a recovery, a failure becomes a
    `DataError` that ends with `failure_hint` (how to find the bad file).

    Parameters
    ----------
    pipeline : nvidia.dali.Pipeline
    output_names : sequence of str
        The batch dict's keys, one per pipeline output.
    policy : LastBatchPolicy
        DROP for training (equal step counts on every worker), PARTIAL for evaluation.
    recovery : RecordShardRecovery, optional
    state : dict, optional
        What `state()` returned, when resuming (the pass count and length).
    failure_hint : str
    """

    def __init__(self, pipeline, output_names, policy, recovery=None, state=None,
                 failure_hint=""):
        self.output_names = tuple(output_names)
        self.policy = policy
        self.recovery = recovery
        self.failure_hint = failure_hint
        state = state if isinstance(state, dict) else {}
        self.passes = state.get("passes", 0)  # passes begun before the current one
        self._iterator = self._iterate(pipeline)
        self.pass_batches = state.get("pass_batches") or len(self._iterator)

    def _iterate(self, pipeline):
        # The first batch runs at the first `next`, inside __iter__, where failures are met.
        return DALIMXNetIterator(pipeline, self.output_names, READER_NAME, self.policy,
                                 prepare_first_batch=False)

    @property
    def skipping(self):
        """True once bad records are left out."""
        return self.recovery is not None and bool(self.recovery.excluded)

    @property
    def skipped_samples(self):
        """Samples of the current pass left out as bad (for the epoch log)."""
        return self.recovery.skipped(self.passes) if self.skipping else 0

    def __iter__(self):
        given, last = 0, None  # batches of this pass given out, and the latest of them
        while True:
            try:
                for index, batch in enumerate(self._iterator):
                    # After a rebuild the pass goes on where it stopped: the batches it
                    # had given are read again and dropped.
                    if given <= index and given < self.pass_batches:
                        given, last = given + 1, batch
                        yield batch
                break
            except RuntimeError as error:  # DALI's pipeline failed, and is gone
                keep_failed(self._iterator)
                self._iterator = self._iterate(self._recover(error))
        # Leaving records out can make a training pass a batch short, and every worker
        # must take the same steps (allreduce): its last batch is taken again.
        while self.skipping and self.policy == LastBatchPolicy.DROP and \
                last is not None and given < self.pass_batches:
            given += 1
            yield last
        self.passes += 1
        if self.skipping:  # the next pass reads the next shard, again without bad records
            self._iterator = self._iterate(self.recovery.pipeline(self.passes))

    def _recover(self, error):
        """The pipeline to go on with after DALI's `error`, or a DataError."""
        if self.recovery is None:
            raise DataError(f"DALI failed on a sample ({_dali_reason(error)}); "
                            f"{self.failure_hint}") from error
        self.recovery.handle_failure(error, self.passes)
        return self.recovery.pipeline(self.passes)

    def __len__(self):
        return self.pass_batches

    def state(self):
        # DALI serialises reader positions and random generator states as bytes; base64
        # keeps them inside the checkpoint's JSON.
        state = {"pipeline": base64.b64encode(self._iterator.checkpoints()[0]).decode("ascii"),
                 "passes": self.passes, "pass_batches": self.pass_batches}
        if self.skipping:
            state["excluded"] = self.recovery.state()
        return state


def _dali_reason(error):
    """The cause in DALI's error text: the line after "encountered:" (e.g. "nvImageCodec
    failure: '#3'"), else the first that mentions decoding or a failure."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if "encountered:" in lines and lines.index("encountered:") + 1 < len(lines):
        return lines[lines.index("encountered:") + 1]
    return next((line for line in lines if "decode" in line.lower() or "failure" in
                 line.lower()), "its error is above")


def dali_checkpoint(state):
    """The bytes a DALI pipeline restores from, given what `DALILoader.state()` returned
    (a dict; a base64 string in checkpoints of earlier versions)."""
    if isinstance(state, dict):
        state = state.get("pipeline")
    return base64.b64decode(state) if state else None


def _classification_dali_loader(config, split, rec, idx, checkpoint=None):
    gpu = config.backend == "dali-gpu"
    if gpu and config.device_id is None:
        raise DataError("--data-backend dali-gpu needs a GPU; use dali-cpu on CPU machines")
    train = split == "train"
    common = dict(rec_path=rec, crop_size=config.crop_size,
                  decoder_device="mixed" if gpu else "cpu",
                  hw_decoder_load=config.hw_decoder_load, dtype=config.dtype,
                  layout=config.layout, pad_channels=config.pad_channels,
                  batch_size=config.batch_size, num_threads=config.num_threads,
                  device_id=config.device_id if gpu else None, enable_checkpointing=True)
    if train:
        make = classification_train_pipeline
        common.update(random_area=config.random_area,
                      random_aspect_ratio=config.random_aspect_ratio)
    else:
        make = classification_val_pipeline
        common.update(resize_shorter=config.val_resize_shorter)

    def make_pipeline(idx_path, shard_id, num_shards, pass_index=None, state=None):
        # Different augmentation streams per worker, reproducible per seed; the pipeline of
        # one pass (records left out) gets a stream of its own.
        seed = config.seed + 1000 * config.rank
        if pass_index is not None:
            seed += 7919 * (pass_index + 1)
        return make(idx_path=idx_path, shard_id=shard_id, num_shards=num_shards, seed=seed,
                    checkpoint=state, **common)

    saved = checkpoint if isinstance(checkpoint, dict) else {}
    recovery = RecordShardRecovery(rec, idx, make_pipeline, config.rank, config.world_size,
                                   config.bad_data, config.num_threads,
                                   saved.get("excluded", ()))
    if recovery.excluded:  # resumed after records were left out: the same pipelines
        pipeline = recovery.pipeline(saved.get("passes", 0), dali_checkpoint(checkpoint))
    else:
        pipeline = make_pipeline(idx, config.rank, config.world_size,
                                 state=dali_checkpoint(checkpoint))
        if train:
            _check_shard_holds_a_batch(pipeline, rec, config)
    policy = LastBatchPolicy.DROP if train else LastBatchPolicy.PARTIAL
    return DALILoader(pipeline, ["data", "label"], policy, recovery, saved)


class RecordIterLoader:
    """`mx.io.ImageRecordIter` with the DALI pipelines' augmentations, as a baseline.

    Training reads this worker's part of the file (`num_parts`). Validation reads the whole
    file on every worker and keeps this worker's contiguous shard, as DALI shards it: parts
    are split by bytes, not samples, and the last batch wraps around to the file's start (the
    next epoch then starts where the wrap ended), so each pass uses a fresh iterator and
    counts samples by their index in the file.

    ImageRecordIter cannot skip a record that fails to decode, nor honour an index that
    leaves records out (`data.bad_records`): both stop the run with a DataError naming the
    records and what to do.
    """

    def __init__(self, config, split, rec, idx):
        check_index_covers_file(rec, idx)
        self.config = config
        self.rec, self.idx = rec, idx
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
        self._iterator = self._record_iter() if self.train else None
        # Parts differ in size; training takes whole batches of the smallest possible part so
        # that every worker takes the same number of steps.
        self._train_batches = self.num_records // config.world_size // config.batch_size
        self._shard = _shard_range(self.num_records, config.rank, config.world_size)

    def _record_iter(self):
        try:
            return mx.io.ImageRecordIter(**self._options)  # decodes its first batch now
        except mx.base.MXNetError:
            pass  # outside the except block, so that the failed iterator can be freed
        self._failed()

    def __iter__(self):
        try:
            yield from (self._train_stream() if self.train else self._val_stream())
            return
        except mx.base.MXNetError:
            pass
        self._failed()

    def _failed(self):
        # The failed iterator (and its threads) must be gone before the bad records are
        # looked for: DALI and OpenCV decoding next to them crashed the process.
        self._iterator = None
        gc.collect()
        raise DataError(image_record_iter_failure(self.rec, self.idx, self.config.num_threads))

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
        for batch in self._record_iter():
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
