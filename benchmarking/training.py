"""One training case (workers, batch per worker) through the real training path.

The case runs ``./runner`` (its launcher and train.py, as users train) in a fresh workspace for
``warmup + epochs`` epochs of ``iterations`` iterations, then reads the epoch records of the
workspace's ``log.jsonl``: images/s is the global batch over the mean iteration time of the
counted epochs, data wait included, as train.py logs it.
"""
import collections
import json
import os
import re
import signal
import subprocess
import sys
import tempfile

from benchmarking.stats import combine_epochs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, "runner")


class CaseFailed(Exception):
    """A case that could not run; the message says why, in one line."""


def runner_command(settings, workers, batch_size, workspace, runner=RUNNER):
    """The ``./runner`` command line of one training case.

    Parameters
    ----------
    settings : benchmarking.settings.Settings
    workers, batch_size : int
        Worker processes and batch per worker.
    workspace : str
        Folder for the run's logs (no checkpoints are written).
    runner : str
        Path of the runner script.
    """
    global_batch = workers * batch_size
    iterations = settings.epoch_iterations(global_batch)
    epochs = settings.warmup + settings.epochs
    # Mask R-CNN resizes each image by its recipe instead of taking one input shape.
    size = (["--min-size", str(settings.min_size), "--max-size", str(settings.max_size)]
            if settings.instance_segmentation else
            ["--image-shape", ",".join(str(v) for v in settings.image_shape)])
    command = [sys.executable, runner, "-n", str(workers), "-b", str(batch_size),
               "--dtype", settings.dtype, "--mode", "train",
               "--data-backend", settings.data_backend, "--data-root", settings.data_root,
               *size, "--workspace", workspace,
               # train.py flags, passed on by the runner:
               "--arch", settings.model, "--layout", settings.layout,
               "--save-frequency", "0", "--progress", "off", "--log-interval", str(iterations)]
    if settings.task != "classification":
        # Detection's and Mask R-CNN's recipes are step-based (train.py's task defaults):
        # epochs of I steps, whatever the size of the data set; the classes come from the
        # COCO json.
        command += ["--num-steps", str(epochs * iterations), "--epoch-steps", str(iterations)]
    else:
        command += ["--num-epochs", str(epochs), "--num-examples", str(iterations * global_batch),
                    "--num-classes", str(settings.num_classes)]
    return command + list(settings.runner_args)


def run_training_case(settings, workers, batch_size, log_path, runner=RUNNER, on_line=None,
                      env=None):
    """Train one case and measure it.

    Parameters
    ----------
    settings : benchmarking.settings.Settings
    workers, batch_size : int
    log_path : str
        Where the run's whole output is written.
    runner : str
    on_line : callable, optional
        Called with every output line as it arrives (for progress).
    env : dict, optional
        The runner's environment (default: this process's).

    Returns
    -------
    dict
        ``img_per_s``, ``iter_ms``, ``data_wait_ms``, ``iterations``, ``epochs``.

    Raises
    ------
    CaseFailed
        When the run exits with an error or logs too few epochs.
    """
    if settings.epoch_iterations(workers * batch_size) < 1:
        raise CaseFailed(f"--num-examples {settings.num_examples} is less than one global "
                         f"batch ({workers} x {batch_size})")
    with tempfile.TemporaryDirectory(prefix="benchmark-train-") as workspace:
        command = runner_command(settings, workers, batch_size, workspace, runner)
        returncode, tail = run_logged(command, log_path, on_line, env=env)
        if returncode != 0:
            raise CaseFailed(error_line(tail, returncode))
        records = read_epoch_records(os.path.join(workspace, "log.jsonl"))
    try:
        result = combine_epochs(records, settings.warmup, workers * batch_size)
    except ValueError as error:
        raise CaseFailed(str(error)) from None
    expected = settings.epoch_iterations(workers * batch_size) * settings.epochs
    if result["iterations"] < expected:
        result["note"] = (f"{result['iterations']} iterations counted instead of {expected}: "
                          f"an epoch of the training data holds fewer batches than -i")
    return result


def run_logged(command, log_path, on_line=None, tail_lines=200, env=None):
    """Run `command`, writing its output (stdout and stderr) to `log_path` as it comes.

    Returns
    -------
    (int, list of str)
        The exit status and the last `tail_lines` lines of output.
    """
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    tail = collections.deque(maxlen=tail_lines)
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(command) + "\n")
        # Its own session, so that Ctrl-C here can stop the run and all its workers.
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, bufsize=1, start_new_session=True, env=env)
        try:
            for line in process.stdout:
                log.write(line)
                tail.append(line.rstrip("\n"))
                if on_line is not None:
                    on_line(line.rstrip("\n"))
            returncode = process.wait()
        except BaseException:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait()
            raise
    return returncode, list(tail)


def read_epoch_records(log_path):
    """The "epoch" records of a train.py ``log.jsonl``, in order (empty if it is missing)."""
    if not os.path.exists(log_path):
        return []
    with open(log_path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r for r in records if r.get("event") == "epoch"]


# The runner's launcher (and horovodrun) prefixes every worker line with "[rank]<stdout>:";
# train.py's log lines start with a time and a level.
_WORKER_PREFIX = re.compile(r"^\[\d+\]<std(?:out|err)>:")
_LOG_PREFIX = re.compile(r"^\d\d:\d\d:\d\d (?:ERROR|CRITICAL|WARNING|INFO) ")
# Lines that say that something failed without saying what.
_NOISE = re.compile(r"Process \d+ exit with status code|Terminating remaining workers|"
                    r"^Traceback|^\s+File \"|^\s+\^+$|\[bt\]|Stack trace")
_OUT_OF_MEMORY = re.compile(r"out of memory|Failed to allocate|MemoryError|bad_alloc",
                            re.IGNORECASE)
_ERROR = re.compile(r"error|exception|refused|cannot|not supported", re.IGNORECASE)


def error_line(lines, returncode):
    """The line of a failed run's output that says what went wrong.

    Out-of-memory messages first, then the last line that mentions an error, else the last
    line; a worker killed by a signal is said so.
    """
    cleaned = [_LOG_PREFIX.sub("", _WORKER_PREFIX.sub("", line).strip()) for line in lines]
    cleaned = [line for line in cleaned if line and not _NOISE.search(line)]
    for pattern in (_OUT_OF_MEMORY, _ERROR):
        for line in reversed(cleaned):
            if pattern.search(line):
                return line
    if returncode in (-signal.SIGKILL, 128 + signal.SIGKILL) or any(
            "exit with status code -9" in line or "exit with status code 137" in line
            for line in lines):
        return "a worker was killed (SIGKILL): most likely out of host memory"
    return cleaned[-1] if cleaned else f"exit status {returncode} and no output"


def is_out_of_memory(message):
    """True when a failure message says that memory ran out (larger batches would too)."""
    return bool(_OUT_OF_MEMORY.search(message) or "out of host memory" in message)
