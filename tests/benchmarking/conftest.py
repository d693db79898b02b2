"""A small COCO-format detection set for the SSD benchmark tests (made once per session)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def coco_demo(tmp_path_factory):
    """The demo detection set: 16 training and 4 validation images of 128x128, 5 classes."""
    out = tmp_path_factory.mktemp("coco_demo") / "det"
    subprocess.run([sys.executable, "-m", "data.demo", "detection", "--out", str(out),
                    "--train-images", "16", "--val-images", "4", "--size", "128",
                    "--no-progress"], cwd=ROOT, check=True, capture_output=True, timeout=300)
    return str(out)
