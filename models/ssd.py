"""SSD-FPN: NVIDIA's SSD320 v1.2 (DeepLearningExamples, TensorFlow), a RetinaNet-style
single-shot detector: ResNet v1.5 backbone, FPN P3-P7, weight-shared class and box towers,
sigmoid focal loss (Lin et al., "Focal Loss for Dense Object Detection", 2017). As in
TensorFlow's configuration of it, every 3x3 convolution of the pyramid and the towers is
followed by BatchNorm and ReLU6 (the towers' BatchNorms are per pyramid level).

Conventions shared with `models.ssd_loss` and the engine:

* Boxes are float32 ``(x1, y1, x2, y2)`` in pixels of the network input, width ``x2 - x1``
  (the ops/ and gluoncv convention, ``offset=0``).
* Anchors (`retinanet_anchors`, `SSDFPN.anchors`): levels P3..P7 in order; within a level the cells
  row-major, then the 6 anchor shapes (aspect ratios h/w 0.5, 1, 2, the outer loop; scales
  2^0, 2^0.5 per ratio, the inner loop). Centres at ``(j + 0.5) * stride``, side
  ``4 * stride * scale`` (TensorFlow's multiscale anchor generator, anchor_scale 4). The
  network's outputs come in exactly this order.
* Box deltas are ``((dx, dy, log dw, log dh)) / BOX_STDS`` with BOX_STDS (0.1, 0.1, 0.2,
  0.2): TensorFlow's faster_rcnn_box_coder scales (10, 10, 5, 5), `ops.box_encode` /
  `ops.box_decode` with those stds.
* Object classes are numbered 1..C wherever a class id is stored (ground-truth labels, class
  targets, detections); class c is logit column c - 1. Class targets add 0 (background) and
  -1 (ignored); -1 also pads.
"""
import math

import mxnet as mx
import numpy as np
from mxnet import init
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

from models.fpn import FPN
from models.resnet import batch_norm, resnet_v15_backbone

STRIDES = (8, 16, 32, 64, 128)
ASPECT_RATIOS = (0.5, 1.0, 2.0)
SCALES = (1.0, 2 ** 0.5)
ANCHOR_SCALE = 4.0
BOX_STDS = (0.1, 0.1, 0.2, 0.2)


def _pair(size):
    return (size, size) if isinstance(size, int) else tuple(size)


def feature_sizes(image_size, strides=STRIDES):
    """(height, width) of each pyramid level for an input of `image_size` (int or (h, w)).

    Every stride-2 layer of the backbone and FPN (3x3 or 7x7 kernels padded by half, 1x1
    unpadded) maps a side n to ceil(n / 2): 320 gives 40, 20, 10, 5, 3.
    """
    h, w = _pair(image_size)
    sizes, stride = [], 1
    for level_stride in strides:
        while stride < level_stride:
            h, w, stride = -(-h // 2), -(-w // 2), stride * 2
        sizes.append((h, w))
    return sizes


def retinanet_anchors(image_size, strides=STRIDES, anchor_scale=ANCHOR_SCALE, scales=SCALES,
            ratios=ASPECT_RATIOS):
    """RetinaNet anchors in the order of `SSDFPN`'s outputs (see the module docstring).

    Written in numpy rather than with `ops.generate_anchors`, whose gluoncv RPN recipe rounds
    widths to integers, subtracts 1 (Detectron's offset-1 boxes) and centres cells at
    ``(stride - 1) / 2``; none of these is in TensorFlow's SSD.

    Parameters
    ----------
    image_size : int or (int, int)
        Network input side, or (height, width).

    Returns
    -------
    numpy.ndarray, float32, (N, 4): pixel boxes (x1, y1, x2, y2), not clipped to the image;
    N = 6 * sum of H * W over the levels (12,804 at 320, 8,184 at 256).
    """
    ratios = np.asarray(ratios, np.float64)[:, None]
    levels = []
    for stride, (fh, fw) in zip(strides, feature_sizes(image_size, strides)):
        side = anchor_scale * stride * np.asarray(scales, np.float64)[None, :]
        half_w = (0.5 * side / np.sqrt(ratios)).ravel()    # ratio-major, then scale
        half_h = (0.5 * side * np.sqrt(ratios)).ravel()
        cy, cx = np.meshgrid((np.arange(fh) + 0.5) * stride, (np.arange(fw) + 0.5) * stride,
                             indexing="ij")
        cx, cy = cx[..., None], cy[..., None]
        boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1)
        levels.append(boxes.reshape(-1, 4))
    return np.concatenate(levels).astype(np.float32)


