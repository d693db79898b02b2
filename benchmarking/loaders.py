"""The data pipelines alone, side by side, against the JPEG decode ceiling.

Every loader reads the same ``train.rec`` and applies the same training augmentation
(random-resized crop with area 8-100 % and aspect ratio 3/4-4/3, resize to the crop size,
random horizontal flip, ImageNet normalisation, float32 NCHW), with as many threads or worker
processes as there are cores:

=============  ===========================================================================
loader         what it is
=============  ===========================================================================
``dali-cpu``   the project's DALI pipeline on CPU threads (``--data-backend dali-cpu``)
``dali-gpu``   the same with nvJPEG / the hardware decoder (needs a GPU)
``mxnet``      ``mx.io.ImageRecordIter`` (``--data-backend mxnet``), the baseline
``gluon``      Gluon ``DataLoader`` over ``ImageRecordDataset`` with ``transforms``
=============  ===========================================================================

The loaders take turns, over several rounds: in its turn a loader is started, warmed up,
timed over a fixed number of batches (the last one read back, to make sure the work is done)
and stopped, so that changes in the load of other processes affect all loaders alike. The
decode ceiling is OpenCV's ``imdecode`` of every JPEG of the file (whole images) in one
process per core. DALI decodes only the crop's region, so it can exceed that "ceiling".

Where MXNet cannot be imported (a GPU machine with DALI alone), the DALI pipelines are timed
on their own outputs and the MXNet loaders are skipped.
"""
import functools
import gc
import math
import multiprocessing
import os
import time

import numpy as np

from data.recordio import iter_records, unpack_image_record
from data.streams import endless
from benchmarking.stats import ratio

LOADERS = ("dali-cpu", "dali-gpu", "mxnet", "gluon")
DESCRIPTIONS = {"dali-cpu": "DALI, CPU decoding", "dali-gpu": "DALI, GPU decoding",
                "mxnet": "mx.io.ImageRecordIter", "gluon": "Gluon DataLoader",
                "decode-ceiling": "OpenCV imdecode, whole images"}
RANDOM_AREA = (0.08, 1.0)
RANDOM_ASPECT_RATIO = (3 / 4, 4 / 3)
MEAN_01 = (0.485, 0.456, 0.406)  # ImageNet statistics in the 0-1 range of ToTensor
STD_01 = (0.229, 0.224, 0.225)


class LoaderSkipped(Exception):
    """The loader cannot run on this machine; the message says why."""


def mxnet_available():
    """True when MXNet imports here."""
    try:
        import mxnet  # noqa: F401
    except Exception:  # ImportError, or a broken install (numpy >= 1.24)
        return False
    return True


def dali_gpu_count():
    """GPUs DALI sees (0 without CUDA)."""
    try:
        from nvidia.dali.backend import GetCUDADeviceCount
        return GetCUDADeviceCount()
    except Exception:
        return 0


def _cycle(loader):
    """Batches of `loader`, pass after pass."""
    return endless(loader, no_data="the loader produced no batch (fewer images than one "
                                   "batch?)")


def dali_batches(name, data_root, batch_size, crop, threads):
    """Endless batches of the project's DALI training pipeline, and a note.

    Through the project's DALI-to-MXNet iterator (as training gets them) where MXNet runs on
    the pipeline's device, otherwise the pipeline's own outputs.
    """
    gpu = name == "dali-gpu"
    if gpu and dali_gpu_count() == 0:
        raise LoaderSkipped("no GPU here")
    if mxnet_available() and (not gpu or _mxnet_gpus() > 0):
        from data.loaders import LoaderConfig, build_loader
        config = LoaderConfig(backend=name, data_root=data_root, batch_size=batch_size,
                              image_shape=(3,) + tuple(crop), num_threads=threads,
                              device_id=0 if gpu else None)
        return _cycle(build_loader(config, "train")), f"{threads} threads, MXNet NDArrays"
    why = "MXNet sees no GPU" if mxnet_available() else "MXNet not importable"
    return (_raw_dali_batches(gpu, data_root, batch_size, crop, threads),
            f"{threads} threads, timed on DALI's own outputs ({why})")


