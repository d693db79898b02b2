"""Loading ``ops/lib/libmxops.so`` into MXNet, once per process."""
import json
import os

LIB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib")
LIB_PATH = os.path.join(LIB_DIR, "libmxops.so")

_state = {"loaded": False, "ctypes": None}


class LibraryNotBuilt(ImportError):
    """The operator library has not been built yet."""


def load():
    """Loads the operator library into MXNet (idempotent) and returns its path.

    Raises
    ------
    LibraryNotBuilt
        If ``ops/lib/libmxops.so`` does not exist; the message says how to build it.
    """
    if _state["loaded"]:
        return LIB_PATH
    if not os.path.exists(LIB_PATH):
        raise LibraryNotBuilt(
            "ops: {} is not built. Build it from the repository root with "
            "`python -m ops.build` (part of `make setup`; needs g++, and nvcc for the GPU "
            "kernels).".format(LIB_PATH))
    import ctypes
    import mxnet as mx
    mx.library.load(LIB_PATH, verbose=False)
    _state["ctypes"] = ctypes.CDLL(LIB_PATH)  # same handle as MXNet's dlopen
    _state["loaded"] = True
    return LIB_PATH


def handle():
    """ctypes handle of the loaded library (for functions outside the MXNet op API)."""
    load()
    return _state["ctypes"]


def build_info():
    """What ``python -m ops.build`` produced: CUDA or not, architectures, nvcc, errors."""
    path = os.path.join(LIB_DIR, "build_info.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)
