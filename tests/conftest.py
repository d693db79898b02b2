"""Shared test settings: the repository root on sys.path, and GPU tests skipped without a GPU.

Tests marked `gpu` need a CUDA build of MXNet that sees a GPU (mxnet-cu112 on Volta to Ampere,
NVIDIA's MXNet container on Hopper); elsewhere they are reported as skipped.
"""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def pytest_collection_modifyitems(config, items):
    import mxnet as mx
    if mx.context.num_gpus() > 0:
        return
    skip = pytest.mark.skip(reason="needs an MXNet build that sees a GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def _write_tiny_recordio(prefix, count, seed):
    """A small 4-class RecordIO set (discs, squares, horizontal and vertical bars) written
    with MXNet's own writer, so the training tests need neither im2rec nor the demo."""
    import cv2
    import mxnet as mx
    import numpy as np
    rng = np.random.default_rng(seed)
    record = mx.recordio.MXIndexedRecordIO(f"{prefix}.idx", f"{prefix}.rec", "w")
    for i in range(count):
        label = i % 4
        image = np.full((48, 48, 3), rng.integers(0, 256, 3), np.uint8)
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = (int(v) for v in rng.integers(16, 32, 2))
        r = int(rng.integers(8, 14))
        if label == 0:
            cv2.circle(image, (x, y), r, color, -1)
        elif label == 1:
            cv2.rectangle(image, (x - r, y - r), (x + r, y + r), color, -1)
        elif label == 2:
            image[::8] = color
        else:
            image[:, ::8] = color
        jpeg = cv2.imencode(".jpg", image)[1].tobytes()
        record.write_idx(i, mx.recordio.pack(mx.recordio.IRHeader(0, float(label), i, 0), jpeg))
    record.close()


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A folder with train.rec/.idx (96 images) and val.rec/.idx (40 images)."""
    root = tmp_path_factory.mktemp("tiny_dataset")
    _write_tiny_recordio(str(root / "train"), 96, seed=1)
    _write_tiny_recordio(str(root / "val"), 40, seed=2)
    return root


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """`examples/demo.sh` once per session: (data folder, workspace, stdout, stderr). Its
    ResNet-18 (2 CPU workers, 8 epochs on the demo classification set) is also the backbone
    the SSD's end-to-end test starts from, as users start detectors from their classifiers."""
    import subprocess
    base = tmp_path_factory.mktemp("demo")
    data, workspace = base / "data", base / "workspace"
    result = subprocess.run([os.path.join(ROOT, "examples", "demo.sh"), str(data),
                             str(workspace), "--progress", "off"],
                            capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    # The launcher forwards each worker's stdout to its stdout ("[1]<stdout>:...") and each
    # worker's stderr to its stderr ("[1]<stderr>:..."), so both are kept.
    return data, workspace, result.stdout, result.stderr
