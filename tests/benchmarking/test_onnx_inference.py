"""benchmark.py --runtime onnxruntime on CPU: the report of the MXNet runtime, from an exported
file on a machine without MXNet or from --arch exported first; flags nothing would use are
errors that name them."""
import json
import os
import subprocess
import sys

import mxnet as mx
import pytest

import models
from deploy.onnx_export import export_onnx

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["-i", "3", "-e", "1", "-w", "1"]


def _benchmark(*args, env=None):
    return subprocess.run([sys.executable, os.path.join(ROOT, "benchmark.py"), *args],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)


def _check_inference_report(report, batches):
    assert report["kind"] == "inference" and report["failed"] == 0
    assert "ONNX Runtime" in report["inference_runtime"] and "CPU provider" in (
        report["inference_runtime"])
    assert report["settings"]["runtime"] == "onnxruntime"
    rows = report["results"]
    assert [r["batch_size"] for r in rows] == batches
    for row in rows:  # the fields of the MXNet runtime's rows
        latency = row["latency_ms"]
        assert row["status"] == "ok" and row["mode"] == "inference" and row["workers"] == 1
        assert row["iterations"] == 3 and len(row["epoch_img_per_s"]) == 1
        assert 0 < latency["p50"] <= latency["p90"] <= latency["p95"] <= latency["p99"]
        assert row["img_per_s"] == pytest.approx(row["batch_size"] / latency["mean"] * 1000)


@pytest.fixture
def no_mxnet(tmp_path):
    """An environment in which `import mxnet` fails, as on a Hopper machine."""
    fake = tmp_path / "fake" / "mxnet"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no MXNet here (test)')\n")
    return dict(os.environ, PYTHONPATH=str(fake.parent))


def test_exported_file_runs_real_data_without_mxnet(tiny_dataset, no_mxnet, tmp_path):
    net = models.build_network("resnet18_v1.5", 4, "NCHW", (3, 32, 32), "float32", mx.cpu())
    onnx_file = export_onnx(net, (3, 32, 32), str(tmp_path / "rn18.onnx"))
    output = tmp_path / "ort.json"
    result = _benchmark("--only-inference", "--runtime", "onnxruntime", "--onnx", onnx_file,
                        "--data-backend", "dali-cpu", "--data-root", str(tiny_dataset),
                        "-b", "2,4", *TINY, "-o", str(output), env=no_mxnet)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(output.read_text())
    _check_inference_report(report, [2, 4])
    assert report["model"] == "rn18" and report["settings"]["image_shape"] == [3, 32, 32]
    assert report["machine"]["versions"]["mxnet"]  # installed, only never imported


def test_arch_is_exported_then_measured(tmp_path):
    output = tmp_path / "ort.json"
    result = _benchmark("--only-inference", "--runtime", "onnxruntime", "--arch",
                        "resnet18_v1.5", "--image-shape", "3,32,32", "--num-classes", "10",
                        "-b", "1", *TINY, "-o", str(output))
    assert result.returncode == 0, result.stdout + result.stderr
    _check_inference_report(json.loads(output.read_text()), [1])
    assert (tmp_path / "ort-logs" / "resnet18_v1.5-float32.onnx").is_file()


@pytest.mark.parametrize("flags, message", [
    (["--only-inference", "--lr", "0.1"], "unrecognized arguments: --lr 0.1"),
    (["--only-inference", "--runtime", "onnxruntime", "--epochs-typo", "3"],
     "unrecognized arguments: --epochs-typo 3"),
    (["--only-inference", "-n", "2"], "-n is the training sweep's"),
    (["--runtime", "onnxruntime"], "add --only-inference"),
    (["--only-inference", "--onnx", "x.onnx"], "add --runtime onnxruntime"),
    (["--only-inference", "--runtime", "onnxruntime", "--data-backend", "mxnet"],
     "--data-backend mxnet reads through MXNet"),
    (["--only-inference", "--runtime", "onnxruntime", "--onnx", "x.onnx", "--dtype",
      "float16"], "--onnx sets the input shape"),
])
def test_flags_nothing_would_use_are_errors(flags, message):
    result = _benchmark(*flags)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_a_file_that_is_not_onnx_is_refused(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_text("not a model")
    result = _benchmark("--only-inference", "--runtime", "onnxruntime", "--onnx", str(bad))
    assert result.returncode == 2 and f"--onnx {bad}" in result.stderr
