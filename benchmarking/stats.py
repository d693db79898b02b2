"""The arithmetic of the benchmark: percentiles, images/s, epoch weighting, scaling.

Every function here is pure (numbers in, numbers out) so that the tests can check it against
values computed by hand.
"""
import numpy as np

PERCENTILES = (50, 90, 95, 99)


def latency_summary(seconds):
    """Mean and percentiles of per-batch latencies, in milliseconds.

    Percentiles interpolate linearly between the two nearest samples (numpy's default), so
    p50 of 1, 2, 3, 4 ms is 2.5 ms.

    Parameters
    ----------
    seconds : sequence of float
        One latency per timed batch, in seconds.

    Returns
    -------
    dict
        ``{"mean": ms, "p50": ms, "p90": ms, "p95": ms, "p99": ms}``.
    """
    values = np.asarray(seconds, dtype=np.float64) * 1000.0
    if values.size == 0:
        raise ValueError("no latencies to summarise")
    summary = {"mean": float(values.mean())}
    for q, value in zip(PERCENTILES, np.percentile(values, PERCENTILES)):
        summary[f"p{q}"] = float(value)
    return summary


def images_per_second(batch_size, seconds):
    """Images per second of batches of `batch_size` that took `seconds` each.

    This is the batch over the *mean* batch time (the harmonic mean of per-batch rates),
    which equals all images over all time.
    """
    seconds = np.asarray(seconds, dtype=np.float64)
    if seconds.size == 0 or seconds.sum() <= 0:
        raise ValueError("no positive time to divide by")
    return float(batch_size / seconds.mean())


def rate_summary(batch_size, seconds):
    """``{"img_per_s", "latency_ms"}`` of batches timed one by one: `images_per_second` and
    `latency_summary` of the same times."""
    return {"img_per_s": images_per_second(batch_size, seconds),
            "latency_ms": latency_summary(seconds)}


def epoch_iterations(record):
    """Iterations of a training log "epoch" record: its seconds over its mean iteration
    time (the record does not store the count itself)."""
    return int(round(1000.0 * record["seconds"] / record["iter_ms"]))


def combine_epochs(records, warmup, global_batch):
    """Training throughput over the epochs that count.

    The first `warmup` epochs are dropped; the rest are weighted by their iterations, so the
    result is the global batch over the mean iteration time of every counted iteration.

    Parameters
    ----------
    records : list of dict
        The "epoch" records of ``log.jsonl`` in order (``seconds``, ``iter_ms``,
        ``data_wait_ms``).
    warmup : int
        Epochs not counted.
    global_batch : int
        Workers times batch per worker.

    Returns
    -------
    dict
        ``img_per_s``, ``iter_ms``, ``data_wait_ms`` (mean per iteration), ``iterations``
        (counted) and ``epochs`` (counted).
    """
    counted = records[warmup:]
    if not counted:
        raise ValueError(f"the run logged {len(records)} epoch(s); none is left after "
                         f"{warmup} warm-up epoch(s)")
    iterations = [epoch_iterations(r) for r in counted]
    total_iterations = sum(iterations)
    total_seconds = sum(r["seconds"] for r in counted)
    iter_seconds = total_seconds / total_iterations
    data_wait_ms = sum(r["data_wait_ms"] * n for r, n in zip(counted, iterations))
    return {"img_per_s": global_batch / iter_seconds, "iter_ms": 1000.0 * iter_seconds,
            "data_wait_ms": data_wait_ms / total_iterations, "iterations": total_iterations,
            "epochs": len(counted)}


def add_scaling(rows):
    """Add ``speedup`` and ``scaling_efficiency`` to successful training rows, in place
    (other rows are left alone).

    For a row of n workers and batch b, ``speedup`` is its images/s over the images/s of one
    worker at the same batch b (NVIDIA's tables call this "weak scaling"), and
    ``scaling_efficiency`` is the speedup over n (1.0 is perfect). Rows without a one-worker
    run at their batch size get neither.
    """
    training = [r for r in rows if r["mode"] == "training" and r.get("status") == "ok"]
    single = {r["batch_size"]: r["img_per_s"] for r in training if r["workers"] == 1}
    for row in training:
        base = single.get(row["batch_size"])
        if not base:
            continue
        row["speedup"] = row["img_per_s"] / base
        row["scaling_efficiency"] = row["speedup"] / row["workers"]
    return rows


def cpu_share(cpu_seconds, wall_seconds, cores):
    """CPU time used over the CPU time the machine had: 1.0 when a process kept every core
    busy for the whole time."""
    if wall_seconds <= 0 or cores < 1:
        return None
    return cpu_seconds / (wall_seconds * cores)


def ratio(new, old):
    """`new` / `old`, or None when either is missing or `old` is zero."""
    if new is None or old is None or old == 0:
        return None
    return new / old
