"""Shared test settings: the repository root on sys.path, and GPU tests skipped without a GPU.

Tests marked `gpu` need a CUDA build of MXNet that sees a GPU (mxnet-cu112 on Volta to Ampere,
NVIDIA's MXNet container on Hopper); tests marked `ort_cuda` need ONNX Runtime's CUDA provider
(onnxruntime-gpu) and no MXNet, so they run on Hopper machines too (device/notes). Elsewhere
they are reported as skipped.
"""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def pytest_collection_modifyitems(config, items):
    skips = {}
    if not _mxnet_sees_a_gpu():
        skips["gpu"] = pytest.mark.skip(reason="needs an MXNet build that sees a GPU")
    if not _onnxruntime_has_cuda():
        skips["ort_cuda"] = pytest.mark.skip(reason="needs onnxruntime-gpu and a GPU")
    for item in items:
        for marker, skip in skips.items():
            if marker in item.keywords:
                item.add_marker(skip)


def _mxnet_sees_a_gpu():
    try:
        import mxnet as mx
    except ImportError:  # a GPU machine without MXNet (Hopper): only ort_cuda tests run
        return False
    return mx.context.num_gpus() > 0


def _onnxruntime_has_cuda():
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


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


# Records of `_write_damaged_recordio` by key, as users' old .rec files hold them. DALI 2.4 and
# ImageRecordIter decode the PNG and the CMYK JPEG; DALI fails on the other three (and
# ImageRecordIter on the random bytes and the empty record).
DAMAGED = {3: "truncated JPEG", 10: "random bytes", 20: "PNG", 30: "CMYK JPEG",
           40: "zero-length image"}
BAD_KEYS = (3, 10, 40)


def _write_damaged_recordio(prefix, count=64, unique_labels=False):
    """`count` records of the tiny set's images written with MXNet's own writer (as MXNet's
    tools/im2rec.py writes whatever bytes it is given), with the records of `DAMAGED` in
    place of theirs. Labels are key % 4, or the key with `unique_labels`."""
    import cv2
    import mxnet as mx
    import numpy as np
    from tests.data.test_im2rec import cmyk_jpeg
    _write_tiny_recordio(prefix + ".good", count, seed=3)
    good = mx.recordio.MXIndexedRecordIO(prefix + ".good.idx", prefix + ".good.rec", "r")
    record = mx.recordio.MXIndexedRecordIO(f"{prefix}.idx", f"{prefix}.rec", "w")
    for key in range(count):
        _, jpeg = mx.recordio.unpack(good.read_idx(key))
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        kind = DAMAGED.get(key)
        if kind == "truncated JPEG":
            jpeg = jpeg[:len(jpeg) // 2]
        elif kind == "random bytes":
            jpeg = np.random.default_rng(key).integers(0, 256, 2000, np.uint8).tobytes()
        elif kind == "PNG":
            jpeg = cv2.imencode(".png", image)[1].tobytes()
        elif kind == "CMYK JPEG":
            jpeg = cmyk_jpeg([image[:, :, 0], image[:, :, 1], image[:, :, 2], image[:, :, 0]])
        elif kind == "zero-length image":
            jpeg = b""
        label = float(key if unique_labels else key % 4)
        record.write_idx(key, mx.recordio.pack(mx.recordio.IRHeader(0, label, key, 0), jpeg))
    record.close()
    good.close()
    for ext in (".good.rec", ".good.idx"):
        os.remove(prefix + ext)


@pytest.fixture(scope="session")
def damaged_dataset(tmp_path_factory):
    """train.rec/.idx and val.rec/.idx of 64 records each with the records of `DAMAGED`
    (labels key % 4; read only: copy it before repairing)."""
    root = tmp_path_factory.mktemp("damaged_dataset")
    for split in ("train", "val"):
        _write_damaged_recordio(str(root / split))
    return root


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


@pytest.fixture(scope="session")
def demo_detection(tmp_path_factory):
    """The demo detection set of the end-to-end detector tests (SSD, Mask R-CNN), made once
    per session: 256 training and 32 validation images of 128x128 with polygon masks."""
    import subprocess
    out = tmp_path_factory.mktemp("demo_detection") / "det"
    subprocess.run([sys.executable, "-m", "data.demo", "detection", "--out", str(out),
                    "--train-images", "256", "--val-images", "32", "--size", "128",
                    "--no-progress"], cwd=ROOT, check=True, capture_output=True, timeout=300)
    return out
