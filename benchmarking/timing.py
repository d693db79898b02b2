"""Timed inference epochs, whatever runs the network (MXNet or ONNX Runtime).

No MXNet import: the ONNX Runtime runtime measures on machines without MXNet.
"""
import time

from benchmarking.machine import cpu_cores
from benchmarking.stats import cpu_share, images_per_second, rate_summary


class InferenceError(Exception):
    """A batch size that cannot run here; the message says why."""


def is_out_of_memory(error):
    """True for MXNet's, ONNX Runtime's and Python's out-of-memory errors."""
    return isinstance(error, MemoryError) or "out of memory" in str(error).lower() or (
        "failed to allocate" in str(error).lower())


def check_epoch_length(settings, batch_size):
    """Iterations of one epoch at `batch_size`; InferenceError when not one batch fits."""
    iterations = settings.epoch_iterations(batch_size)
    if iterations < 1:
        raise InferenceError(f"--num-examples {settings.num_examples} is less than one batch "
                             f"of {batch_size}")
    return iterations


def time_batches(run_batch, inputs, count):
    """Per-batch latencies in seconds of `count` calls of `run_batch` over `inputs`;
    `run_batch(batch)` returns once the batch's outputs are complete."""
    latencies = []
    for _ in range(count):
        start = time.perf_counter()
        run_batch(next(inputs))
        latencies.append(time.perf_counter() - start)
    return latencies


def measure_epochs(run_batch, inputs, settings, batch_size, iterations, on_epoch=None):
    """One untimed batch (graphs built, algorithms chosen), then `settings.warmup` untimed
    epochs and `settings.epochs` epochs of `iterations` batches (`check_epoch_length`),
    timed batch by batch.

    Parameters
    ----------
    on_epoch : callable, optional
        Called as ``on_epoch(epoch, epochs, img_per_s, warmup)`` after every epoch.

    Returns
    -------
    dict
        ``img_per_s``, ``latency_ms`` (mean, p50, p90, p95, p99), ``iterations``,
        ``epochs``, ``epoch_img_per_s`` and ``cpu_share`` (the share of the machine's CPU
        time this process got while timed: well under 1 on CPU means other processes took
        the rest, and the numbers are low).
    """
    time_batches(run_batch, inputs, 1)
    latencies, epoch_rates, cpu_seconds, wall_seconds = [], [], 0.0, 0.0
    for epoch in range(settings.warmup + settings.epochs):
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        epoch_latencies = time_batches(run_batch, inputs, iterations)
        rate = images_per_second(batch_size, epoch_latencies)
        counted = epoch >= settings.warmup
        if counted:
            latencies += epoch_latencies
            epoch_rates.append(rate)
            cpu_seconds += time.process_time() - cpu_start
            wall_seconds += time.perf_counter() - wall_start
        if on_epoch is not None:
            on_epoch(epoch, settings.warmup + settings.epochs, rate, not counted)
    return {**rate_summary(batch_size, latencies), "iterations": len(latencies),
            "epochs": settings.epochs, "epoch_img_per_s": [float(r) for r in epoch_rates],
            "cpu_share": cpu_share(cpu_seconds, wall_seconds, cpu_cores())}