def _mxnet_gpus():
    import mxnet as mx
    return mx.context.num_gpus()


def _raw_dali_batches(gpu, data_root, batch_size, crop, threads):
    from data.pipelines import classification_train_pipeline
    pipeline = classification_train_pipeline(
        rec_path=os.path.join(data_root, "train.rec"),
        idx_path=os.path.join(data_root, "train.idx"), shard_id=0, num_shards=1,
        crop_size=tuple(crop), random_area=RANDOM_AREA, random_aspect_ratio=RANDOM_ASPECT_RATIO,
        decoder_device="mixed" if gpu else "cpu", hw_decoder_load=0.65, dtype="float32",
        layout="NCHW", pad_channels=False, batch_size=batch_size, num_threads=threads,
        device_id=0 if gpu else None, seed=0)
    pipeline.build()
    while True:
        images, labels = pipeline.run()
        yield {"data": images, "label": labels}


def recorditer_batches(data_root, batch_size, crop, threads):
    """Endless batches of ``ImageRecordIter`` through the project's ``mxnet`` backend."""
    if not mxnet_available():
        raise LoaderSkipped("MXNet is not importable here")
    from data.loaders import LoaderConfig, build_loader
    config = LoaderConfig(backend="mxnet", data_root=data_root, batch_size=batch_size,
                          image_shape=(3,) + tuple(crop), num_threads=threads)
    # ImageRecordIter decodes on at most cores - 1 threads, keeping one core for the rest.
    decoders = max(1, min(threads, (os.cpu_count() or 1) - 1))
    return (_cycle(build_loader(config, "train")),
            f"preprocess_threads={threads} (decodes on {decoders})")


def gluon_batches(data_root, batch_size, crop, threads):
    """Endless batches of a Gluon ``DataLoader`` with the equivalent ``transforms``."""
    if not mxnet_available():
        raise LoaderSkipped("MXNet is not importable here")
    from mxnet.gluon.data import DataLoader
    from mxnet.gluon.data.vision import ImageRecordDataset, transforms
    augment = transforms.Compose([
        transforms.RandomResizedCrop((crop[1], crop[0]), scale=RANDOM_AREA,
                                     ratio=RANDOM_ASPECT_RATIO),
        transforms.RandomFlipLeftRight(), transforms.ToTensor(),
        transforms.Normalize(MEAN_01, STD_01)])
    dataset = ImageRecordDataset(os.path.join(data_root, "train.rec")).transform_first(augment)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, last_batch="discard",
                        num_workers=threads)
    return (({"data": data, "label": label} for data, label in _cycle(loader)),
            f"{threads} worker processes")


def finish(batch):
    """Wait until `batch` is computed: read one value of each of its arrays back to the
    host (MXNet computes asynchronously; a detection batch's targets are computed after its
    images)."""
    for value in batch.values():
        if hasattr(value, "asnumpy"):  # MXNet NDArray (CPU or GPU)
            value.reshape((-1,))[0:1].asnumpy()
        elif hasattr(value, "as_cpu"):  # DALI GPU output: a copy to the host waits for it
            value.as_cpu()


def pull(batches, count):
    """Seconds to take `count` batches from `batches`, the last one finished."""
    start = time.perf_counter()
    batch = None
    for _ in range(count):
        batch = next(batches)
    if batch is not None:
        finish(batch)
    return time.perf_counter() - start


# --- the decode ceiling: one process per core, each with every JPEG of the file in memory
_JPEGS = []


def _load_jpegs(rec_path):
    import cv2
    cv2.setNumThreads(1)
    _JPEGS[:] = [unpack_image_record(payload)[1] for _, payload in iter_records(rec_path)]


