"""ops.build: the CUDA sources compile where nvcc exists (so CI keeps them compiling), the
build is incremental, and a failing or missing nvcc leaves a working CPU library."""
import os
import shutil
import stat

import numpy as np
import pytest

from ops import _library, abi, build


def test_builds_cuda_when_nvcc_is_present(capsys):
    info = build.build()
    assert os.path.exists(info["mxnet_library"]) and os.path.exists(info["kernels_library"])
    if build.find_nvcc() is None:
        assert not info["cuda"] and "nvcc not found" in info["cuda_error"]
        return
    assert info["cuda"], info["cuda_error"]
    assert info["archs"] and set(info["archs"]) <= {"sm_70", "sm_75", "sm_80", "sm_86",
                                                    "sm_90"}
    kernels = abi.load_kernels(info["kernels_library"])
    assert kernels.has_cuda
    assert all(hasattr(kernels, name) for name in abi.cuda_signatures())


def test_second_build_does_nothing(capsys):
    build.build()
    capsys.readouterr()
    build.build()
    out = capsys.readouterr().out
    assert "compiling" not in out and "linking" not in out, out


def cpu_only_build(tmp_path, nvcc):
    """A kernels-only build in tmp_path reusing the CPU objects already compiled."""
    shutil.copytree(os.path.join(build.DEFAULT_OUT, "obj", "cpu"),
                    os.path.join(tmp_path, "obj", "cpu"))
    return build.build(str(tmp_path), kernels_only=True, nvcc=nvcc)


def check_cpu_library(path):
    kernels = abi.load_kernels(path)
    assert not kernels.has_cuda
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 5, 10]], np.float32)
    out = np.zeros((1, 1), np.float32)
    kernels.check(kernels.mxops_box_iou_cpu(a.ctypes.data, b.ctypes.data, out.ctypes.data,
                                            1, 1, 1, 0.0))
    assert out[0, 0] == 0.5


def test_failing_nvcc_falls_back_to_cpu(tmp_path, capsys):
    fake = tmp_path / "nvcc"
    fake.write_text("#!/bin/sh\ncase \"$*\" in *--list-gpu-arch*) echo compute_90;;\n"
                    "*) echo 'simulated nvcc failure' >&2; exit 1;; esac\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    info = cpu_only_build(tmp_path / "out", str(fake))
    assert not info["cuda"] and "simulated nvcc failure" in info["cuda_error"]
    assert "WARNING: building CPU-only libraries" in capsys.readouterr().out
    check_cpu_library(info["kernels_library"])


def test_missing_nvcc_falls_back_to_cpu(tmp_path, capsys):
    info = cpu_only_build(tmp_path / "out", str(tmp_path / "no-such-nvcc"))
    assert not info["cuda"] and "nvcc not found" in info["cuda_error"]
    check_cpu_library(info["kernels_library"])


def test_missing_library_says_how_to_build(tmp_path, monkeypatch):
    monkeypatch.setattr(_library, "LIB_PATH", str(tmp_path / "libmxops.so"))
    monkeypatch.setitem(_library._state, "loaded", False)
    with pytest.raises(_library.LibraryNotBuilt, match="python -m ops.build"):
        _library.load()


def test_library_loads_next_to_horovod_in_either_order():
    """Every worker imports horovod.mxnet (which carries its own copy of MXNet's lib_api)
    before a detection task loads ops/; without -Bsymbolic that died of SIGFPE."""
    import subprocess
    import sys
    check = ("import mxnet as mx\n{first}\n{second}\n"
             "print(ops.box_iou(mx.nd.array([[0, 0, 2, 2]]), mx.nd.array([[0, 1, 2, 2]]))"
             ".asnumpy()[0, 0])")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for first, second in (("import horovod.mxnet", "import ops"),
                          ("import ops", "import horovod.mxnet")):
        result = subprocess.run([sys.executable, "-c", check.format(first=first, second=second)],
                                cwd=root, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, (first, second, result.stderr[-2000:])
        assert result.stdout.strip() == "0.5"
