"""The sweeps: every case in turn, with progress lines; a case that fails is recorded with
its reason and the sweep goes on.

After a case runs out of memory, the larger batch sizes of the same worker count are
recorded as skipped instead of being tried (they would run out too).
"""
import os
import re
import sys
import time

from benchmarking.training import RUNNER, CaseFailed, is_out_of_memory, run_training_case

# train.py's end-of-epoch log line, the progress worth echoing from a training run.
_EPOCH_DONE = re.compile(r"epoch \d+ done: .*")


def training_sweep(settings, workers_list, batch_sizes, log_dir, runner=RUNNER,
                   out=sys.stderr, verbose=False, env=None):
    """Run every (workers, batch) training case.

    Parameters
    ----------
    settings : benchmarking.settings.Settings
    workers_list, batch_sizes : list of int
    log_dir : str
        Each case's whole output goes to ``train-n{workers}-b{batch}.log`` here.
    runner : str
    out : file
        Where progress goes.
    verbose : bool
        Echo every line of the runs' output, not only their epoch summaries.
    env : dict, optional
        The runner's environment (default: this process's).

    Yields
    ------
    dict
        One row per case, when it is done: ``mode`` "training", ``workers``,
        ``batch_size``, ``status`` ("ok", "failed", "skipped") and the measurements or
        ``error``. `benchmarking.stats.add_scaling` adds the scaling over all rows.
    """
    cases = [(n, b) for n in workers_list for b in batch_sizes]
    out_of_memory_at = {}  # workers -> smallest batch that ran out of memory
    for number, (workers, batch) in enumerate(cases, 1):
        row = {"mode": "training", "workers": workers, "batch_size": batch}
        say(out, f"[{number}/{len(cases)}] training {settings.model}: {workers} worker(s) x "
                  f"batch {batch}, {settings.dtype}, {settings.data_backend} data")
        if batch >= out_of_memory_at.get(workers, float("inf")):
            yield _skip(out, row, f"batch {out_of_memory_at[workers]} ran out of memory")
            continue
        log_path = os.path.join(log_dir, f"train-n{workers}-b{batch}.log")
        start = time.perf_counter()
        try:
            row.update(status="ok", **run_training_case(settings, workers, batch, log_path,
                                                        runner, run_echo(out, verbose), env))
        except CaseFailed as error:
            row.update(status="failed", error=str(error), log=log_path)
            if is_out_of_memory(str(error)):
                out_of_memory_at[workers] = batch
        report_case(out, row, time.perf_counter() - start)
        yield row


def run_echo(out, verbose=False):
    """The output callback of a training run: every line (`verbose`), or its epoch
    summaries."""
    def echo(line):
        if verbose:
            say(out, "    " + line)
        elif match := _EPOCH_DONE.search(line):
            say(out, "    " + match.group(0))
    return echo


def inference_sweep(settings, batch_sizes, out=sys.stderr):
    """Run inference at every batch size, on one device, in this process.

    Yields
    ------
    dict
        One row per batch size, when it is done: ``mode`` "inference", ``workers`` 1,
        ``batch_size``, ``status`` and the measurements or ``error``.
    """
    from benchmarking.timing import is_out_of_memory
    if settings.runtime == "onnxruntime":
        from benchmarking import onnx_inference as runtime  # no MXNet import
    elif settings.instance_segmentation:
        from benchmarking import mask_rcnn_inference as runtime
    else:
        from benchmarking import inference as runtime
    device = str(runtime.inference_context())
    out_of_memory_at = float("inf")
    for number, batch in enumerate(batch_sizes, 1):
        row = {"mode": "inference", "workers": 1, "batch_size": batch}
        say(out, f"[{number}/{len(batch_sizes)}] inference {settings.model}: batch {batch}, "
                  f"{settings.dtype}, {settings.data_backend} data, {device}")
        if batch >= out_of_memory_at:
            yield _skip(out, row, f"batch {out_of_memory_at} ran out of memory")
            continue

        def echo(epoch, epochs, rate, warmup):
            label = "warm-up" if warmup else "epoch"
            say(out, f"    {label} {epoch + 1}/{epochs}: {rate:.1f} img/s")

        start = time.perf_counter()
        try:
            row.update(status="ok", **runtime.run_inference_case(settings, batch, echo))
        except Exception as error:  # anything the runtime raises for one case ends only it
            row.update(status="failed", error=one_line(error))
            if is_out_of_memory(error):
                out_of_memory_at = batch
        report_case(out, row, time.perf_counter() - start)
        yield row


def one_line(error):
    """A one-line description of `error` (MXNet's messages carry C++ stack traces): the last
    line that mentions memory, else the last that mentions an error, else the first."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    for keyword in ("out of memory", "error"):
        matches = [line for line in lines if keyword in line.lower()
                   and not line.lower().startswith("traceback")]
        if matches:
            text = matches[-1]
            break
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _skip(out, row, why):
    row.update(status="skipped", error=why)
    say(out, f"    skipped: {why}")
    return row


def report_case(out, row, seconds):
    """Print a case's result (or its failure) and the seconds it took."""
    if row["status"] != "ok":
        say(out, f"    -> FAILED: {row['error']}")
        return
    if "latency_ms" in row:
        share = row.get("cpu_share")
        extra = f", p99 {row['latency_ms']['p99']:.1f} ms" + (
            f", {share:.0%} of the CPU" if share is not None else "")
    else:
        extra = f", {row['iter_ms']:.1f} ms/iteration, data wait {row['data_wait_ms']:.1f} ms"
    say(out, f"    -> {row['img_per_s']:.1f} img/s{extra} ({seconds:.0f} s)")
    if row.get("note"):
        say(out, f"    note: {row['note']}")


def say(out, text):
    print(text, file=out, flush=True)