def _decode_share(share, shares):
    import cv2
    jpegs = _JPEGS[share::shares]
    for jpeg in jpegs:
        if cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) is None:
            raise ValueError("a record of the file is not a decodable image")
    return len(jpegs)


def decode_ceiling(rec_path, processes, min_decodes=2048):
    """Images/s of decoding every JPEG of `rec_path` with OpenCV on `processes` processes.

    The file is decoded once untimed (starting the processes), then as many times as it
    takes to decode at least `min_decodes` images.
    """
    try:
        import cv2  # noqa: F401
    except ImportError:
        raise LoaderSkipped("OpenCV (cv2) is not importable here") from None
    with open(os.path.splitext(rec_path)[0] + ".idx") as f:
        images = sum(1 for line in f if line.strip())
    shares = processes * 4  # small tasks, so that no process waits for another at the end
    tasks = [(k, shares) for k in range(shares)]
    # spawn: fresh processes without the parent's MXNet and DALI threads.
    with multiprocessing.get_context("spawn").Pool(processes, _load_jpegs, (rec_path,)) as pool:
        pool.starmap(_decode_share, tasks, chunksize=1)
        passes = max(1, math.ceil(min_decodes / max(images, 1)))
        start = time.perf_counter()
        decoded = sum(pool.starmap(_decode_share, tasks * passes, chunksize=1))
        seconds = time.perf_counter() - start
    return decoded / seconds


# Warm-up of a loader started again for a later round: the threads and worker processes are
# started and the file is in the page cache by then, so a few batches fill the pipeline.
REWARM_BATCHES = 4


def compare_loaders(data_root, batch_size, crop, threads, warmup_batches, round_batches,
                    rounds, names=LOADERS, on_result=None, on_round=None):
    """Time the decode ceiling, then the loaders of `names` in turns (`time_in_turns`).

    Parameters
    ----------
    data_root : str
        Folder with train.rec and train.idx.
    batch_size : int
    crop : (int, int)
        Output height and width.
    threads : int
        Threads or worker processes per loader, and processes of the decode ceiling.
    warmup_batches, round_batches, rounds : int
    names : sequence of str
        Loaders of `LOADERS` to time.
    on_result : callable, optional
        Called with each row when its measurement is complete.
    on_round : callable, optional
        Called as ``on_round(name, round_number, rounds, img_per_s)`` after each turn.

    Returns
    -------
    list of dict
        Rows ``{"mode": "loader", "loader", "batch_size", "status", "img_per_s", "note",
        "round_img_per_s", "ratio_to_recorditer", "share_of_decode_ceiling"}``, the decode
        ceiling first; status "ok", "skipped" (with "note") or "failed" (with "error").
    """
    rows = {"decode-ceiling": _ceiling_row(data_root, batch_size, threads)}
    _report(on_result, rows["decode-ceiling"])
    # Gluon first in each round: it forks worker processes, best done before DALI starts
    # threads.
    starts = {name: functools.partial(_SOURCES[name], data_root, batch_size, crop, threads)
              for name in sorted(names, key=lambda n: n != "gluon")}
    timed = time_in_turns(starts, batch_size, warmup_batches, round_batches, rounds,
                          on_result, on_round)
    rows.update((name, timed[name]) for name in names)
    return add_loader_ratios(list(rows.values()))


