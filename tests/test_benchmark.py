"""benchmark.py end to end: a tiny training + inference sweep on CPU, failures that are
named while the sweep goes on, --compare, --help."""
import json
import os
import subprocess
import sys

import mxnet as mx
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--model", "resnet18_v1.5", "--image-shape", "3,32,32", "--num-classes", "10",
        "-i", "3", "-e", "1", "-w", "1"]


def _benchmark(*args, timeout=600):
    return subprocess.run([sys.executable, os.path.join(ROOT, "benchmark.py"), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.mark.slow
def test_tiny_sweep_report_schema_and_values(tmp_path):
    output = tmp_path / "report.json"
    result = _benchmark("-n", "1,2", "-b", "2,4", *TINY, "-o", str(output))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(output.read_text())

    assert report["kind"] == "training+inference"
    assert report["model"] == "resnet18_v1.5" and report["dtype"] == "float32"
    assert report["device"].startswith("CPU (") and report["failed"] == 0
    machine = report["machine"]
    assert machine["cpu_model"] and machine["cpu_cores"] >= 1 and machine["gpus"] == []
    assert machine["versions"]["mxnet"] == mx.__version__
    assert machine["versions"]["nvidia-dali"] and machine["versions"]["horovod"]
    # MXNet computes inference on every core (its default would be half of them).
    assert report["inference_threads"] == int(os.environ.get("OMP_NUM_THREADS",
                                                             machine["cpu_cores"]))
    settings = report["settings"]
    assert settings["iterations"] == 3 and settings["epochs"] == 1 and settings["warmup"] == 1
    assert settings["image_shape"] == [3, 32, 32] and settings["data_backend"] == "synthetic"

    training = [r for r in report["results"] if r["mode"] == "training"]
    assert [(r["workers"], r["batch_size"]) for r in training] == [(1, 2), (1, 4), (2, 2),
                                                                   (2, 4)]
    for row in training:
        assert row["status"] == "ok"
        assert row["iterations"] == 3 and row["epochs"] == 1  # the warm-up epoch dropped
        assert row["img_per_s"] > 0 and row["iter_ms"] > 0 and row["data_wait_ms"] >= 0
        # images/s is the global batch over the mean iteration time
        assert row["img_per_s"] == pytest.approx(
            1000 * row["workers"] * row["batch_size"] / row["iter_ms"])
        assert row["speedup"] > 0 and row["scaling_efficiency"] > 0
    assert [r["speedup"] for r in training if r["workers"] == 1] == [1.0, 1.0], training

    inference = [r for r in report["results"] if r["mode"] == "inference"]
    assert [r["batch_size"] for r in inference] == [2, 4]
    for row in inference:
        latency = row["latency_ms"]
        assert row["status"] == "ok" and row["img_per_s"] > 0 and row["iterations"] == 3
        assert 0 < latency["p50"] <= latency["p90"] <= latency["p95"] <= latency["p99"]

    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(os.listdir(tmp_path / "report-logs")) == [
        "train-n1-b2.log", "train-n1-b4.log", "train-n2-b2.log", "train-n2-b4.log"]
    assert "Training: images/s" in result.stdout and "Inference: images/s" in result.stdout
    assert "[4/4] training" in result.stderr and "[2/2] inference" in result.stderr


@pytest.mark.skipif(mx.context.num_gpus() > 0, reason="float16 runs where there is a GPU")
def test_combinations_that_cannot_run_are_named_and_the_sweep_goes_on(tmp_path):
    output = tmp_path / "report.json"
    result = _benchmark("-n", "1", "-b", "2,4", "--dtype", "float16", *TINY,
                        "-o", str(output))
    assert result.returncode == 1
    report = json.loads(output.read_text())
    rows = report["results"]
    assert [(r["mode"], r["batch_size"], r["status"]) for r in rows] == [
        ("training", 2, "failed"), ("training", 4, "failed"),
        ("inference", 2, "failed"), ("inference", 4, "failed")]
    assert all("float16 needs" in r["error"] for r in rows)
    assert report["failed"] == 4
    assert "training n=1 b=4: failed: runner: error: float16 needs a GPU" in result.stdout
    assert "inference b=2: failed: InferenceError: float16 needs a GPU" in result.stdout


def _write(path, rows):
    path.write_text(json.dumps({"kind": "inference", "model": "resnet50_v1.5",
                                "dtype": "float32", "device": "CPU", "results": rows}))


def test_compare_prints_ratios_of_two_reports(tmp_path):
    def row(batch, img_per_s, p50, p99):
        return {"mode": "inference", "workers": 1, "batch_size": batch, "status": "ok",
                "img_per_s": img_per_s,
                "latency_ms": {"mean": p50, "p50": p50, "p90": p99, "p95": p99, "p99": p99}}
    _write(tmp_path / "a.json", [row(1, 10.0, 100.0, 110.0), row(8, 40.0, 200.0, 220.0)])
    _write(tmp_path / "b.json", [row(1, 15.0, 66.0, 88.0), row(8, 30.0, 266.0, 330.0)])
    result = _benchmark("--compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"))
    assert result.returncode == 0, result.stderr
    lines = {" ".join(line.split()[:2]): line.split()[2:] for line in result.stdout.splitlines()
             if line.startswith("inference")}
    assert lines["inference b=1"] == ["10.0", "15.0", "1.50", "0.66", "0.80"]
    assert lines["inference b=8"] == ["40.0", "30.0", "0.75", "1.33", "1.50"]


def test_help_explains_every_flag():
    result = _benchmark("--help")
    assert result.returncode == 0
    for flag in ("-n", "-b", "-i", "-e", "-w", "--num-examples", "--only-inference",
                 "--only-training", "--dtype", "--data-backend", "--data-root", "--model",
                 "--image-shape", "-o", "--compare", "--loaders", "--make-data",
                 "--num-images", "--verbose", "--layout", "--num-classes"):
        assert f"  {flag}" in result.stdout or f" {flag} " in result.stdout, flag
    assert "--runner" not in result.stdout  # internal, for tests


def test_unknown_model_and_missing_loader_data_are_refused(tmp_path):
    result = _benchmark("--model", "resnet51", "--only-inference")
    assert result.returncode == 2 and "valid names: " in result.stderr
    assert "resnet101_v1.5" in result.stderr.split("valid names: ")[1]
    result = _benchmark("--loaders", "--data-root", str(tmp_path))
    assert result.returncode == 2 and "--make-data" in result.stderr
