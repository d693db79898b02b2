"""ResNet v1.5 (He et al., "Deep Residual Learning for Image Recognition", 2015, with the
stride of each down-sampling bottleneck moved from the first 1x1 to the 3x3 convolution).

v1.5 is the variant NVIDIA's and torchvision's ImageNet recipes train: about 0.5% more top-1
than v1 for about 5% more compute. Blocks take the data layout explicitly ("NCHW" or "NHWC";
NHWC runs only on GPUs through cuDNN) so that the same code serves both.
"""
from mxnet import init
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

# (block type, units per stage) for each depth; the channel widths are the paper's.
_STAGE_UNITS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
_STAGE_WIDTHS = (64, 128, 256, 512)


def _channel_axis(layout):
    return layout.index("C")


def _conv(channels, kernel, stride, layout):
    # No bias: every convolution is followed by BatchNorm, whose beta plays that role.
    return nn.Conv2D(channels, kernel, strides=stride, padding=kernel // 2,
                     use_bias=False, layout=layout)


def _batch_norm(layout, zero_gamma=False):
    # zero_gamma starts a residual branch as the identity ("Bag of Tricks", Goyal et al.).
    return nn.BatchNorm(axis=_channel_axis(layout),
                        gamma_initializer="zeros" if zero_gamma else "ones")


class _Shortcut(HybridBlock):
    """Projection shortcut: 1x1 convolution + BatchNorm where shape or stride changes."""

    def __init__(self, channels, stride, layout, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.conv = _conv(channels, 1, stride, layout)
            self.bn = _batch_norm(layout)

    def hybrid_forward(self, F, x):
        return self.bn(self.conv(x))


class BasicBlock(HybridBlock):
    """Two 3x3 convolutions (ResNet-18/34); the first one carries the stride."""
    expansion = 1

    def __init__(self, channels, stride, downsample, layout, zero_init_residual, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.body = nn.HybridSequential(prefix="")
            self.body.add(_conv(channels, 3, stride, layout), _batch_norm(layout),
                          nn.Activation("relu"),
                          _conv(channels, 3, 1, layout),
                          _batch_norm(layout, zero_init_residual))
            self.shortcut = _Shortcut(channels, stride, layout) if downsample else None

    def hybrid_forward(self, F, x):
        residual = self.shortcut(x) if self.shortcut is not None else x
        return F.Activation(self.body(x) + residual, act_type="relu")


class BottleneckV15(HybridBlock):
    """1x1 reduce, 3x3 (with the stride: the v1.5 change), 1x1 expand by 4."""
    expansion = 4

    def __init__(self, channels, stride, downsample, layout, zero_init_residual, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.body = nn.HybridSequential(prefix="")
            self.body.add(_conv(channels, 1, 1, layout), _batch_norm(layout),
                          nn.Activation("relu"),
                          _conv(channels, 3, stride, layout), _batch_norm(layout),
                          nn.Activation("relu"),
                          _conv(channels * 4, 1, 1, layout),
                          _batch_norm(layout, zero_init_residual))
            self.shortcut = _Shortcut(channels * 4, stride, layout) if downsample else None

    def hybrid_forward(self, F, x):
        residual = self.shortcut(x) if self.shortcut is not None else x
        return F.Activation(self.body(x) + residual, act_type="relu")


class ResNetV15(HybridBlock):
    """ResNet v1.5 classifier.

    Parameters
    ----------
    depth : int
        One of 18, 34, 50, 101, 152.
    classes : int
        Number of output classes.
    layout : str
        "NCHW" (CPU and GPU) or "NHWC" (GPU only, faster with Tensor Cores).
    zero_init_residual : bool
        Initialise the last BatchNorm gamma of every residual branch to zero.

    Notes
    -----
    The logits always leave the network in float32 (``amp_cast`` is a no-op for float32), so
    that a network cast to float16 feeds its loss and softmax in full precision.
    """

    def __init__(self, depth=50, classes=1000, layout="NCHW", zero_init_residual=False,
                 **kwargs):
        super().__init__(**kwargs)
        if depth not in _STAGE_UNITS:
            raise ValueError(f"ResNet depth must be one of {sorted(_STAGE_UNITS)}, got {depth}")
        if layout not in ("NCHW", "NHWC"):
            raise ValueError(f"layout must be 'NCHW' or 'NHWC', got {layout!r}")
        kind, units = _STAGE_UNITS[depth]
        block = BottleneckV15 if kind == "bottleneck" else BasicBlock
        with self.name_scope():
            self.features = nn.HybridSequential(prefix="")
            self.features.add(_conv(64, 7, 2, layout), _batch_norm(layout),
                              nn.Activation("relu"),
                              nn.MaxPool2D(3, 2, 1, layout=layout))
            in_channels = 64
            for stage, (width, count) in enumerate(zip(_STAGE_WIDTHS, units)):
                stride = 1 if stage == 0 else 2
                stage_blocks = nn.HybridSequential(prefix=f"stage{stage + 1}_")
                with stage_blocks.name_scope():
                    for i in range(count):
                        downsample = i == 0 and (stride != 1 or in_channels != width * block.expansion)
                        stage_blocks.add(block(width, stride if i == 0 else 1, downsample,
                                               layout, zero_init_residual, prefix=f"unit{i + 1}_"))
                        in_channels = width * block.expansion
                self.features.add(stage_blocks)
            self.features.add(nn.GlobalAvgPool2D(layout=layout), nn.Flatten())
            self.output = nn.Dense(classes, in_units=in_channels)

    def hybrid_forward(self, F, x):
        logits = self.output(self.features(x))
        return F.amp_cast(logits, dtype="float32")


def resnet_v15(depth, classes=1000, layout="NCHW", zero_init_residual=False):
    """Build an uninitialised ResNet v1.5; see `ResNetV15` for the arguments."""
    return ResNetV15(depth, classes, layout, zero_init_residual, prefix=f"resnet{depth}_v15_")


def default_initializer():
    """He (MSRA) initialisation for convolutions, as in the paper and NVIDIA's recipe."""
    return init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2)
