"""ResNet v1.5: sizes, where the strides are, float16 casting, the registry."""
import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon import nn

import models
from models.resnet import BottleneckV15


def _build(name, classes=1000, layout="NCHW", shape=(1, 3, 224, 224)):
    net = models.get_model(name, classes=classes, layout=layout)
    net.initialize(models.default_initializer())
    net(mx.nd.zeros(shape))
    return net


def _trainable_count(net):
    return sum(p.data().size for p in net.collect_params().values() if p.grad_req != "null")


@pytest.mark.parametrize("name, expected", [
    ("resnet50_v1.5", 25_557_032),   # the published ResNet-50 count
    ("resnet18_v1.5", 11_689_512),   # torchvision's resnet18
    ("resnet101_v1.5", 44_549_160),  # torchvision's resnet101
])
def test_parameter_count(name, expected):
    assert _trainable_count(_build(name, shape=(1, 3, 64, 64))) == expected


def test_stride_sits_on_the_3x3_convolution():
    net = _build("resnet50_v1.5", shape=(1, 3, 64, 64))
    stage2_first = net.features[5][0]  # stem is 4 blocks, stage 1 is index 4
    assert isinstance(stage2_first, BottleneckV15)
    convs = [b for b in stage2_first.body if isinstance(b, nn.Conv2D)]
    assert [c._kwargs["kernel"] for c in convs] == [(1, 1), (3, 3), (1, 1)]
    assert [c._kwargs["stride"] for c in convs] == [(1, 1), (2, 2), (1, 1)]
    assert stage2_first.shortcut.conv._kwargs["stride"] == (2, 2)


def test_feature_map_sizes_halve_per_stage():
    net = _build("resnet50_v1.5", shape=(1, 3, 224, 224))
    x = mx.nd.zeros((1, 3, 224, 224))
    sizes = []
    for block in net.features:
        x = block(x)
        sizes.append(x.shape[1:])
    assert (256, 56, 56) in sizes and (512, 28, 28) in sizes
    assert (1024, 14, 14) in sizes and (2048, 7, 7) in sizes
    assert net(mx.nd.zeros((2, 3, 224, 224))).shape == (2, 1000)


def test_float16_cast_keeps_batchnorm_float32_and_float32_logits():
    net = _build("resnet18_v1.5", classes=10, shape=(1, 3, 32, 32))
    models.cast_network(net, "float16")
    dtypes = {name: np.dtype(p.dtype) for name, p in net.collect_params().items()}
    batchnorm = [n for n in dtypes if "batchnorm" in n]
    convs = [n for n in dtypes if "conv" in n and n.endswith("weight")]
    assert batchnorm and convs
    assert all(dtypes[n] == np.float32 for n in batchnorm)
    assert all(dtypes[n] == np.float16 for n in convs)
    assert dtypes["resnet18_v15_dense0_weight"] == np.float16
    # The graph ends in amp_cast to float32, so the exported symbol carries it too.
    net.hybridize()
    assert "amp_cast" in net(mx.sym.var("data")).tojson()


@pytest.mark.gpu
def test_nhwc_matches_nchw_on_gpu():
    # oneDNN has no NHWC strided convolution, so NHWC is a GPU (cuDNN) layout.
    ctx = mx.gpu(0)
    nchw = models.get_model("resnet18_v1.5", classes=10)
    nchw.initialize(models.default_initializer(), ctx=ctx)
    nchw(mx.nd.zeros((1, 3, 32, 32), ctx=ctx))
    nhwc = models.get_model("resnet18_v1.5", classes=10, layout="NHWC")
    nhwc.initialize(ctx=ctx)
    nhwc(mx.nd.zeros((1, 32, 32, 3), ctx=ctx))
    for (_, src), (_, dst) in zip(sorted(nchw.collect_params().items()),
                                  sorted(nhwc.collect_params().items())):
        value = src.data()
        if value.ndim == 4:  # OIHW -> OHWI
            value = value.transpose((0, 2, 3, 1))
        dst.set_data(value)
    x = mx.nd.random.uniform(shape=(2, 3, 32, 32), ctx=ctx)
    expected = nchw(x).asnumpy()
    got = nhwc(x.transpose((0, 2, 3, 1))).asnumpy()
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)


@pytest.mark.gpu
def test_float16_forward_backward_on_gpu():
    ctx = mx.gpu(0)
    net = models.get_model("resnet18_v1.5", classes=10)
    net.initialize(models.default_initializer(), ctx=ctx)
    net(mx.nd.zeros((1, 3, 32, 32), ctx=ctx))
    models.cast_network(net, "float16")
    x = mx.nd.random.uniform(shape=(4, 3, 32, 32), ctx=ctx, dtype="float16")
    with mx.autograd.record():
        logits = net(x)
        logits.sum().backward()
    assert logits.dtype == np.float32
    assert np.isfinite(logits.asnumpy()).all()
    weight = net.collect_params()["resnet18_v15_conv0_weight"]
    assert weight.grad().dtype == np.float16 and float(weight.grad().abs().sum().asscalar()) > 0


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError) as error:
        models.get_model("resnet51")
    for name in ("resnet18_v1.5", "resnet50_v1.5", "resnet152_v1.5"):
        assert name in str(error.value)


def test_cast_network_rejects_unsupported_dtype():
    net = _build("resnet18_v1.5", classes=10, shape=(1, 3, 32, 32))
    with pytest.raises(ValueError, match="bfloat16"):
        models.cast_network(net, "bfloat16")


def test_cpu_refuses_float16_and_nhwc_with_the_alternative():
    with pytest.raises(ValueError, match="float16 needs a GPU.*--dtype float32"):
        models.check_device_support("float16", "NCHW", gpus=0)
    with pytest.raises(ValueError, match="NHWC needs a GPU.*--layout NCHW"):
        models.check_device_support("float32", "NHWC", gpus=0)
    models.check_device_support("float16", "NHWC", gpus=1)
    models.check_device_support("float32", "NCHW", gpus=0)
