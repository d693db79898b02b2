"""ONNX export round trip on CPU (python -m deploy.onnx_export): ONNX Runtime's output equals
MXNet's for the classifiers, at several batch sizes of one file (a dynamic batch dimension)."""
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import onnx
import onnxruntime
import pytest

import models
from deploy.onnx_export import TOLERANCE, check_onnx, export_onnx, passes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHAPE = (3, 64, 64)


@pytest.mark.parametrize("arch", ["resnet18_v1.5", "resnet50_v1.5"])
def test_onnx_runtime_gives_mxnets_logits_at_any_batch(arch, tmp_path):
    net = models.build_network(arch, 10, "NCHW", SHAPE, "float32", mx.cpu(), seed=5)
    path = export_onnx(net, SHAPE, str(tmp_path / "model.onnx"))
    model = onnx.load(path)
    (data,) = model.graph.input  # the images alone: the weights are not inputs
    dims = data.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == list(SHAPE)
    results = check_onnx(net, path, SHAPE, [1, 5])
    assert [batch for batch, _, _ in results] == [1, 5]
    assert passes(results), results
    # The check can fail: another network's logits are not these.
    other = models.build_network(arch, 10, "NCHW", SHAPE, "float32", mx.cpu(), seed=6)
    assert not passes(check_onnx(other, path, SHAPE, [2]))


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

    wrong = command[:]
    wrong[wrong.index("4")] = "7"  # the checkpoint has 4 classes
    result = subprocess.run(wrong, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "does not fit this network" in result.stderr
