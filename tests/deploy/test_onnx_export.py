"""ONNX export round trip on CPU (python -m deploy.onnx_export): ONNX Runtime's output equals
MXNet's for the classifiers, float32 and float16, at several batch sizes of one file (a
dynamic batch dimension), with BatchNorm folded; SSD's raw outputs, decoded after the file,
give the network's detections."""
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import onnx
import onnxruntime
import pytest

import models
from deploy.onnx_export import TOLERANCE, TOLERANCES, check_onnx, export_onnx, passes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHAPE = (3, 64, 64)


def _input(model):
    (data,) = model.graph.input  # the images alone: the weights are not inputs
    return data


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("arch", ["resnet18_v1.5", "resnet50_v1.5"])
def test_onnx_runtime_gives_mxnets_logits_at_any_batch(arch, dtype, tmp_path):
    net = models.build_network(arch, 10, "NCHW", SHAPE, "float32", mx.cpu(), seed=5)
    path = export_onnx(net, SHAPE, str(tmp_path / "model.onnx"), dtype)
    model = onnx.load(path)
    data = _input(model)
    dims = data.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == list(SHAPE)
    expected_type = onnx.TensorProto.FLOAT16 if dtype == "float16" else onnx.TensorProto.FLOAT
    assert data.type.tensor_type.elem_type == expected_type
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    ops = {node.op_type for node in model.graph.node}
    assert "BatchNormalization" not in ops and "Conv" in ops  # folded into the convolutions
    results = check_onnx(net, path, SHAPE, [1, 5])
    assert [batch for batch, _, _ in results] == [1, 5]
    assert passes(results, TOLERANCES[dtype]), results
    # The check can fail: another network's logits are not these.
    other = models.build_network(arch, 10, "NCHW", SHAPE, "float32", mx.cpu(), seed=6)
    assert not passes(check_onnx(other, path, SHAPE, [2]), TOLERANCES[dtype])


def test_float16_file_halves_the_weights(tmp_path):
    net = models.build_network("resnet18_v1.5", 10, "NCHW", SHAPE, "float32", mx.cpu())
    sizes = {dtype: os.path.getsize(export_onnx(net, SHAPE, str(tmp_path / f"{dtype}.onnx"),
                                                dtype))
             for dtype in ("float32", "float16")}
    assert sizes["float16"] == pytest.approx(sizes["float32"] / 2, rel=0.02)


def test_ssd_raw_outputs_decode_to_the_networks_detections(tmp_path):
    shape = (3, 128, 128)
    net = models.build_network("ssd128_resnet18_fpn64", 3, "NCHW", shape, "float32",
                               mx.cpu(), image_size=(128, 128), seed=2)
    path = export_onnx(net, shape, str(tmp_path / "ssd.onnx"))
    outputs = onnx.load(path).graph.output
    anchors = net.anchors().shape[0]
    assert [[d.dim_value for d in o.type.tensor_type.shape.dim][1:] for o in outputs] == [
        [anchors, 3], [anchors, 4]]
    assert passes(check_onnx(net, path, shape, [1, 3]))

    images = np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    cls_logits, box_deltas = session.run(None, {session.get_inputs()[0].name: images})
    # No score threshold: an untrained head scores near its prior, below the default 0.05.
    detections = models.ssd.decode_detections(mx.nd.array(cls_logits), mx.nd.array(box_deltas),
                                              net.anchors(), (128, 128), score_thresh=0.0)
    expected = net.detect(mx.nd.array(images), score_thresh=0.0)
    assert (expected[:, :, 1] >= 0).sum().asscalar() > 0  # some detections to compare
    np.testing.assert_allclose(detections.asnumpy(), expected.asnumpy(), atol=1e-4)


def test_the_command_exports_a_checkpoint_and_refuses_wrong_weights(tmp_path):
    net = models.build_network("resnet18_v1.5", 4, "NCHW", SHAPE, "float32", mx.cpu(), seed=1)
    net.save_parameters(str(tmp_path / "model.params"))
    command = [sys.executable, "-m", "deploy.onnx_export", str(tmp_path / "model.params"),
               "--arch", "resnet18_v1.5", "--num-classes", "4", "--image-shape", "3,64,64",
               "--out", str(tmp_path / "rn18.onnx"), "--check-batches", "1,3"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "batch 3" in result.stdout and "wrote" in result.stdout
    session = onnxruntime.InferenceSession(str(tmp_path / "rn18.onnx"),
                                           providers=["CPUExecutionProvider"])
    image = np.zeros((1, *SHAPE), np.float32)
    np.testing.assert_allclose(session.run(None, {session.get_inputs()[0].name: image})[0],
                               net(mx.nd.array(image)).asnumpy(), atol=TOLERANCE * 10)

    half = command[:-4] + ["--out", str(tmp_path / "rn18-fp16.onnx"), "--dtype", "float16"]
    result = subprocess.run(half, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "(float16" in result.stdout, result.stderr

    wrong = command[:]
    wrong[wrong.index("4")] = "7"  # the checkpoint has 4 classes
    result = subprocess.run(wrong, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "does not fit this network" in result.stderr
