"""Feature Pyramid Network, P3-P7 (Lin et al., "Feature Pyramid Networks for Object Detection"
and "Focal Loss for Dense Object Detection", 2017), as SSD320 v1.2 and RetinaNet use it.

Written as small Gluon blocks rather than gluoncv 0.10.5's `FPNFeatureExpander`, which does
not fit this backbone cleanly: it is a SymbolBlock that cuts a network at symbol names (so
it would rename the parameters and the classifier checkpoints would no longer load by
structural name), stops at P6 made by max-pooling or one convolution (no P7), and hard-codes
the NCHW axes.
"""
from mxnet import init
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock


def _fpn_conv(channels, kernel, stride, in_channels, layout):
    # Detectron's c2_xavier_fill (uniform, bound sqrt(3 / fan_in)), which RetinaNet's FPN
    # uses; given here so that the caller's initializer (He, for the backbone) leaves it be.
    return nn.Conv2D(channels, kernel, strides=stride, padding=kernel // 2,
                     in_channels=in_channels, layout=layout,
                     weight_initializer=init.Xavier("uniform", "in", 3), bias_initializer="zeros")


class FPN(HybridBlock):
    """P3-P7 with `channels` channels each from the backbone's C3, C4, C5.

    P5..P3: a 1x1 lateral convolution of C5..C3, plus the level above upsampled by 2 (nearest
    neighbour, cropped to the lateral's size when that is odd), then a 3x3 convolution against
    the upsampling's aliasing. P6: a stride-2 3x3 convolution of P5 (as NVIDIA's SSD320 and
    TensorFlow's ssd_resnet_v1_fpn take it from P5 rather than from C5, which also keeps its
    input at `channels` whatever the backbone); P7: ReLU then a stride-2 3x3 convolution of P6
    (RetinaNet). The convolutions have biases and no BatchNorm, as in RetinaNet (NVIDIA's
    TensorFlow model adds BatchNorm and ReLU6 after each).

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
            self.smooth = nn.HybridSequential(prefix="smooth_")
            for c in in_channels:
                self.lateral.add(_fpn_conv(channels, 1, 1, c, layout))
                self.smooth.add(_fpn_conv(channels, 3, 1, channels, layout))
            self.p6 = _fpn_conv(channels, 3, 2, channels, layout)
            self.p7 = _fpn_conv(channels, 3, 2, channels, layout)

    def hybrid_forward(self, F, c3, c4, c5):
        laterals = [conv(c) for conv, c in zip(self.lateral, (c3, c4, c5))]
        merged = [laterals[-1]]
        for lateral in reversed(laterals[:-1]):
            merged.insert(0, lateral + self._upsample_like(F, merged[0], lateral))
        levels = [conv(m) for conv, m in zip(self.smooth, merged)]
        p6 = self.p6(levels[-1])
        return levels + [p6, self.p7(F.relu(p6))]

    def _upsample_like(self, F, x, like):
        # Nearest-neighbour x2 as two repeats: unlike UpSampling it works in either layout.
        for axis in self._spatial_axes:
            x = F.repeat(x, repeats=2, axis=axis)
        return F.slice_like(x, like, axes=self._spatial_axes)