def time_in_turns(starts, batch_size, warmup_batches, round_batches, rounds, on_result=None,
                  on_round=None):
    """Time loaders that take turns, round after round.

    In each of `rounds` rounds, every loader in turn is started, warmed up (with
    `warmup_batches` in the first round, `REWARM_BATCHES` later), timed over `round_batches`
    batches and stopped. Taking turns spreads changes in the machine's load (other
    processes) over all loaders alike; stopping each after its turn keeps it from preparing
    batches in the background during the others' turns.

    Parameters
    ----------
    starts : dict
        Loader name -> a function of no arguments that starts it and returns ``(batches,
        note)``: an endless generator of batches (closed at the end of the turn) and a note
        for the report; it raises `LoaderSkipped` where the loader cannot run. Turns follow
        the dict's order.
    batch_size, warmup_batches, round_batches, rounds : int
    on_result, on_round : callable, optional
        As in `compare_loaders`.

    Returns
    -------
    dict
        Name -> row ``{"mode": "loader", "loader", "batch_size", "status", "img_per_s",
        "note", "round_img_per_s"}`` (or "error" when it failed).
    """
    rows = {name: {"mode": "loader", "loader": name, "batch_size": batch_size}
            for name in starts}
    seconds = {name: 0.0 for name in starts}
    running = list(starts)
    for round_number in range(rounds):
        warmup = warmup_batches if round_number == 0 else min(warmup_batches, REWARM_BATCHES)
        for name in list(running):
            turn = _turn(rows[name], starts[name], warmup, round_batches)
            if turn is None:  # skipped or failed: the row says why
                running.remove(name)
                _report(on_result, rows[name])
                continue
            seconds[name] += turn
            rows[name].setdefault("round_img_per_s", []).append(round_batches * batch_size / turn)
            if on_round is not None:
                on_round(name, round_number, rounds, round_batches * batch_size / turn)
    for name in running:
        rows[name].update(status="ok",
                          img_per_s=rounds * round_batches * batch_size / seconds[name])
        _report(on_result, rows[name])
    return rows


def prepared_start(prepare, start):
    """A loader's start function for `time_in_turns` whose set-up runs now, outside the timed
    turns: `prepare()` (a data set's index, a network's anchors ...), then ``start(what it
    returned)`` at each turn. A `LoaderSkipped` of `prepare` is raised again at the start."""
    try:
        prepared = prepare()
    except LoaderSkipped as why:
        def skipped(reason=str(why)):
            raise LoaderSkipped(reason)
        return skipped
    return lambda: start(prepared)


def _ceiling_row(data_root, batch_size, threads):
    row = {"mode": "loader", "loader": "decode-ceiling", "batch_size": batch_size}
    try:
        row.update(status="ok", note=f"{threads} processes",
                   img_per_s=decode_ceiling(os.path.join(data_root, "train.rec"), threads))
    except LoaderSkipped as why:
        row.update(status="skipped", note=str(why))
    except Exception as error:
        row.update(status="failed", error=f"{type(error).__name__}: {error}")
    return row


_SOURCES = {"dali-cpu": lambda *a: dali_batches("dali-cpu", *a),
            "dali-gpu": lambda *a: dali_batches("dali-gpu", *a),
            "mxnet": lambda *a: recorditer_batches(*a),
            "gluon": lambda *a: gluon_batches(*a)}


def _turn(row, start, warmup, timed):
    """Start a loader, warm it up, time `timed` batches and stop it: the seconds, or None
    when it is skipped or fails (`row` then says why)."""
    batches = None
    try:
        batches, row["note"] = start()
        pull(batches, warmup)
        return pull(batches, timed)
    except LoaderSkipped as why:
        row.update(status="skipped", note=str(why))
    except Exception as error:  # one broken loader must not stop the comparison
        row.update(status="failed", error=f"{type(error).__name__}: {error}")
    finally:
        if batches is not None:
            _stop(batches)
    return None


def _stop(batches):
    batches.close()  # drops the loader, so that its threads or processes stop
    gc.collect()


def _report(on_result, row):
    if on_result is not None:
        on_result(row)


def add_loader_ratios(rows):
    """Add each loader's ratio to ImageRecordIter and share of the decode ceiling."""
    rates = {r["loader"]: r.get("img_per_s") for r in rows if r.get("status") == "ok"}
    for row in rows:
        if row.get("status") == "ok" and row["loader"] != "decode-ceiling":
            row["ratio_to_recorditer"] = ratio(row["img_per_s"], rates.get("mxnet"))
            row["share_of_decode_ceiling"] = ratio(row["img_per_s"],
                                                   rates.get("decode-ceiling"))
    return rows