class SharedHead(HybridBlock):
    """A prediction tower applied with the same convolution weights to every pyramid level.

    ``num_convs`` 3x3 convolutions, each followed by a BatchNorm of its own per level and
    ReLU6, then a 3x3 convolution giving `outputs` values for each of `num_anchors` anchors
    per cell: TensorFlow's ``WeightSharedConvolutionalBoxPredictor`` as SSD320 v1.2
    configures it (the statistics of levels 40x40 and 3x3 apart differ too much to share a
    BatchNorm). Convolution weights from N(0, 0.01); the prediction's bias is `bias_init`.

    Inputs: the pyramid levels P3.. (up to `num_levels`), in order.

    Outputs
    -------
    (B, sum of H * W * num_anchors over the levels, outputs): levels in order, each level's
    cells row-major, then anchors.
    """

    def __init__(self, outputs, num_anchors, channels=256, num_convs=4, bias_init=0.0,
                 layout="NCHW", num_levels=len(STRIDES), **kwargs):
        super().__init__(**kwargs)
        self._outputs = outputs
        self._layout = layout
        with self.name_scope():
            self.tower = nn.HybridSequential(prefix="tower_")
            self.norms = nn.HybridSequential(prefix="norm_")  # [conv * num_levels + level]
            for _ in range(num_convs):
                self.tower.add(nn.Conv2D(channels, 3, padding=1, in_channels=channels,
                                         use_bias=False, layout=layout,
                                         weight_initializer=init.Normal(0.01)))
                for _ in range(num_levels):
                    self.norms.add(batch_norm(layout))
            self.predict = nn.Conv2D(num_anchors * outputs, 3, padding=1, in_channels=channels,
                                     layout=layout, weight_initializer=init.Normal(0.01),
                                     bias_initializer=init.Constant(bias_init))
        self._num_levels = num_levels

    def hybrid_forward(self, F, *levels):
        outputs = []
        for index, x in enumerate(levels):
            for layer, conv in enumerate(self.tower):
                x = F.clip(self.norms[layer * self._num_levels + index](conv(x)), 0, 6)
            y = self.predict(x)
            if self._layout == "NCHW":
                y = F.transpose(y, axes=(0, 2, 3, 1))
            # Channel a * outputs + k is anchor a's k-th output, so this keeps anchors per cell.
            outputs.append(F.reshape(y, shape=(0, -1, self._outputs)))
        return F.concat(*outputs, dim=1) if len(outputs) > 1 else outputs[0]


class SSDFPN(HybridBlock):
    """SSD-FPN detector (SSD320 v1.2 with ``depth=50, image_size=320``).

    Parameters
    ----------
    depth : int
        ResNet v1.5 backbone depth (18, 34, 50, 101, 152).
    classes : int
        Number of object classes, background not counted (80 for COCO).
    image_size : int or (int, int)
        The training input side (or (height, width)); the default size of `anchors`. The network
        itself runs at any size.
    layout : str
        "NCHW" or "NHWC" (GPU only).
    channels : int
        Width of FPN levels and towers (256).
    num_convs : int
        Tower depth (4).
    prior : float
        Initial foreground probability of every class (0.01): the class bias starts at
        -log((1 - prior) / prior), so that the many background anchors do not swamp the
        first steps of focal loss.

    Outputs
    -------
    cls_logits : float32, (B, N, classes), before the sigmoid.
    box_deltas : float32, (B, N, 4), encoded with BOX_STDS.
    Row n of both belongs to anchor n of `anchors` (`retinanet_anchors`).
    """

    def __init__(self, depth=50, classes=80, image_size=320, layout="NCHW", channels=256,
                 num_convs=4, prior=0.01, **kwargs):
        super().__init__(**kwargs)
        self.classes = classes
        self.image_size = _pair(image_size)
        self.layout = layout
        num_anchors = len(ASPECT_RATIOS) * len(SCALES)
        with self.name_scope():
            self.backbone = resnet_v15_backbone(depth, layout)
            self.fpn = FPN(self.backbone.channels, channels, layout, prefix="fpn_")
            self.class_head = SharedHead(classes, num_anchors, channels, num_convs,
                                         -math.log((1 - prior) / prior), layout,
                                         prefix="class_head_")
            self.box_head = SharedHead(4, num_anchors, channels, num_convs, 0.0, layout,
                                       prefix="box_head_")

    def hybrid_forward(self, F, x):
        levels = self.fpn(*self.backbone(x))
        cls_logits = self.class_head(*levels)
        box_deltas = self.box_head(*levels)
        # float32 out of a float16 network too, as the classifier: the losses need it.
        return F.amp_cast(cls_logits, dtype="float32"), F.amp_cast(box_deltas, dtype="float32")

    def anchors(self, image_size=None, ctx=None):
        """`retinanet_anchors` for `image_size` (default: the network's) as an NDArray on `ctx`."""
        return mx.nd.array(retinanet_anchors(image_size or self.image_size), ctx=ctx)

    def detect(self, x, **kwargs):
        """Forward pass on images `x` (NDArray), then `decode_detections`; kwargs go to it."""
        return detect(self, x, self.layout, **kwargs)


