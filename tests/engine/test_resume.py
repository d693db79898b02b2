"""Resuming: a run killed after its first checkpoint and resumed ends with exactly the weights
of a run that was never interrupted (same samples, augmentations, learning rates, momentum)."""
import os
import signal
import subprocess
import sys
import time

import mxnet as mx
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _train_command(data_root, workspace, epochs, *extra):
    return [sys.executable, os.path.join(ROOT, "train.py"), "--mode", "train",
            "--data-root", str(data_root), "--workspace", str(workspace),
            "--arch", "resnet18_v1.5", "--num-classes", "4", "--image-shape", "3,32,32",
            "--batch-size", "8", "--num-epochs", str(epochs), "--warmup-epochs", "1",
            "--lr", "0.5", "--lr-schedule", "step", "--lr-steps", "1", "--mixup", "0.2",
            "--data-threads", "1", "--log-interval", "4", "--progress", "off", *extra]


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _run(command):
    result = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _weights(workspace, epoch):
    return mx.nd.load(os.path.join(workspace, "checkpoints", f"epoch-{epoch:04d}", "model.params"))


def _kill_after_first_checkpoint(command, workspace):
    first = os.path.join(workspace, "checkpoints", "epoch-0001")
    process = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not os.path.isdir(first) and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert os.path.isdir(first), "the run ended before writing its first checkpoint"
    # Had the kill come only after the second checkpoint, resuming would test nothing.
    assert not os.path.isdir(os.path.join(workspace, "checkpoints", "epoch-0002"))


def test_kill_and_resume_matches_uninterrupted_run(tiny_dataset, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _run(_train_command(tiny_dataset, straight, 2))
    _kill_after_first_checkpoint(_train_command(tiny_dataset, resumed, 2), str(resumed))
    log = _run(_train_command(tiny_dataset, resumed, 2, "--resume")).stdout
    assert "using checkpoint" in log and "epoch-0001" in log

    expected, got = _weights(straight, 2), _weights(resumed, 2)
    after_first_epoch = _weights(straight, 1)
    assert expected.keys() == got.keys()
    for name in expected:
        np.testing.assert_allclose(got[name].asnumpy(), expected[name].asnumpy(),
                                   rtol=1e-6, atol=1e-7, err_msg=name)
    moved = [name for name in expected if not np.allclose(expected[name].asnumpy(),
                                                          after_first_epoch[name].asnumpy())]
    assert len(moved) > len(expected) // 2, "the second epoch barely changed the weights"
