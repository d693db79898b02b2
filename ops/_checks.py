"""Argument checks and the NDArray/Symbol dispatch shared by the public functions.

Checks run on NDArrays, whose shapes are known; Symbols are checked by the operators'
shape inference when the graph is bound (with the same messages).
"""
import mxnet as mx
import numpy as np

from . import _library


def module_of(x):
    """``mx.sym`` for a Symbol, ``mx.nd`` for an NDArray, as Gluon's ``F``; loads the library."""
    _library.load()
    if isinstance(x, mx.sym.Symbol):
        return mx.sym
    if isinstance(x, mx.nd.NDArray):
        return mx.nd
    raise TypeError("expected an mxnet NDArray or Symbol, got {}".format(type(x).__name__))


def is_nd(x):
    return isinstance(x, mx.nd.NDArray)


def check_array(x, name, shapes, dtype="float32"):
    """Checks an NDArray's dtype and shape; shapes is a list of patterns such as
    ("N", 4) or ("B", "N", 4) (strings match any size). Returns the matching pattern."""
    if not is_nd(x):
        return None
    if np.dtype(x.dtype) != np.dtype(dtype):
        raise TypeError("{} must be {}, got {} (cast with .astype('{}'))".format(
            name, dtype, np.dtype(x.dtype).name, dtype))
    for pattern in shapes:
        if len(pattern) == x.ndim and all(isinstance(p, str) or p == s
                                          for p, s in zip(pattern, x.shape)):
            return pattern
    raise ValueError("{} must have shape {}, got {}".format(
        name, " or ".join(str(tuple(p)).replace("'", "") for p in shapes), x.shape))


def check_same(sizes, what):
    """Raises unless every (name, size) pair has the same size."""
    vals = {s for _, s in sizes}
    if len(vals) > 1:
        raise ValueError("{} disagree: {}".format(
            what, ", ".join("{}={}".format(n, s) for n, s in sizes)))


def check_four(values, name):
    values = tuple(float(v) for v in values)
    if len(values) != 4:
        raise ValueError("{} needs 4 values, got {}".format(name, len(values)))
    return values
