"""ctypes bindings of the C ABI in ``csrc/mxops.h`` (no MXNet needed).

``load_kernels(path)`` opens ``libmxops_kernels.so`` (or ``libmxops.so``, which holds the same
symbols) and declares every function it finds, so a harness can call the kernels on raw
pointers: ``arr.ctypes.data`` for numpy, ``t.data_ptr()`` for torch or CuPy.
Pointer arguments are ``c_void_p``; pass ``None`` for an optional one.
"""
import ctypes
import os

P = ctypes.c_void_p
I64 = ctypes.c_int64
F32 = ctypes.c_float
INT = ctypes.c_int
SIZE = ctypes.c_size_t
U64 = ctypes.c_uint64

# name: (restype, argtypes) of the CPU kernels; the CUDA twin of a kernel takes the same
# arguments plus (workspace, workspace_bytes) where it has a *_cuda_workspace function, then
# the stream.
CPU_SIGNATURES = {
    "mxops_box_iou_cpu": (INT, [P, P, P, I64, I64, I64, F32]),
    "mxops_match_cpu": (INT, [P, INT, P, P, P, P, I64, I64, I64, F32, F32, INT, F32, F32]),
    "mxops_sample_cpu": (INT, [P, P, P, I64, I64, I64, F32, U64]),
    "mxops_anchors_cpu": (INT, [P, INT, P, P, P, P, INT, P, INT]),
    "mxops_box_encode_cpu": (INT, [P, INT, P, P, P, P, I64, I64, I64, P, P, F32]),
    "mxops_box_decode_cpu": (INT, [P, P, INT, P, P, I64, I64, P, P, F32, F32]),
    "mxops_nms_cpu": (INT, [P, P, P, P, I64, I64, F32, I64, F32]),
    "mxops_proposals_cpu": (INT, [P, P, P, INT, P, P, P, I64, I64, I64, I64, F32, F32, F32]),
    "mxops_polygon_masks_cpu": (INT, [P, P, P, P, P, I64, I64, I64, I64, I64]),
    "mxops_paste_masks_cpu": (INT, [P, P, P, I64, I64, I64, I64, F32, INT]),
}
WORKSPACE_SIGNATURES = {
    "mxops_match_cuda_workspace": (SIZE, [I64, I64, I64]),
    "mxops_sample_cuda_workspace": (SIZE, [I64, I64]),
    "mxops_nms_cuda_workspace": (SIZE, [I64, I64, I64]),
    "mxops_proposals_cuda_workspace": (SIZE, [I64, I64, INT, P, I64, I64]),
}
OTHER_SIGNATURES = {
    "mxops_status_string": (ctypes.c_char_p, [INT]),
    "mxops_cuda_status_string": (ctypes.c_char_p, [INT]),
    "mxops_anchors_count": (I64, [INT, P, P, INT, INT]),
}


def cuda_signatures():
    """Signatures of the *_cuda functions, derived from the CPU ones."""
    sigs = {}
    for name, (res, args) in CPU_SIGNATURES.items():
        base = name[:-len("_cpu")]
        extra = [P, SIZE] if base + "_cuda_workspace" in WORKSPACE_SIGNATURES else []
        sigs[base + "_cuda"] = (res, args + extra + [P])
    return sigs


class KernelError(RuntimeError):
    """A kernel returned a non-zero status."""


class Kernels:
    """The functions of one loaded library, with ``has_cuda`` telling whether the CUDA
    kernels are present. Call them as attributes; ``check(status, name)`` raises on error."""

    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.lib = ctypes.CDLL(self.path)
        self.has_cuda = hasattr(self.lib, "mxops_box_iou_cuda")
        sigs = dict(CPU_SIGNATURES, **OTHER_SIGNATURES)
        if self.has_cuda:
            sigs.update(WORKSPACE_SIGNATURES)
            sigs.update(cuda_signatures())
        for name, (res, args) in sigs.items():
            if hasattr(self.lib, name):
                fn = getattr(self.lib, name)
                fn.restype, fn.argtypes = res, args
                setattr(self, name, fn)

    def status_string(self, status):
        fn = (self.mxops_cuda_status_string if self.has_cuda else self.mxops_status_string)
        return fn(status).decode()

    def check(self, status, name="kernel"):
        if status != 0:
            raise KernelError("{} failed with status {}: {}".format(
                name, status, self.status_string(status)))


def load_kernels(path=None):
    """Loads the kernels library (default: ops/lib/libmxops_kernels.so)."""
    if path is None:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib",
                            "libmxops_kernels.so")
    if not os.path.exists(path):
        raise OSError("{} is missing: build it with `python -m ops.build` (or "
                      "`python ops/build.py --kernels-only` where MXNet is absent)".format(path))
    return Kernels(path)
