"""Resuming a 2-worker run (./runner -n 2, DALI CPU, real Horovod processes): the whole run is
killed with SIGKILL before its first checkpoint, between checkpoints and while a checkpoint is
being written, then resumed with the same command plus --resume; each resumed run finishes
with exactly the weights, loop state and losses of a run that was never interrupted (which
also shows that two runs of one configuration give the same weights and losses).

The configuration makes every piece of restored state visible in the result: a cosine
schedule with warm-up changes the learning rate at every step (an update count off by one
changes the weights), the dynamic loss scaler counts clean steps and the evaluation hook keeps
the best top-1 (both live in the checkpoint's loop state), and mixup draws from a per-worker
generator whose state the checkpoint carries.
"""
import glob
import json
import os
import signal
import subprocess
import time

import mxnet as mx
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EPOCHS = 2


def _command(data_root, workspace, *extra):
    return [os.path.join(ROOT, "runner"), "-n", "2", "-b", "8", "--data-root", str(data_root),
            "--workspace", str(workspace), "--num-epochs", str(EPOCHS),
            "--image-shape", "3,32,32", "--lr", "0.5", "--data-backend", "dali-cpu",
            "--arch", "resnet18_v1.5", "--num-classes", "4", "--warmup-epochs", "0.5",
            "--lr-schedule", "cosine", "--mixup", "0.2", "--loss-scale", "dynamic",
            "--data-threads", "1", "--log-interval", "2", "--progress", "off",
            "--stall-timeout", "120", *extra]


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _run(command):
    result = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _kill_whole_run_when(command, ready, timeout=300, env=None):
    """Start `command` in its own process group (environment `env`, default `_env()`) and
    SIGKILL the group (runner and workers) as soon as `ready()` is true."""
    process = subprocess.Popen(command, env=env or _env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert process.poll() is None, "the run ended before the moment to kill it"
            assert time.monotonic() < deadline, "the moment to kill the run never came"
            time.sleep(0.005)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _checkpoint(workspace, epoch):
    return os.path.join(workspace, "checkpoints", f"epoch-{epoch:04d}")


def _logged_iterations(workspace):
    try:
        with open(os.path.join(workspace, "log.jsonl")) as f:
            return sum('"event": "train"' in line for line in f)
    except OSError:
        return 0


def _writing_checkpoint(workspace, epoch):
    return glob.glob(os.path.join(workspace, "checkpoints", f".epoch-{epoch:04d}-*"))


KILL_MOMENTS = {
    "before-first-checkpoint": lambda ws: _logged_iterations(ws) >= 2,
    "between-checkpoints": lambda ws: os.path.isdir(_checkpoint(ws, 1)),
    "during-checkpoint-write": lambda ws: bool(_writing_checkpoint(ws, 2)),
}


def _epoch_losses(workspace):
    with open(os.path.join(workspace, "log.jsonl")) as f:
        records = [json.loads(line) for line in f]
    return {r["epoch"]: r["loss"] for r in records if r["event"] == "epoch"}


def _final(workspace):
    path = _checkpoint(workspace, EPOCHS)
    with open(os.path.join(path, "state.json")) as f:
        state = json.load(f)
    return mx.nd.load(os.path.join(path, "model.params")), state


@pytest.fixture(scope="module")
def straight_run(tiny_dataset, tmp_path_factory):
    workspace = tmp_path_factory.mktemp("straight")
    _run(_command(tiny_dataset, workspace))
    return workspace


@pytest.mark.parametrize("moment", sorted(KILL_MOMENTS))
def test_killed_and_resumed_run_ends_as_the_uninterrupted_one(straight_run, tiny_dataset,
                                                              tmp_path, moment):
    _kill_whole_run_when(_command(tiny_dataset, tmp_path),
                         lambda: KILL_MOMENTS[moment](str(tmp_path)))
    assert not os.path.isdir(_checkpoint(tmp_path, EPOCHS)), "killed too late to test resume"
    log = _run(_command(tiny_dataset, tmp_path, "--resume")).stdout
    if moment == "before-first-checkpoint":
        assert "no valid checkpoint" in log and "starting from scratch" in log
    else:
        assert "using checkpoint" in log and "epoch-0001" in log
    # A checkpoint cut short by the kill was never renamed into place, and is cleaned away.
    assert not _writing_checkpoint(tmp_path, 2)

    expected_weights, expected_state = _final(straight_run)
    weights, state = _final(tmp_path)
    assert weights.keys() == expected_weights.keys()
    for name in expected_weights:
        np.testing.assert_allclose(weights[name].asnumpy(), expected_weights[name].asnumpy(),
                                   rtol=1e-6, atol=1e-7, err_msg=name)
    # Loop position, loss scaler (its count of clean steps) and the hooks' state (best top-1).
    assert state["loop"] == expected_state["loop"]
    assert state["loop"]["loss_scaler"]["clean_steps"] == state["loop"]["global_step"]
    assert len(state["workers"]) == 2
    # The epochs trained after resuming log the losses of the uninterrupted run.
    losses, expected_losses = _epoch_losses(tmp_path), _epoch_losses(straight_run)
    assert losses[EPOCHS - 1] == expected_losses[EPOCHS - 1]


# ---------------------------------------------------------------------------- SSD
# The same for a detector: DALI's COCO reader and its random crops, flips and colour factors
# resume mid-run, and the step-based schedule (warm-up and cosine in steps) continues where
# it was.
SSD_STEPS, SSD_EPOCH_STEPS = 6, 2


def _ssd_command(data_root, workspace, *extra):
    return [os.path.join(ROOT, "runner"), "-n", "2", "-b", "2", "--data-root", str(data_root),
            "--workspace", str(workspace), "--arch", "ssd128_resnet18_fpn64",
            "--image-shape", "3,64,64", "--mode", "train", "--num-steps", str(SSD_STEPS),
            "--epoch-steps", str(SSD_EPOCH_STEPS), "--warmup-steps", "2", "--lr", "0.1",
            "--data-threads", "1", "--log-interval", "1", "--progress", "off",
            "--stall-timeout", "120", *extra]


@pytest.fixture(scope="module")
def small_coco(tmp_path_factory):
    from data.demo import make_detection
    root = str(tmp_path_factory.mktemp("coco") / "demo")
    make_detection(root, train_images=12, val_images=2, size=64, progress=False)
    return root


def test_killed_and_resumed_ssd_run_ends_as_the_uninterrupted_one(small_coco, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _run(_ssd_command(small_coco, straight))
    _kill_whole_run_when(_ssd_command(small_coco, resumed),
                         lambda: os.path.isdir(_checkpoint(resumed, 1)))
    epochs = SSD_STEPS // SSD_EPOCH_STEPS
    assert not os.path.isdir(_checkpoint(resumed, epochs)), "killed too late to test resume"
    log = _run(_ssd_command(small_coco, resumed, "--resume")).stdout
    assert "using checkpoint" in log

    expected_weights = mx.nd.load(os.path.join(_checkpoint(straight, epochs), "model.params"))
    weights = mx.nd.load(os.path.join(_checkpoint(resumed, epochs), "model.params"))
    assert weights.keys() == expected_weights.keys()
    for name in expected_weights:
        np.testing.assert_allclose(weights[name].asnumpy(), expected_weights[name].asnumpy(),
                                   rtol=1e-6, atol=1e-7, err_msg=name)
    assert _epoch_losses(resumed)[epochs - 1] == _epoch_losses(straight)[epochs - 1]
