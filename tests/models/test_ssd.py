"""SSD-FPN: shapes and anchor order, targets, losses, backbone weights, a training step,
decoding."""
import math

import mxnet as mx
import numpy as np
import pytest

import models
from models.resnet import ResNetV15Backbone
from models.ssd import BOX_STDS, SharedHead, decode_detections, feature_sizes, retinanet_anchors
from models.ssd_loss import crowd_rows, encode_targets, sigmoid_focal_loss, ssd_loss


def _ssd(name="ssd256_resnet18_fpn", classes=3, seed=0):
    net = models.get_model(name, classes=classes)
    mx.random.seed(seed)
    net.initialize(models.default_initializer())
    return net


@pytest.mark.parametrize("name, side, sizes", [
    ("ssd320_resnet50_fpn", 320, (40, 20, 10, 5, 3)),
    ("ssd320_resnet18_fpn", 320, (40, 20, 10, 5, 3)),
    ("ssd256_resnet18_fpn", 256, (32, 16, 8, 4, 2)),
    ("ssd128_resnet18_fpn64", 128, (16, 8, 4, 2, 1)),
])
def test_outputs_and_anchors_have_six_rows_per_cell(name, side, sizes):
    net = models.build_network(name, 80, "NCHW", (3, side, side), "float32", mx.cpu())
    cls_logits, box_deltas = net(mx.nd.zeros((1, 3, side, side)))
    count = 6 * sum(s * s for s in sizes)  # 12,804 at 320; 8,184 at 256
    assert cls_logits.shape == (1, count, 80) and box_deltas.shape == (1, count, 4)
    assert cls_logits.dtype == np.float32 and box_deltas.dtype == np.float32
    # (Reading the values also waits for MXNet's asynchronous engine to run the pass.)
    assert np.isfinite(cls_logits.asnumpy()).all() and np.isfinite(box_deltas.asnumpy()).all()
    assert net.anchors().shape == (count, 4)
    assert feature_sizes(side) == [(s, s) for s in sizes]


def test_nhwc_graph_has_the_same_output_shapes():
    # NHWC convolutions run only on GPUs (cuDNN); shape inference checks the graph here.
    shapes = {}
    for layout, data in (("NCHW", (2, 3, 320, 320)), ("NHWC", (2, 320, 320, 3))):
        net = models.get_model("ssd320_resnet18_fpn", classes=7, layout=layout)
        _, out_shapes, _ = mx.sym.Group(net(mx.sym.var("data"))).infer_shape(data=data)
        shapes[layout] = out_shapes
    assert shapes["NHWC"] == shapes["NCHW"] == [(2, 12804, 7), (2, 12804, 4)]


def test_first_level_anchors_sit_on_the_stride_grid():
    level = retinanet_anchors(256)[:32 * 32 * 6].reshape(32, 32, 6, 4)
    centre_x = (level[..., 0] + level[..., 2]) / 2
    centre_y = (level[..., 1] + level[..., 3]) / 2
    grid = (np.arange(32) + 0.5) * 8
    np.testing.assert_allclose(centre_x, np.broadcast_to(grid[None, :, None], (32, 32, 6)))
    np.testing.assert_allclose(centre_y, np.broadcast_to(grid[:, None, None], (32, 32, 6)))
    w, h = level[0, 0, :, 2] - level[0, 0, :, 0], level[0, 0, :, 3] - level[0, 0, :, 1]
    # Ratios h/w 0.5, 1, 2, each at sides 4 * stride * (1, sqrt 2).
    np.testing.assert_allclose(h / w, [0.5, 0.5, 1, 1, 2, 2], rtol=1e-6)
    np.testing.assert_allclose(np.sqrt(w * h), [32, 32 * 2 ** 0.5] * 3, rtol=1e-6)