def detect(network, x, layout="NCHW", **kwargs):
    """Detections of `network` on images `x`: its forward pass, then `decode_detections`
    with the anchors of the input size; kwargs go to `decode_detections`.

    `network` is an `SSDFPN` or what deploys one: the ``SymbolBlock.imports`` of its export
    (``PREFIX-symbol.json`` / ``PREFIX-NNNN.params``), which has the same two outputs.
    """
    size = x.shape[2:4] if layout == "NCHW" else x.shape[1:3]
    cls_logits, box_deltas = network(x)
    anchors = mx.nd.array(retinanet_anchors(size), ctx=x.context)
    return decode_detections(cls_logits, box_deltas, anchors, size, **kwargs)


def decode_detections(cls_logits, box_deltas, anchor_boxes, image_size, score_thresh=0.05,
                      nms_thresh=0.6, max_detections=100, pre_nms_top_n=1000):
    """Final detections: decode, keep the best scores, class-wise NMS, pad.

    The `pre_nms_top_n` best (anchor, class) scores of each image are decoded (the cap that
    torchvision's RetinaNet applies per level; TensorFlow's runs NMS on everything above
    its threshold), NMS at `nms_thresh` runs per class, and the `max_detections` best
    survivors at or above `score_thresh` are kept.

    Parameters
    ----------
    cls_logits : NDArray, float32, (B, N, C)
    box_deltas : NDArray, float32, (B, N, 4)
    anchor_boxes : NDArray, float32, (N, 4) pixel boxes (`SSDFPN.anchors`)
    image_size : int or (int, int)
        The input side or (height, width); boxes are clipped to it.

    Returns
    -------
    NDArray, float32, (B, max_detections, 6): rows (class 1..C, score, x1, y1, x2, y2) in
    input pixels, best first, padded with rows of -1.
    """
    import ops  # here, not at the top: it loads the compiled ops/ library, which
    #             classification never needs
    batch, count, classes = cls_logits.shape
    height, width = _pair(image_size)
    ctx = cls_logits.context
    im_hw = mx.nd.array([[height, width]] * batch, ctx=ctx)
    boxes = ops.box_decode(box_deltas, anchor_boxes, stds=BOX_STDS, im_hw=im_hw)
    # The sigmoid is monotonic: rank logits, then take the sigmoid of the few kept.
    logits, index = mx.nd.topk(cls_logits.reshape((0, -1)), k=min(pre_nms_top_n, count * classes),
                               ret_typ="both", dtype="float64")
    scores = mx.nd.sigmoid(logits)
    anchor = mx.nd.floor(index / classes)
    column = index - anchor * classes
    candidates = _gather_rows(boxes, anchor)
    # One NMS call for all classes: shifting each class's boxes by its own offset (more than
    # the image size) keeps boxes of different classes from overlapping (torchvision's
    # batched_nms).
    shift = (column * (max(height, width) + 1)).astype("float32").expand_dims(2)
    keep, _ = ops.nms(candidates + shift, scores, iou_thresh=nms_thresh,
                      max_out=max_detections)
    candidates = mx.nd.concat(column.astype("float32").expand_dims(2) + 1,
                              scores.expand_dims(2), candidates, dim=2)
    detections = _gather_rows(candidates, mx.nd.maximum(keep, 0))
    # NMS visits boxes by descending score, so a box under the threshold could only have
    # suppressed others under it: dropping them after NMS equals dropping them before.
    scores = detections.slice_axis(axis=2, begin=1, end=2)
    valid = (keep >= 0).astype("float32").expand_dims(2) * (scores >= score_thresh)
    return mx.nd.where(valid.broadcast_like(detections), detections,
                       -mx.nd.ones_like(detections))


def _gather_rows(values, index):
    """values (B, N, D), index (B, K) -> (B, K, D): values[b, index[b, k]]."""
    index = index.astype("int32")
    batch = mx.nd.arange(values.shape[0], ctx=values.context, dtype="int32")
    return mx.nd.gather_nd(values, mx.nd.stack(batch.reshape((-1, 1)).broadcast_like(index), index))


def ssd_fpn(depth, classes=80, image_size=320, layout="NCHW", channels=256, num_convs=4):
    """Build an uninitialised SSD-FPN; see `SSDFPN` for the arguments."""
    return SSDFPN(depth, classes, image_size, layout, channels, num_convs,
                  prefix=f"ssd_resnet{depth}_fpn_")
