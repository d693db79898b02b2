"""Inference cases on CPU: timed batches, latency percentiles, clear errors."""
import io

import mxnet as mx
import pytest

from benchmarking.inference import (InferenceError, build_network, is_out_of_memory,
                                    run_inference_case)
from benchmarking.settings import Settings
from benchmarking.sweep import inference_sweep, one_line

TINY = dict(model="resnet18_v1.5", image_shape=(3, 32, 32), iterations=3, epochs=2, warmup=1,
            num_classes=10)


def _check_result(result, iterations):
    latency = result["latency_ms"]
    assert result["iterations"] == iterations
    assert result["img_per_s"] > 0 and latency["mean"] > 0
    assert latency["p50"] <= latency["p90"] <= latency["p95"] <= latency["p99"]
    assert len(result["epoch_img_per_s"]) == result["epochs"]
    assert 0 < result["cpu_share"] <= 1.05


def test_synthetic_inference_times_every_counted_batch():
    epochs_seen = []
    result = run_inference_case(Settings(**TINY), 2,
                                on_epoch=lambda *args: epochs_seen.append(args))
    _check_result(result, iterations=6)  # 2 counted epochs of 3
    assert [(e, n, warmup) for e, n, _, warmup in epochs_seen] == [(0, 3, True), (1, 3, False),
                                                                  (2, 3, False)]
    # img/s is the batch over the mean latency of the counted batches.
    assert result["img_per_s"] == pytest.approx(2 / (result["latency_ms"]["mean"] / 1000))


@pytest.mark.parametrize("backend", ["dali-cpu", "mxnet"])
def test_real_data_inference_reads_the_validation_set(tiny_dataset, backend):
    settings = Settings(data_backend=backend, data_root=str(tiny_dataset), **TINY)
    _check_result(run_inference_case(settings, 8), iterations=6)  # 40 images, 5 batches of 8


def test_network_is_hybridized_for_deployment():
    net = build_network("resnet18_v1.5", 10, "NCHW", (3, 32, 32), "float32", mx.cpu())
    flags = dict(net._flags)
    assert net._active and flags["static_alloc"] and flags["static_shape"]


def test_float16_on_cpu_is_refused_clearly():
    with pytest.raises(InferenceError, match="float16 needs a GPU"):
        run_inference_case(Settings(dtype="float16", **TINY), 2)


def test_too_few_examples_for_a_batch_is_refused():
    with pytest.raises(InferenceError, match="--num-examples 3 is less than one batch of 4"):
        run_inference_case(Settings(num_examples=3, **TINY), 4)


def test_sweep_records_each_failure_and_goes_on():
    out = io.StringIO()
    rows = list(inference_sweep(Settings(num_examples=3, **TINY), [2, 4, 1], out=out))
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
    assert "less than one batch of 4" in rows[1]["error"]
    assert rows[0]["iterations"] == 2  # 3 examples: one batch of 2 per epoch, 2 epochs
    assert "[3/3] inference" in out.getvalue()


def test_out_of_memory_errors_are_recognised():
    gpu_error = mx.base.MXNetError("Traceback (most recent call last):\n  File \"x.h\", line 1\n"
                                   "MXNetError: cudaMalloc retry failed: out of memory\n")
    assert is_out_of_memory(gpu_error) and is_out_of_memory(MemoryError())
    assert not is_out_of_memory(ValueError("bad shape"))
    assert one_line(gpu_error) == "MXNetError: MXNetError: cudaMalloc retry failed: out of memory"
