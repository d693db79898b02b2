"""The demo, end to end: demo data -> im2rec -> ./runner with 2 CPU workers -> >= 90% top-1;
then the checkpoint it wrote is evaluated again, alone and after its newest sibling is broken."""
import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _evaluate(data, workspace, *extra):
    command = [sys.executable, os.path.join(ROOT, "train.py"), "--mode", "val",
               "--data-root", str(data / "rec"), "--workspace", str(workspace),
               "--arch", "resnet18_v1.5", "--num-classes", "10", "--image-shape", "3,64,64",
               "--batch-size", "50", *extra]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def _top1(text):
    line = next(l for l in text.splitlines() if "validation: top-1" in l)
    return float(line.split("top-1")[1].split("%")[0])


@pytest.mark.slow
def test_demo_reaches_90_percent_top1(demo_run):
    _, workspace, stdout, stderr = demo_run
    epochs = [json.loads(line) for line in open(workspace / "log.jsonl")
              if '"event": "epoch"' in line]
    assert len(epochs) == 8
    final = epochs[-1]["val"]
    assert final["samples"] == 300  # the whole validation set, each image once over 2 workers
    assert final["top1"] >= 90.0, [e["val"]["top1"] for e in epochs]
    assert epochs[-1]["loss"] < epochs[0]["loss"]
    # The run says how it went and where its outputs are.
    assert _top1(stdout) == pytest.approx(final["top1"], abs=0.01)
    assert "checkpoints in" in stdout and str(workspace) in stdout
    # No worker (nor the launcher) printed a traceback, not even one that did not stop it.
    tracebacks = [line for line in (stdout + stderr).splitlines() if "Traceback" in line]
    assert not tracebacks, (tracebacks, stderr[-4000:])
    assert sorted(os.listdir(workspace / "checkpoints"))[-1] == "epoch-0008"
    assert (workspace / "model-symbol.json").exists() and (workspace / "model-0008.params").exists()


@pytest.mark.slow
def test_checkpoint_evaluates_to_the_reported_accuracy(demo_run):
    data, workspace, _, _ = demo_run
    final = [json.loads(l) for l in open(workspace / "log.jsonl") if '"event": "epoch"' in l][-1]
    checkpoint = workspace / "checkpoints" / "epoch-0008"
    out = _evaluate(data, workspace / "score", "--load", str(checkpoint))
    assert _top1(out) == pytest.approx(final["val"]["top1"], abs=0.01)
    exported = _evaluate(data, workspace / "score", "--load", str(workspace / "model-0008.params"))
    assert _top1(exported) == pytest.approx(final["val"]["top1"], abs=0.01)


@pytest.mark.slow
def test_corrupt_newest_checkpoint_falls_back_to_previous(demo_run, tmp_path):
    data, original, _, _ = demo_run
    # A copy, so that the other tests still find the fixture's checkpoints intact whatever
    # order they run in.
    workspace = tmp_path / "workspace"
    shutil.copytree(original, workspace)
    params = workspace / "checkpoints" / "epoch-0008" / "model.params"
    params.write_bytes(b"\0" * 100)
    out = _evaluate(data, workspace)
    assert "epoch-0008 is unusable" in out and "falling back" in out
    assert "using checkpoint" in out and "epoch-0007" in out
    assert _top1(out) >= 80.0
