"""Casting a network for float16 training and inference.

Convolutions and dense layers run in float16 (Tensor Cores); BatchNorm keeps float32
parameters and statistics, which cuDNN accepts next to float16 data, because its running
variance and the small gamma/beta updates lose too much in 10 mantissa bits.
"""
import numpy as np
from mxnet.gluon import nn

SUPPORTED_DTYPES = ("float32", "float16")


def check_device_support(dtype, layout, gpus):
    """Refuse what MXNet cannot run without a GPU: float16 (no CPU float16 convolutions) and
    NHWC (oneDNN has no strided NHWC convolution).

    Raises
    ------
    ValueError
        Naming the setting and what to use instead.
    """
    if gpus:
        return
    if dtype == "float16":
        raise ValueError("float16 needs a GPU and a CUDA build of MXNet (mxnet-cu112, "
                         "or NVIDIA's MXNet container on Hopper); MXNet has no float16 "
                         "convolutions on CPU. Use --dtype float32.")
    if layout == "NHWC":
        raise ValueError("NHWC needs a GPU (cuDNN); MXNet's CPU convolutions take "
                         "NCHW. Use --layout NCHW.")


def cast_network(net, dtype):
    """Cast `net` to `dtype` in place, keeping every BatchNorm in float32.

    Parameters
    ----------
    net : mxnet.gluon.Block
        An initialised network.
    dtype : str
        "float32" or "float16".

    Returns
    -------
    mxnet.gluon.Block
        The same network, for chaining.
    """
    if dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"dtype must be one of {SUPPORTED_DTYPES}, got {dtype!r}")
    net.cast(dtype)
    # Gluon's BatchNorm.cast already maps float16 to float32; check rather than trust it,
    # since a float16 running variance silently ruins accuracy.
    for block in _batch_norms(net):
        for param in block.params.values():
            if np.dtype(param.dtype) != np.float32:
                raise RuntimeError(f"{param.name} became {param.dtype} after casting to {dtype}")
    return net


def _batch_norms(block):
    if isinstance(block, nn.BatchNorm):
        yield block
    for child in block._children.values():
        yield from _batch_norms(child)
