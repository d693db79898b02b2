"""The demo classifier exported and evaluated through ONNX Runtime (python -m deploy.onnx_eval)
gives MXNet's validation accuracy: float32 the same class on >= 99% of the images, float16
top-1 within 0.2 points; and the MXNet side of the comparison is train.py's own evaluation."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(*args):
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_onnx_runtime_top1_equals_mxnets_on_the_demo_set(demo_run, dtype, tmp_path):
    data, workspace, _, _ = demo_run
    checkpoint = str(workspace / "checkpoints" / "epoch-0008")
    path = str(tmp_path / f"demo-{dtype}.onnx")
    result = _run("deploy.onnx_export", checkpoint, "--arch", "resnet18_v1.5",
                  "--num-classes", "10", "--image-shape", "3,64,64", "--dtype", dtype,
                  "--out", path)
    assert result.returncode == 0, result.stdout + result.stderr
    metrics = str(tmp_path / "metrics.json")
    result = _run("deploy.onnx_eval", path, "--data-root", str(data / "rec"), "--compare",
                  checkpoint, "--arch", "resnet18_v1.5", "--output", metrics)
    assert result.returncode == 0, result.stdout + result.stderr
    measured = json.load(open(metrics))
    final = [json.loads(line) for line in open(workspace / "log.jsonl")
             if '"event": "epoch"' in line][-1]["val"]
    # Every validation image once, and MXNet's side is what training reported.
    assert measured["images"] == final["samples"] == 300
    assert measured["reference_top1"] == pytest.approx(final["top1"], abs=0.01)
    if dtype == "float32":
        assert measured["agreement"] >= 0.99
    else:
        assert abs(measured["top1"] - measured["reference_top1"]) <= 0.2
    assert measured["top1"] >= 80.0  # a trained network, not an empty comparison