def test_head_rows_are_cells_row_major_then_anchors():
    # Features that carry their own row and column; the prediction's centre taps copy
    # them out (outputs 0 and 1) and its bias gives the anchor index (output 2).
    head = SharedHead(outputs=3, num_anchors=6, channels=2, num_convs=0)
    head.initialize()
    weight = np.zeros((18, 2, 3, 3), np.float32)
    weight[0::3, 0, 1, 1] = 1
    weight[1::3, 1, 1, 1] = 1
    bias = np.zeros(18, np.float32)
    bias[2::3] = np.arange(6)
    head.predict.weight.set_data(mx.nd.array(weight))
    head.predict.bias.set_data(mx.nd.array(bias))
    rows, cols = np.meshgrid(np.arange(4), np.arange(5), indexing="ij")
    out = head(mx.nd.array(np.stack([rows, cols])[None].astype(np.float32))).asnumpy()[0]
    assert out.shape == (4 * 5 * 6, 3)
    anchors = retinanet_anchors((32, 40))[:4 * 5 * 6]  # first level of a 32x40 image: 4x5
    np.testing.assert_allclose((anchors[:, 0] + anchors[:, 2]) / 2, (out[:, 1] + 0.5) * 8)
    np.testing.assert_allclose((anchors[:, 1] + anchors[:, 3]) / 2, (out[:, 0] + 0.5) * 8)
    np.testing.assert_array_equal(out[:, 2], np.tile(np.arange(6), 20))


def test_levels_are_concatenated_in_anchor_order():
    # Changing one pyramid level changes that level's rows of the outputs, and no others.
    net = _ssd()
    x = mx.nd.random.uniform(shape=(1, 3, 256, 256))
    cls_logits, box_deltas = net(x)
    levels = net.fpn(*net.backbone(x))
    for head, output in ((net.class_head, cls_logits), (net.box_head, box_deltas)):
        np.testing.assert_allclose(head(*levels).asnumpy(), output.asnumpy(), rtol=1e-5,
                                   atol=1e-6)
    start = 0
    for k, (h, w) in enumerate(feature_sizes(256)):
        assert levels[k].shape[2:] == (h, w)
        end = start + h * w * 6
        changed = list(levels)
        changed[k] = levels[k] + 1
        for head, output in ((net.class_head, cls_logits), (net.box_head, box_deltas)):
            diff = np.abs(head(*changed).asnumpy() - output.asnumpy()).max(axis=(0, 2))
            assert (diff[start:end] > 0).mean() > 0.99
            assert diff[:start].max(initial=0) == 0 and diff[end:].max(initial=0) == 0
        start = end
    assert start == net.anchors().shape[0]


def test_each_level_has_its_own_tower_batchnorm():
    net = _ssd()
    # 4 tower convolutions x 5 levels, each with its own statistics; the convolutions shared.
    assert len(net.class_head.tower) == 4 and len(net.class_head.norms) == 20
    names = [name for name in net.class_head.collect_params() if "running_mean" in name]
    assert len(names) == 20


def test_class_bias_starts_at_the_prior():
    net = _ssd()
    bias = net.class_head.predict.bias.data().asnumpy()
    np.testing.assert_allclose(bias, -math.log(0.99 / 0.01), rtol=1e-6)
    np.testing.assert_array_equal(net.box_head.predict.bias.data().asnumpy(), 0)


def _reference_focal(logits, targets, alpha=0.25, gamma=2.0):
    # Straight from the paper, in float64.
    x = logits.astype(np.float64)
    t = (targets[..., None] == np.arange(1, x.shape[-1] + 1)).astype(np.float64)
    p = 1 / (1 + np.exp(-x))
    p_t = np.where(t == 1, p, 1 - p)
    alpha_t = np.where(t == 1, alpha, 1 - alpha)
    loss = -alpha_t * (1 - p_t) ** gamma * np.log(p_t)
    return loss * (targets >= 0)[..., None]


