"""device/ops_kernels.py where there is no GPU (nor torch): it parses its arguments, and its
numpy input generators for paste_masks make what its checks assume."""
import subprocess
import sys

import numpy as np

from device import ops_kernels


def test_help_needs_no_torch_nor_gpu():
    proc = subprocess.run([sys.executable, "-m", "device.ops_kernels", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--skip-timing" in proc.stdout and "--lib" in proc.stdout


def test_paste_inputs():
    rng = np.random.default_rng(0)
    masks = ops_kernels.blob_masks(rng, 16, 28)
    assert masks.shape == (16, 28, 28) and masks.dtype == np.float32
    assert 0 <= masks.min() and masks.max() <= 1 and (masks > 0.5).any()
    boxes = ops_kernels.detection_boxes(rng, 16, 480, 640, awkward=True)
    assert boxes.shape == (16, 4) and boxes.dtype == np.float32
    assert np.isnan(boxes).any() and (boxes[:, 2] == boxes[:, 0]).any()
    assert np.isfinite(ops_kernels.detection_boxes(rng, 16, 480, 640)).all()
