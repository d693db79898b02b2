"""Feature Pyramid Networks (Lin et al., "Feature Pyramid Networks for Object Detection" and
"Focal Loss for Dense Object Detection", 2017): `FPN`, P3-P7 as NVIDIA's SSD320 v1.2 builds
it (TensorFlow's ``ssd_resnet50_v1_fpn``: ``fpn_top_down_feature_maps`` plus two coarse
levels), and `RCNNFPN`, Mask R-CNN's P2-P6 (maskrcnn-benchmark).

Written as small Gluon blocks rather than gluoncv 0.10.5's `FPNFeatureExpander`, which does
not fit this backbone cleanly: it is a SymbolBlock that cuts a network at symbol names (so
it would rename the parameters and the classifier checkpoints would no longer load by
structural name), stops at P6 made by max-pooling or one convolution (no P7, for SSD), and
hard-codes the NCHW axes.
"""
from mxnet import init
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

from models.resnet import batch_norm


class ConvBNReLU6(HybridBlock):
    """3x3 convolution (no bias), BatchNorm, ReLU6: TensorFlow's ``slim.conv2d`` under the
    SSD320 v1.2 ``conv_hyperparams`` (batch_norm, RELU_6). The bounded activation keeps the
    many shared-head and pyramid layers trained from scratch at the recipe's learning rate
    from blowing up (seen without it: a loss of 1e18 within 100 steps on the demo set)."""

    def __init__(self, channels, stride, in_channels, layout, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.conv = nn.Conv2D(channels, 3, strides=stride, padding=1, use_bias=False,
                                  in_channels=in_channels, layout=layout,
                                  weight_initializer=init.Xavier("uniform", "in", 3))
            self.bn = batch_norm(layout)

    def hybrid_forward(self, F, x):
        return F.clip(self.bn(self.conv(x)), 0, 6)


class FPN(HybridBlock):
    """P3-P7 with `channels` channels each from the backbone's C3, C4, C5.

    Top-down: P5 is a 1x1 lateral convolution of C5; each level below adds the 1x1 lateral
    of its C to the (un-smoothed) level above upsampled by 2 (nearest neighbour, cropped to
    the lateral's size when that is odd), and P4, P3 are that sum through `ConvBNReLU6`
    against the upsampling's aliasing. P6 is a stride-2 `ConvBNReLU6` of P5, P7 one of P6
    (TensorFlow takes the coarse levels from P5 rather than from C5, which also keeps their
    input at `channels` whatever the backbone). The laterals have biases and neither
    BatchNorm nor activation, as in TensorFlow.

    Parameters
    ----------
    in_channels : (int, int, int)
        Channels of C3, C4, C5 (`ResNetV15Backbone.channels`).
    channels : int
        Channels of every output level (256).
    layout : str
        "NCHW" or "NHWC".

    Outputs
    -------
    [P3, P4, P5, P6, P7] at strides 8, 16, 32, 64, 128: a level's side is ``ceil`` of half
    the side below (40, 20, 10, 5, 3 for a 320x320 image).
    """

    def __init__(self, in_channels, channels=256, layout="NCHW", **kwargs):
        super().__init__(**kwargs)
        self._spatial_axes = (layout.index("H"), layout.index("W"))
        with self.name_scope():
            self.lateral = nn.HybridSequential(prefix="lateral_")
            for c in in_channels:
                # Detectron's c2_xavier_fill (uniform, bound sqrt(3 / fan_in)), given here so
                # that the caller's initializer (He, for the backbone) leaves it be.
                self.lateral.add(nn.Conv2D(channels, 1, in_channels=c, layout=layout,
                                           weight_initializer=init.Xavier("uniform", "in", 3),
                                           bias_initializer="zeros"))
            self.smooth = nn.HybridSequential(prefix="smooth_")
            for _ in in_channels[:-1]:
                self.smooth.add(ConvBNReLU6(channels, 1, channels, layout))
            self.p6 = ConvBNReLU6(channels, 2, channels, layout, prefix="p6_")
            self.p7 = ConvBNReLU6(channels, 2, channels, layout, prefix="p7_")

    def hybrid_forward(self, F, c3, c4, c5):
        laterals = [conv(c) for conv, c in zip(self.lateral, (c3, c4, c5))]
        top_down = [laterals[-1]]
        for lateral in reversed(laterals[:-1]):
            top_down.insert(0, lateral + self._upsample_like(F, top_down[0], lateral))
        p5 = top_down[-1]
        levels = [smooth(m) for smooth, m in zip(self.smooth, top_down[:-1])] + [p5]
        p6 = self.p6(p5)
        return levels + [p6, self.p7(p6)]

    def _upsample_like(self, F, x, like):
        return _upsample_like(F, x, like, self._spatial_axes)


class RCNNFPN(HybridBlock):
    """P2-P6 from C2-C5, as Mask R-CNN's FPN (maskrcnn-benchmark, Detectron) builds it.

    Each level is a 1x1 lateral convolution of its C plus the level above upsampled by 2
    (nearest neighbour, cropped to the lateral's size), then a 3x3 output convolution (on
    every level, P5 included); P6 is P5 max-pooled with kernel 1 and stride 2 (used by the
    RPN only). No normalisation or activation anywhere, as in the 1x recipe (which has no
    GroupNorm, and batches of 1-2 images per GPU leave BatchNorm nothing to work with).
    Weights follow Detectron's c2_xavier_fill (uniform, bound sqrt(3 / fan_in)), biases zero.

    A class of its own rather than options of `FPN`: the two differ in the levels, in the
    smoothing (SSD's BatchNorm + ReLU6 on P3, P4 only) and in how the coarse levels are made
    (stride-2 convolutions there).

    Parameters
    ----------
    in_channels : tuple of int
        Channels of C2..C5 (`ResNetV15Backbone.channels` with stages (1, 2, 3, 4)).
    channels : int
        Channels of every output level (256).
    layout : str
        "NCHW" or "NHWC".

    Outputs
    -------
    [P2, P3, P4, P5, P6] at strides 4, 8, 16, 32, 64; each side is ``ceil`` of half the side
    below.
    """

    def __init__(self, in_channels, channels=256, layout="NCHW", **kwargs):
        super().__init__(**kwargs)
        self._spatial_axes = (layout.index("H"), layout.index("W"))
        self._layout = layout
        xavier = init.Xavier("uniform", "in", 3)
        with self.name_scope():
            self.lateral = nn.HybridSequential(prefix="lateral_")
            self.output = nn.HybridSequential(prefix="output_")
            for c in in_channels:
                with self.lateral.name_scope():
                    self.lateral.add(nn.Conv2D(channels, 1, in_channels=c, layout=layout,
                                               weight_initializer=xavier,
                                               bias_initializer="zeros"))
                with self.output.name_scope():
                    self.output.add(nn.Conv2D(channels, 3, padding=1, in_channels=channels,
                                              layout=layout, weight_initializer=xavier,
                                              bias_initializer="zeros"))

    def hybrid_forward(self, F, *features):
        laterals = [conv(c) for conv, c in zip(self.lateral, features)]
        top_down = [laterals[-1]]
        for lateral in reversed(laterals[:-1]):
            top_down.insert(0, lateral + _upsample_like(F, top_down[0], lateral,
                                                        self._spatial_axes))
        levels = [conv(m) for conv, m in zip(self.output, top_down)]
        p6 = F.Pooling(levels[-1], kernel=(1, 1), stride=(2, 2), pool_type="max",
                       layout=self._layout)
        return levels + [p6]


def _upsample_like(F, x, like, spatial_axes):
    # Nearest-neighbour x2 as two repeats: unlike UpSampling it works in either layout.
    for axis in spatial_axes:
        x = F.repeat(x, repeats=2, axis=axis)
    return F.slice_like(x, like, axes=spatial_axes)