def test_losses_match_numpy_and_ignore_what_is_ignored():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=4, size=(2, 60, 5)).astype(np.float32)
    logits[0, :5] = [[12, -12, 20, -20, 0]] * 5  # far out, where log(sigmoid) must stay exact
    targets = rng.integers(-1, 6, size=(2, 60))
    deltas = rng.normal(size=(2, 60, 4)).astype(np.float32)
    box_targets = rng.normal(size=(2, 60, 4)).astype(np.float32)
    nd = mx.nd.array
    elementwise = sigmoid_focal_loss(nd(logits), nd(targets)).asnumpy()
    np.testing.assert_allclose(elementwise, _reference_focal(logits, targets), rtol=1e-4,
                               atol=1e-6)
    positives = max((targets > 0).sum(), 1)
    diff = np.abs(deltas - box_targets)
    smooth_l1 = np.where(diff < 1, 0.5 * diff ** 2, diff - 0.5) * (targets > 0)[..., None]
    losses = ssd_loss(nd(logits), nd(deltas), nd(targets), nd(box_targets))
    assert set(losses) == {"cls", "box"}
    np.testing.assert_allclose(losses["cls"].asscalar(),
                               _reference_focal(logits, targets).sum() / positives, rtol=1e-5)
    np.testing.assert_allclose(losses["box"].asscalar(), smooth_l1.sum() / positives, rtol=1e-5)
    # Whatever the network says at ignored anchors changes neither loss.
    ignored = targets < 0
    logits[ignored] += 5.0
    deltas[ignored] += 3.0
    again = ssd_loss(nd(logits), nd(deltas), nd(targets), nd(box_targets))
    for key in ("cls", "box"):
        np.testing.assert_allclose(again[key].asscalar(), losses[key].asscalar(), rtol=1e-6)


def test_losses_without_positives_are_sums():
    logits = np.full((1, 4, 2), -1.0, np.float32)
    targets = np.array([[0, 0, -1, 0]])
    nd = mx.nd.array
    losses = ssd_loss(nd(logits), nd(np.ones((1, 4, 4))), nd(targets), nd(np.zeros((1, 4, 4))))
    np.testing.assert_allclose(losses["cls"].asscalar(), _reference_focal(logits, targets).sum(),
                               rtol=1e-5)
    assert losses["box"].asscalar() == 0


# Hand-made anchors and boxes for the target encoder (IoUs in the comments).
_ANCHORS = [[0, 0, 10, 10], [20, 20, 40, 40], [0, 0, 20, 20], [50, 50, 60, 60]]


def _targets(gt_boxes, gt_labels, crowd_boxes=None, **kwargs):
    nd = mx.nd.array
    cls, box = encode_targets(nd(_ANCHORS), nd([gt_boxes]), nd([gt_labels]),
                              None if crowd_boxes is None else nd([crowd_boxes]), **kwargs)
    return cls.asnumpy()[0], box.asnumpy()[0]


def test_targets_match_at_half_iou_and_force_each_gt_best_anchor():
    cls, box = _targets([[20, 20, 40, 40],    # = anchor 1
                         [0, 0, 9, 10],       # IoU 0.9 with anchor 0, 0.225 with anchor 2
                         [50, 50, 75, 75],    # IoU 0.16 with anchor 3, its best
                         [-1, -1, -1, -1]],   # padding
                        [3, 1, 2, -1])
    assert cls.dtype == np.int32
    np.testing.assert_array_equal(cls, [1, 3, 0, 2])
    np.testing.assert_array_equal(box[1], 0)  # a gt equal to its anchor: zero deltas
    # gt 1 on anchor 0: centre 0.5 px left of a 10 px anchor, 0.9 as wide, over BOX_STDS.
    np.testing.assert_allclose(box[0], [-0.05 / BOX_STDS[0], 0, math.log(0.9) / BOX_STDS[2], 0],
                               atol=1e-6)
    np.testing.assert_array_equal(box[2], 0)


def test_targets_ignore_the_band_between_thresholds():
    cls, _ = _targets([[0, 0, 9, 10]], [1], bg_iou_thresh=0.2)
    np.testing.assert_array_equal(cls, [1, 0, -1, 0])  # anchor 2: IoU 0.225


