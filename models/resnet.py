"""ResNet v1.5 (He et al., "Deep Residual Learning for Image Recognition", 2015, with the
stride of each down-sampling bottleneck moved from the first 1x1 to the 3x3 convolution).

v1.5 is the variant NVIDIA's and torchvision's ImageNet recipes train: about 0.5% more top-1
than v1 for about 5% more compute. Blocks take the data layout explicitly ("NCHW" or "NHWC";
NHWC runs only on GPUs through cuDNN) so that the same code serves both.

`ResNetV15` is the classifier; `ResNetV15Backbone` is the same stem and stages without the
pooling and dense layer, returning stage outputs for FPN: C3, C4, C5 (strides 8, 16, 32) for
RetinaNet-style pyramids, C2-C5 (from stride 4) for Mask R-CNN's.
Both keep the stages in a ``features`` sequential at the same indices, so a classifier
checkpoint (``save_parameters``, structural names such as ``features.5.0.body.0.weight``)
loads into the backbone by name: see `load_backbone_weights`.
"""
import mxnet as mx
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


def batch_norm(layout, zero_gamma=False):
    # zero_gamma starts a residual branch as the identity ("Bag of Tricks", Goyal et al.).
    return nn.BatchNorm(axis=_channel_axis(layout),
                        gamma_initializer="zeros" if zero_gamma else "ones")


