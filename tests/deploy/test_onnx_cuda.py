"""ONNX Runtime's CUDA provider (marked ort_cuda: onnxruntime-gpu and a GPU, no MXNet; run on
the H200 by device/onnx_inference's session, logged in device/notes): DALI's GPU batches
bound in place give the logits of their host copies, the CUDA provider agrees with the CPU
provider, and benchmark.py measures it with the report of the MXNet runtime."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from deploy.onnx_data import next_batch, val_pipeline
from deploy.onnx_runtime import OnnxModel

pytestmark = pytest.mark.ort_cuda
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def small_classifier(tmp_path_factory):
    """A float16 convolution + pooling + dense classifier of 64x64 images (an ONNX file made
    with onnx.helper: no MXNet on the machines these tests are for)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float16) * 0.1,
                                       name)
               for name, shape in (("w", (16, 3, 3, 3)), ("fc", (10, 16)), ("b", (10,)))]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "fc", "b"], ["g"], transB=1),
             helper.make_node("Cast", ["g"], ["logits"], to=TensorProto.FLOAT)]
    graph = helper.make_graph(
        nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT16,
                                                       ["batch", 3, 64, 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("onnx") / "small.onnx"
    onnx.save(model, str(path))
    return str(path)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from benchmarking.photos import make_dataset
    root = tmp_path_factory.mktemp("photos")
    make_dataset(str(root), 64, num_classes=10)
    return str(root)


def test_dali_gpu_batches_bound_in_place_equal_their_host_copies(small_classifier, photos):
    cuda, cpu = OnnxModel(small_classifier, device="cuda"), OnnxModel(small_classifier, "cpu")
    pipe = val_pipeline(photos, cuda.input_shape, cuda.input_dtype, 8, True, 4)
    for _ in range(3):
        images, _ = next_batch(pipe, on_gpu=True)
        in_place = cuda(images)[0]
        host = np.array(images.as_cpu())
        np.testing.assert_array_equal(in_place, cuda(host)[0])
        np.testing.assert_allclose(in_place, cpu(host)[0], rtol=1e-2, atol=1e-2)


def test_benchmark_measures_the_cuda_provider_fed_by_dali(small_classifier, photos, tmp_path):
    report_path = tmp_path / "ort.json"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmark.py"), "--only-inference", "--runtime",
         "onnxruntime", "--onnx", small_classifier, "--data-backend", "dali-gpu",
         "--data-root", photos, "-b", "1,8", "-i", "5", "-e", "2", "-w", "1",
         "-o", str(report_path)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(report_path.read_text())
    assert "CUDA provider" in report["inference_runtime"] and report["failed"] == 0
    assert [(r["batch_size"], r["status"], r["iterations"]) for r in report["results"]] == [
        (1, "ok", 10), (8, "ok", 10)]