def test_targets_ignore_background_inside_crowds_and_crowds_match_nothing():
    # A batch's rows as the pipeline gives them: an object, a crowd region (label 3), padding.
    boxes = np.array([[[50, 50, 60, 60], [0, 0, 30, 30], [-1, -1, -1, -1]]], np.float32)
    labels = np.array([[2, 3, -1]])
    objects, crowd = crowd_rows(boxes, labels, crowd_label=3)
    np.testing.assert_array_equal(objects[0, 1], -1)
    np.testing.assert_array_equal(crowd, [[[0, 0, 30, 30]]])
    cls, box = _targets(objects[0], labels[0], crowd[0])
    # Anchors 0 and 2 lie inside the crowd; anchor 1 has a quarter of its area in it.
    np.testing.assert_array_equal(cls, [-1, 0, -1, 2])
    np.testing.assert_array_equal(box[:3], 0)
    assert crowd_rows(boxes, np.array([[2, 1, -1]]), crowd_label=3)[1] is None


def test_targets_of_an_image_without_objects_are_background():
    cls, box = _targets([[-1, -1, -1, -1]], [-1])
    np.testing.assert_array_equal(cls, 0)
    np.testing.assert_array_equal(box, 0)


def test_backbone_loads_a_classifier_checkpoint(tmp_path):
    classifier = models.get_model("resnet18_v1.5", classes=10)
    mx.random.seed(1)
    classifier.initialize(models.default_initializer())
    x = mx.nd.random.uniform(shape=(1, 3, 64, 64))
    classifier(x)
    # BatchNorm arrays start equal in both networks: make them differ, so that none can be
    # left out unseen.
    rng = np.random.default_rng(1)
    for name, param in classifier.collect_params().items():
        if "batchnorm" in name:
            param.set_data(mx.nd.array(rng.uniform(0.5, 1.5, param.shape)))
    path = str(tmp_path / "model.params")
    classifier.save_parameters(path)
    net = _ssd(seed=2)
    models.load_backbone_weights(net.backbone, path)
    got = net.backbone.features[6][1].body[0].weight.data().asnumpy()
    expected = classifier.features[6][1].body[0].weight.data().asnumpy()
    np.testing.assert_array_equal(got, expected)
    for ours, theirs in zip(net.backbone(x), classifier.stage_outputs(x)):
        assert np.isfinite(theirs.asnumpy()).all()
        np.testing.assert_array_equal(ours.asnumpy(), theirs.asnumpy())


def test_backbone_weights_that_do_not_fit_are_named(tmp_path):
    classifier = models.get_model("resnet18_v1.5", classes=10)
    classifier.initialize()
    classifier(mx.nd.zeros((1, 3, 32, 32)))
    path = str(tmp_path / "model.params")
    classifier.save_parameters(path)
    saved = mx.nd.load(path)
    del saved["features.7.1.body.4.gamma"]
    saved["features.0.weight"] = mx.nd.zeros((64, 3, 3, 3))
    saved["features.4.2.body.0.weight"] = mx.nd.zeros((64, 64, 3, 3))  # a third unit
    broken = str(tmp_path / "broken.params")
    mx.nd.save(broken, saved)
    backbone = ResNetV15Backbone(18)
    with pytest.raises(ValueError) as error:
        models.load_backbone_weights(backbone, broken)
    message = str(error.value)
    assert "missing from the checkpoint: features.7.1.body.4.gamma" in message
    assert "not in the backbone: features.4.2.body.0.weight" in message
    assert "features.0.weight (backbone (64, 0, 7, 7), checkpoint (64, 3, 3, 3))" in message
    assert "output." not in message


def test_one_sgd_step_lowers_both_losses():
    net = _ssd(classes=3)
    rng = np.random.default_rng(0)
    images = mx.nd.array(rng.uniform(size=(2, 3, 256, 256)))
    gt_boxes = mx.nd.array([[[30, 40, 120, 150], [150, 60, 230, 120]],
                            [[10, 10, 250, 240], [-1, -1, -1, -1]]])
    gt_labels = mx.nd.array([[1, 3], [2, -1]])
    cls_targets, box_targets = encode_targets(net.anchors(), gt_boxes, gt_labels)
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.01})

    def losses():
        with mx.autograd.record():
            result = ssd_loss(*net(images), cls_targets, box_targets)
        return result

    before = losses()
    mx.autograd.backward([before["cls"], before["box"]])
    trainer.step(1)
    after = losses()
    # Measured: -9.8% (cls) and -54% (box); a head cut off from its gradient would only
    # drift through the shared backbone and pyramid.
    for key in ("cls", "box"):
        assert after[key].asscalar() < 0.95 * before[key].asscalar(), key