class _Shortcut(HybridBlock):
    """Projection shortcut: 1x1 convolution + BatchNorm where shape or stride changes."""

    def __init__(self, channels, stride, layout, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.conv = _conv(channels, 1, stride, layout)
            self.bn = batch_norm(layout)

    def hybrid_forward(self, F, x):
        return self.bn(self.conv(x))


class BasicBlock(HybridBlock):
    """Two 3x3 convolutions (ResNet-18/34); the first one carries the stride."""
    expansion = 1

    def __init__(self, channels, stride, downsample, layout, zero_init_residual, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.body = nn.HybridSequential(prefix="")
            self.body.add(_conv(channels, 3, stride, layout), batch_norm(layout),
                          nn.Activation("relu"),
                          _conv(channels, 3, 1, layout),
                          batch_norm(layout, zero_init_residual))
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
            self.body.add(_conv(channels, 1, 1, layout), batch_norm(layout),
                          nn.Activation("relu"),
                          _conv(channels, 3, stride, layout), batch_norm(layout),
                          nn.Activation("relu"),
                          _conv(channels * 4, 1, 1, layout),
                          batch_norm(layout, zero_init_residual))
            self.shortcut = _Shortcut(channels * 4, stride, layout) if downsample else None

    def hybrid_forward(self, F, x):
        residual = self.shortcut(x) if self.shortcut is not None else x
        return F.Activation(self.body(x) + residual, act_type="relu")


# features[0:4] is the stem (conv, BatchNorm, ReLU, max-pool); stage k (1-4) follows at
# features[_STEM_BLOCKS + k - 1], with output strides 4, 8, 16, 32.
_STEM_BLOCKS = 4
# FPN reads C3, C4, C5, the outputs of stages 2-4 (strides 8, 16, 32), as RetinaNet does;
# Mask R-CNN's FPN adds C2 (stage 1, stride 4).
_FPN_STAGES = (2, 3, 4)


def _residual_body(depth, layout, zero_init_residual):
    """The stem and the four stages as one HybridSequential (prefix-less, so that it names
    its layers in the scope of the block that creates it); also the stages' output widths."""
    if depth not in _STAGE_UNITS:
        raise ValueError(f"ResNet depth must be one of {sorted(_STAGE_UNITS)}, got {depth}")
    if layout not in ("NCHW", "NHWC"):
        raise ValueError(f"layout must be 'NCHW' or 'NHWC', got {layout!r}")
    kind, units = _STAGE_UNITS[depth]
    block = BottleneckV15 if kind == "bottleneck" else BasicBlock
    features = nn.HybridSequential(prefix="")
    features.add(_conv(64, 7, 2, layout), batch_norm(layout), nn.Activation("relu"),
                 nn.MaxPool2D(3, 2, 1, layout=layout))
    in_channels, widths = 64, []
    for stage, (width, count) in enumerate(zip(_STAGE_WIDTHS, units)):
        stride = 1 if stage == 0 else 2
        stage_blocks = nn.HybridSequential(prefix=f"stage{stage + 1}_")
        with stage_blocks.name_scope():
            for i in range(count):
                downsample = i == 0 and (stride != 1 or in_channels != width * block.expansion)
                stage_blocks.add(block(width, stride if i == 0 else 1, downsample,
                                       layout, zero_init_residual, prefix=f"unit{i + 1}_"))
                in_channels = width * block.expansion
        features.add(stage_blocks)
        widths.append(in_channels)
    return features, widths


def _stage_outputs(features, x, stages=_FPN_STAGES):
    """The outputs of `stages` (1-4, ascending) from the stem and stages of `features` (the
    layers after the last of them are not run)."""
    outputs = []
    for index in range(_STEM_BLOCKS + stages[-1]):
        x = features[index](x)
        if index - _STEM_BLOCKS + 1 in stages:
            outputs.append(x)
    return outputs


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
        with self.name_scope():
            self.features, widths = _residual_body(depth, layout, zero_init_residual)
            self.features.add(nn.GlobalAvgPool2D(layout=layout), nn.Flatten())
            self.output = nn.Dense(classes, in_units=widths[-1])

    def hybrid_forward(self, F, x):
        logits = self.output(self.features(x))
        return F.amp_cast(logits, dtype="float32")

    def stage_outputs(self, x):
        """The classifier's C3, C4, C5 (strides 8, 16, 32) for input `x` (NDArray)."""
        return _stage_outputs(self.features, x)


class ResNetV15Backbone(HybridBlock):
    """The stem and stages of `ResNetV15` (no pooling, no dense layer) for FPN.

    Parameters
    ----------
    depth, layout, zero_init_residual
        As for `ResNetV15`.
    stages : tuple of int
        The stages (1-4, ascending) whose outputs are returned: (2, 3, 4) gives C3, C4, C5
        (SSD's pyramid), (1, 2, 3, 4) C2-C5 (Mask R-CNN's).

    Attributes
    ----------
    channels : tuple of int
        Widths of the returned stages: C2-C5 are (64, 128, 256, 512) for depths 18/34, four
        times that above.

    Outputs
    -------
    One array per stage, C2..C5 at strides 4, 8, 16, 32: for an input of side ``s`` their
    sides are ``ceil(s / stride)`` (80, 40, 20, 10 at 320).
    """

    def __init__(self, depth=50, layout="NCHW", zero_init_residual=False,
                 stages=_FPN_STAGES, **kwargs):
        super().__init__(**kwargs)
        stages = tuple(stages)
        if not stages or list(stages) != sorted(set(stages)) or not set(stages) <= {1, 2, 3, 4}:
            raise ValueError(f"stages must be ascending stage numbers 1-4, got {stages}")
        self._stages = stages
        with self.name_scope():
            self.features, widths = _residual_body(depth, layout, zero_init_residual)
        self.channels = tuple(widths[stage - 1] for stage in stages)

    def hybrid_forward(self, F, x):
        return tuple(_stage_outputs(self.features, x, self._stages))

    def freeze(self, stages):
        """Stop training the stem and the first `stages` stages (0: the stem only; -1:
        nothing): their parameters get grad_req "null", so no optimizer touches them."""
        if stages < 0:
            return
        for index in range(_STEM_BLOCKS + stages):
            self.features[index].collect_params().setattr("grad_req", "null")


def freeze_batchnorm(block):
    """Freeze every BatchNorm inside `block`: normalise with the running statistics in
    training too (``use_global_stats``, so they are never updated) and train neither gamma
    nor beta (Detectron's FrozenBatchNorm2d). Call it before `hybridize`."""
    def freeze(child):
        if isinstance(child, nn.BatchNorm):
            # Gluon's BatchNorm passes these keyword arguments to the operator as they are.
            child._kwargs["use_global_stats"] = True
            child.collect_params().setattr("grad_req", "null")
    block.apply(freeze)
    return block


def load_backbone_weights(backbone, params_path, ctx=None):
    """Load a ResNet v1.5 classifier checkpoint into `backbone` by structural name.

    This is what ``--backbone-weights CHECKPOINT`` does: CHECKPOINT is a file written by
    ``net.save_parameters`` of a ``resnet{depth}_v1.5`` classifier of this project (e.g.
    ``checkpoints/epoch-0090/model.params``), of the same depth and layout as the backbone.
    The classifier's dense layer (``output.*``) is skipped; every other array must match a
    backbone parameter and every backbone parameter must be in the file. Arrays are cast to
    the parameters' dtypes (a float16 checkpoint loads into a float32 network and back).

    Parameters
    ----------
    backbone : ResNetV15Backbone
        Initialised or not (uninitialised parameters are created on `ctx`).
    params_path : str
    ctx : mxnet.Context or list of them, optional
        Where to create uninitialised parameters (default: CPU); initialised ones stay where
        they are.

    Raises
    ------
    ValueError
        If the file does not hold structural names, or names the parameters that are missing
        from it, unexpected in it, or of another shape.
    """
    loaded = mx.nd.load(params_path)
    if not isinstance(loaded, dict) or not all("." in name for name in loaded):
        raise ValueError(f"{params_path} was not written by save_parameters (structural "
                         "names such as features.0.weight); save the classifier with "
                         "net.save_parameters")
    weights = {name: value for name, value in loaded.items() if not name.startswith("output.")}
    params = backbone._collect_params_with_prefix()
    problems = []
    missing = sorted(set(params) - set(weights))
    if missing:
        problems.append(f"missing from the checkpoint: {', '.join(missing)}")
    unexpected = sorted(set(weights) - set(params))
    if unexpected:
        problems.append(f"in the checkpoint but not in the backbone: {', '.join(unexpected)}")
    mismatched = [f"{name} (backbone {params[name].shape}, checkpoint {weights[name].shape})"
                  for name in sorted(set(params) & set(weights))
                  if not _shapes_agree(params[name].shape, weights[name].shape)]
    if mismatched:
        problems.append(f"shapes differ: {', '.join(mismatched)}")
    if problems:
        raise ValueError(f"{params_path} does not fit this backbone (a resnet classifier of "
                         f"another depth or layout?): " + "; ".join(problems))
    for name, value in weights.items():
        # Gluon's own loading step (load_parameters ends in it): it completes deferred
        # shapes, casts the dtype and copies to every context the parameter lives on.
        params[name]._load_init(value, ctx, cast_dtype=True, dtype_source="current")


def _shapes_agree(network_shape, saved_shape):
    # 0 is a dimension that deferred initialisation has not resolved yet.
    return len(network_shape) == len(saved_shape) and all(
        n in (0, s) for n, s in zip(network_shape, saved_shape))


def resnet_v15(depth, classes=1000, layout="NCHW", zero_init_residual=False):
    """Build an uninitialised ResNet v1.5; see `ResNetV15` for the arguments."""
    return ResNetV15(depth, classes, layout, zero_init_residual, prefix=f"resnet{depth}_v15_")


def resnet_v15_backbone(depth, layout="NCHW", zero_init_residual=False, stages=_FPN_STAGES):
    """Build an uninitialised ResNet v1.5 backbone; see `ResNetV15Backbone`."""
    return ResNetV15Backbone(depth, layout, zero_init_residual, stages,
                             prefix=f"resnet{depth}_v15_")


def default_initializer():
    """He (MSRA) initialisation for convolutions, as in the paper and NVIDIA's recipe."""
    return init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2)