def test_decode_keeps_the_best_box_per_class():
    anchors = mx.nd.array([[10, 10, 50, 50], [12, 10, 52, 50], [100, 100, 140, 140],
                           [-10, 150, 30, 190], [100, 30, 140, 70]])
    logits = np.full((1, 5, 2), -10, np.float32)
    logits[0, 0, 1] = 3.0   # class 2, the best
    logits[0, 1, 1] = 2.0   # class 2 again, IoU 0.9 with anchor 0: suppressed
    logits[0, 1, 0] = 1.0   # class 1 on the same box: another class, kept
    logits[0, 2, 0] = -3.5  # score 0.029, under 0.05: dropped
    logits[0, 3, 0] = 0.0   # crosses the left border: clipped
    logits[0, 4, 1] = 0.5
    deltas = np.zeros((1, 5, 4), np.float32)
    deltas[0, 4] = [1, 0, 0, math.log(2) / BOX_STDS[3]]  # 4 px right, twice as tall
    out = decode_detections(mx.nd.array(logits), mx.nd.array(deltas), anchors, 200).asnumpy()
    assert out.shape == (1, 100, 6)
    sigmoid = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    np.testing.assert_allclose(out[0, :4], [[2, sigmoid(3), 10, 10, 50, 50],
                                            [1, sigmoid(1), 12, 10, 52, 50],
                                            [2, sigmoid(0.5), 104, 10, 144, 90],
                                            [1, 0.5, 0, 150, 30, 190]], rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(out[0, 4:], -1)


def test_registry_tells_the_task_and_takes_classes():
    assert models.model_task("ssd320_resnet50_fpn") == "detection"
    assert models.model_task("resnet50_v1.5") == "classification"
    net = models.get_model("ssd256_resnet18_fpn", classes=5)
    assert net.classes == 5 and net.image_size == (256, 256)
    with pytest.raises(ValueError, match="ssd320_resnet18_fpn"):
        models.model_task("ssd300_vgg16")


def test_the_exported_network_gives_the_same_detections(tmp_path):
    from engine.checkpoint import export_for_deployment
    from models.ssd import detect
    net = models.build_network("ssd128_resnet18_fpn64", 5, "NCHW", (3, 128, 128), "float32",
                               mx.cpu(), seed=4)
    images = mx.nd.random.uniform(-2, 2, shape=(2, 3, 128, 128))
    # An untrained network scores everything near its prior (0.01): a threshold below it.
    expected = net.detect(images, score_thresh=0.001).asnumpy()
    export_for_deployment(net, str(tmp_path / "ssd"), 3)
    deployed = mx.gluon.SymbolBlock.imports(str(tmp_path / "ssd-symbol.json"), ["data"],
                                            str(tmp_path / "ssd-0003.params"))
    found = detect(deployed, images, score_thresh=0.001).asnumpy()
    assert (expected[:, :, 1] > 0).sum() == 200  # 100 detections per image
    np.testing.assert_array_equal(found[:, :, 0], expected[:, :, 0])
    np.testing.assert_allclose(found[:, :, 1:], expected[:, :, 1:], rtol=1e-5, atol=1e-4)


def test_float16_cast_keeps_every_batchnorm_float32_and_float32_outputs():
    net = models.build_network("ssd128_resnet18_fpn64", 5, "NCHW", (3, 128, 128), "float32",
                               mx.cpu())
    models.cast_network(net, "float16")
    dtypes = {name: np.dtype(p.dtype) for name, p in net.collect_params().items()}
    batchnorm = [n for n in dtypes if "batchnorm" in n]
    convs = [n for n in dtypes if "conv" in n and n.endswith("weight")]
    # Backbone, pyramid and the towers' per-level BatchNorms (2 towers x 2 convs x 5 levels).
    assert len([n for n in batchnorm if "head" in n and n.endswith("gamma")]) == 20
    assert all(dtypes[n] == np.float32 for n in batchnorm)
    assert convs and all(dtypes[n] == np.float16 for n in convs)
    outputs = net(mx.sym.var("data"))
    assert mx.sym.Group(outputs).tojson().count('"amp_cast"') >= 2  # both outputs float32


def _float16_step_on_gpu(layout):
    """One float16 SSD training step on the GPU: (losses, the first conv's gradient)."""
    ctx = mx.gpu(0)
    shape = (3, 128, 128)
    net = models.build_network("ssd128_resnet18_fpn64", 5, layout, shape, "float32", ctx)
    models.cast_network(net, "float16")
    images = mx.nd.random.uniform(shape=(2, 3, 128, 128), ctx=ctx, dtype="float16")
    if layout == "NHWC":
        images = images.transpose((0, 2, 3, 1))
    boxes = mx.nd.array([[[10, 20, 60, 70], [70, 30, 120, 90]], [[5, 5, 100, 110],
                                                                 [-1, -1, -1, -1]]], ctx=ctx)
    labels = mx.nd.array([[1, 3], [5, -1]], ctx=ctx)
    cls_targets, box_targets = encode_targets(net.anchors(ctx=ctx), boxes, labels)
    with mx.autograd.record():
        cls_logits, box_deltas = net(images)
        losses = ssd_loss(cls_logits, box_deltas, cls_targets, box_targets)
    mx.autograd.backward(list(losses.values()))
    first = next(p for name, p in net.collect_params().items() if name.endswith("weight"))
    return {k: v.asscalar() for k, v in losses.items()}, cls_logits.dtype, first.grad()


@pytest.mark.gpu
def test_float16_training_step_on_gpu():
    losses, out_dtype, grad = _float16_step_on_gpu("NCHW")
    assert out_dtype == np.float32 and grad.dtype == np.float16
    assert all(np.isfinite(v) and v > 0 for v in losses.values())
    assert float(grad.abs().sum().asscalar()) > 0


@pytest.mark.gpu
def test_nhwc_float16_training_step_on_gpu():
    losses, _, grad = _float16_step_on_gpu("NHWC")
    assert all(np.isfinite(v) and v > 0 for v in losses.values())
    assert float(grad.abs().sum().asscalar()) > 0


@pytest.mark.gpu
def test_network_on_gpu_matches_cpu_and_detects():
    cpu = models.build_network("ssd128_resnet18_fpn64", 5, "NCHW", (3, 128, 128), "float32",
                               mx.cpu(), seed=2)
    gpu = models.build_network("ssd128_resnet18_fpn64", 5, "NCHW", (3, 128, 128), "float32",
                               mx.gpu(0), seed=2)
    for (_, a), (_, b) in zip(sorted(cpu.collect_params().items()),
                              sorted(gpu.collect_params().items())):
        b.set_data(a.data().as_in_context(mx.gpu(0)))
    images = mx.nd.random.uniform(-2, 2, shape=(2, 3, 128, 128))
    for a, b in zip(cpu(images), gpu(images.as_in_context(mx.gpu(0)))):
        np.testing.assert_allclose(b.asnumpy(), a.asnumpy(), rtol=1e-3, atol=1e-3)
    # Decoding and NMS run through ops/' CUDA kernels: full, best-first, boxes in the image.
    found = gpu.detect(images.as_in_context(mx.gpu(0)), score_thresh=0.001).asnumpy()
    assert found.shape == (2, 100, 6) and (found[:, :, 1] > 0).all()
    assert (np.diff(found[:, :, 1], axis=1) <= 0).all()
    assert (found[:, :, 2:] >= 0).all() and (found[:, :, 2:] <= 128).all()
