"""Mask R-CNN: shapes of both registered networks, anchors / targets / proposals against the
ops/ references, mask targets against pycocotools, crowd regions, a training step on the five
losses with the frozen layers left alone, backbone checkpoints, RoIAlign over FPN levels,
inference output and mask pasting; float16 casting (and a float16 step where a GPU MXNet
exists)."""
import mxnet as mx
import numpy as np
import pytest

import models
import ops
from models.mask_rcnn import LOSS_NAMES, paste_masks
from models.roi_heads import (DetectSettings, RoISettings, multilevel_roi_align,
                              roi_levels)
from models.rpn import RPNSettings
from models.ssd_loss import intersection_over_area

CLASSES = 3
CROWD = CLASSES + 1
SEED = 11
# A fixed batch: 2 images of 128x160 (the second one 112x144 inside the padding), boxes
# with their polygons (a rectangle, a triangle, a 12-pixel square that no anchor overlaps
# by 0.3, a hexagon, an L), a crowd region, padding.
BOXES = np.array([[[10, 20, 60, 90], [70, 30, 150, 120], [100, 4, 112, 16], [-1, -1, -1, -1]],
                  [[20, 10, 100, 90], [60, 50, 140, 110], [0, 0, 50, 40], [-1, -1, -1, -1]]],
                 np.float32)
LABELS = np.array([[1, 2, 3, -1], [3, 1, CROWD, -1]], np.float32)
POLYGONS = [[[[10, 20, 60, 20, 60, 90, 10, 90]], [[70, 30, 150, 30, 110, 120]],
             [[100, 4, 112, 4, 112, 16, 100, 16]]],
            [[[40, 10, 80, 10, 100, 50, 80, 90, 40, 90, 20, 50]],
             [[60, 50, 140, 50, 140, 70, 80, 70, 80, 110, 60, 110]], []]]
IM_HW = np.array([[128, 160], [112, 144]], np.float32)


def _images(batch=2, height=128, width=160):
    return mx.nd.array(np.random.RandomState(0).randn(batch, 3, height, width))


def _net(name="maskrcnn_r18_fpn", seed=0, **settings):
    net = models.get_model(name, classes=CLASSES, **settings)
    mx.random.seed(seed)
    net.initialize(models.default_initializer())
    net(_images(1, 64, 64))  # deferred shapes drawn now, under the seed, in any test order
    return net


@pytest.fixture(scope="module")
def small_net():
    return _net()


@pytest.fixture(scope="module")
def outputs(small_net):
    """One training pass of the small network on the fixed batch."""
    verts, polys = ops.pack_polygons(POLYGONS)
    with mx.autograd.record():
        out = small_net.forward_train(_images(), BOXES, LABELS, verts, polys, IM_HW, seed=SEED)
    return out


def test_training_and_inference_shapes_of_the_small_network(small_net, outputs):
    roi = small_net.roi_settings
    levels = [(32, 40), (16, 20), (8, 10), (4, 5), (2, 3)]
    count = 3 * sum(h * w for h, w in levels)
    assert outputs.anchors.shape == (count, 4)
    assert outputs.rpn_logits.shape == (2, count) and outputs.rpn_deltas.shape == (2, count, 4)
    assert outputs.proposals[0].shape == (2, 2000, 4)
    assert outputs.cls_logits.shape == (2, roi.num_sample, CLASSES + 1)
    assert outputs.box_deltas.shape == (2, roi.num_sample, CLASSES, 4)
    assert outputs.sample.mask_targets.shape == (2, 128, 28, 28)
    # The mask head ran on the leading rows that hold the positives, in multiples of 16.
    positives = (outputs.sample.labels.asnumpy() > 0).sum(axis=1).max()
    rows = outputs.mask_logits.shape[1]
    assert positives <= rows < positives + 16 and rows % 16 == 0
    assert outputs.mask_logits.shape == (2, rows, CLASSES, 28, 28)
    losses = small_net.losses(outputs)
    assert tuple(losses) == LOSS_NAMES
    assert all(np.isfinite(v.asscalar()) and v.asscalar() > 0 for v in losses.values())
    detections, masks = small_net(_images(), IM_HW)
    assert detections.shape == (2, 100, 6) and masks.shape == (2, 100, 28, 28)


def test_the_r50_network_builds_trains_and_detects_at_a_small_size():
    """The recipe network through the registry and build_network (as train.py builds one),
    at 64x64 with small counts so that it runs in seconds."""
    net = models.build_network("maskrcnn_r50_fpn", CLASSES, "NCHW", (3, 64, 64), "float32",
                               mx.cpu(), rpn=RPNSettings(post_nms_top_n_train=64,
                                                         post_nms_top_n_test=32),
                               roi=RoISettings(num_sample=32),
                               detect=DetectSettings(max_detections=5))
    detections, masks = net(_images(1, 64, 64))
    assert detections.shape == (1, 5, 6) and masks.shape == (1, 5, 28, 28)
    verts, polys = ops.pack_polygons([[[[4, 4, 40, 4, 40, 40]]]])
    with mx.autograd.record():
        out = net.forward_train(_images(1, 64, 64), np.array([[[4, 4, 40, 40]]], np.float32),
                                np.array([[2]], np.float32), verts, polys)
        losses = net.losses(out)
        total = mx.nd.add_n(*losses.values())
    total.backward()
    assert out.cls_logits.shape == (1, 32, CLASSES + 1)
    assert out.mask_logits.shape == (1, 8, CLASSES, 28, 28)
    assert net.backbone.channels == (256, 512, 1024, 2048)
    assert all(np.isfinite(v.asscalar()) for v in losses.values())


def test_anchors_targets_and_proposals_equal_the_ops_references(small_net, outputs):
    """What the network makes inside equals direct calls of ops/ on the same fixed batch:
    anchors, RPN targets (same sampler seed; the crowd region of image 2 only makes
    ignored anchors, so the crowd-free image must match exactly), proposals."""
    settings = small_net.rpn_settings
    shapes = [(32, 40), (16, 20), (8, 10), (4, 5), (2, 3)]
    anchors = ops.generate_anchors(shapes, (4, 8, 16, 32, 64), (32, 64, 128, 256, 512))
    np.testing.assert_array_equal(outputs.anchors.asnumpy(), anchors.asnumpy())
    objects = mx.nd.array(np.where(((LABELS >= 1) & (LABELS <= CLASSES))[..., None], BOXES, -1))
    im_hw = mx.nd.array(IM_HW)
    reference = ops.rpn_targets(anchors, objects, im_hw, num_sample=256, pos_fraction=0.5,
                                fg_iou_thresh=0.7, bg_iou_thresh=0.3, low_quality="all",
                                seed=SEED)
    ours = outputs.rpn_targets
    for theirs, mine in zip(reference, ours):
        np.testing.assert_array_equal(mine.asnumpy()[0], theirs.asnumpy()[0])
    # Image 2: the same positives; negatives only where the reference's are (minus crowd).
    cls, ref_cls = ours[0].asnumpy()[1], reference[0].asnumpy()[1]
    np.testing.assert_array_equal(cls == 1, ref_cls == 1)
    assert (cls == 1).sum() > 0 and (cls == 0).sum() > 0
    # Proposals: decode with the image sizes, then per-level top-k, NMS, post top-k.
    boxes = ops.box_decode(outputs.rpn_deltas, anchors, im_hw=im_hw)
    rois, _, num = ops.select_proposals(boxes, outputs.rpn_logits,
                                        [3 * h * w for h, w in shapes],
                                        settings.pre_nms_top_n_train,
                                        settings.post_nms_top_n_train, 0.7)
    np.testing.assert_array_equal(outputs.proposals[0].asnumpy(), rois.asnumpy())
    np.testing.assert_array_equal(outputs.proposals[1].asnumpy(), num.asnumpy())
    assert (num.asnumpy() > 100).all()


def test_sampled_rois_follow_the_recipe(outputs):
    """512 RoIs per image, positives (IoU >= 0.5 with their object, its class) first and at
    most a quarter, negatives below 0.5 with every object, every object among the positives
    (objects are added to the proposals)."""
    sample = outputs.sample
    labels = sample.labels.asnumpy()
    rois = sample.rois.asnumpy()
    matches = sample.matches.asnumpy()
    for b in range(2):
        objects = np.where(((LABELS[b] >= 1) & (LABELS[b] <= CLASSES)))[0]
        iou = ops.box_iou(mx.nd.array(rois[b]), mx.nd.array(BOXES[b, objects])).asnumpy()
        positive, negative = labels[b] > 0, labels[b] == 0
        assert 0 < positive.sum() <= 128 and positive.sum() + negative.sum() == 512
        assert positive[:positive.sum()].all()  # positives first
        rows = np.searchsorted(objects, matches[b, positive])
        np.testing.assert_array_equal(labels[b, positive], LABELS[b, matches[b, positive]])
        assert (iou[positive, rows] >= 0.5).all()
        assert (iou[negative].max(axis=1) < 0.5).all()
        exact = np.isclose(iou[positive], 1.0)
        assert exact.any(axis=0).all()  # each object's own box is a positive RoI


def test_mask_targets_match_pycocotools(outputs):
    """The mask target of every positive RoI equals pycocotools' rasterisation of its
    object's polygons moved into the RoI at 28x28 (mean IoU >= 0.95)."""
    from pycocotools import mask as mask_utils
    sample = outputs.sample
    targets = sample.mask_targets.asnumpy()
    labels, rois, matches = (sample.labels.asnumpy(), sample.rois.asnumpy(),
                             sample.matches.asnumpy())
    ious = []
    for b in range(2):
        for r in np.where(labels[b, :targets.shape[1]] > 0)[0]:
            x1, y1, x2, y2 = rois[b, r]
            scale = np.array([28 / max(x2 - x1, 1), 28 / max(y2 - y1, 1)])
            moved = [list(((np.reshape(p, (-1, 2)) - [x1, y1]) * scale).ravel())
                     for p in POLYGONS[b][matches[b, r]]]
            reference = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(moved, 28, 28)))
            ours = targets[b, r] > 0
            union = (ours | (reference > 0)).sum()
            ious.append((ours & (reference > 0)).sum() / union)
    assert len(ious) > 10
    assert np.mean(ious) >= 0.95, f"mean IoU {np.mean(ious):.3f} over {len(ious)} RoIs"


def test_crowd_rows_make_no_positives_and_no_negatives(small_net):
    """An image whose only row is a crowd region has no positive anchor or RoI, and no anchor
    or RoI mostly inside the region is a negative; the same box as an object makes positives."""
    crowd_box = np.array([[[20, 20, 110, 100]]], np.float32)
    verts, polys = ops.pack_polygons([[[]]])
    image = _images(1)
    with mx.autograd.pause():
        crowd = small_net.forward_train(image, crowd_box, np.array([[CROWD]], np.float32),
                                        verts, polys, seed=SEED)
    rpn_cls = crowd.rpn_targets[0].asnumpy()[0]
    assert (rpn_cls == 1).sum() == 0 and (rpn_cls == 0).sum() > 0
    inside = intersection_over_area(crowd.anchors, mx.nd.array(crowd_box)).asnumpy()[0, :, 0]
    assert (inside >= 0.7).sum() > 50 and (rpn_cls[inside >= 0.7] == -1).all()
    labels = crowd.sample.labels.asnumpy()[0]
    assert (labels > 0).sum() == 0 and (labels == 0).sum() > 0
    roi_inside = intersection_over_area(crowd.sample.rois, mx.nd.array(crowd_box)).asnumpy()
    assert (roi_inside[0, labels == 0, 0] < 0.7).all()
    # No objects at all: the box and mask losses are 0, the others finite.
    losses = {name: value.asscalar() for name, value in small_net.losses(crowd).items()}
    assert losses["rpn_box"] == losses["roi_box"] == losses["mask"] == 0, losses
    assert np.isfinite(losses["rpn_objectness"]) and np.isfinite(losses["roi_cls"])
    verts, polys = ops.pack_polygons([[[[20, 20, 110, 20, 110, 100, 20, 100]]]])
    with mx.autograd.pause():
        obj = small_net.forward_train(image, crowd_box, np.array([[1]], np.float32), verts,
                                      polys, seed=SEED)
    assert (obj.rpn_targets[0].asnumpy() == 1).sum() > 0
    assert (obj.sample.labels.asnumpy() > 0).sum() > 0


def _scaled_batch(scale=0.75):
    boxes = np.where(BOXES >= 0, BOXES * np.float32(scale), BOXES)
    polygons = [[[list(np.asarray(p) * scale) for p in obj] for obj in image]
                for image in POLYGONS]
    return boxes, ops.pack_polygons(polygons)


def test_a_step_on_each_loss_lowers_it():
    """An SGD step along the gradient of each of the five losses (autograd through the real
    network from one recorded pass) lowers that loss on a fixed batch, with the same anchor
    sample and RoIs before and after. (Each loss alone: from random weights the losses pull
    the shared layers apart, so one step on their sum need not lower every one of them.)"""
    net = _net(seed=1, roi=RoISettings(num_sample=128))  # 32 mask RoIs: faster
    # Small inputs keep the random network's logits moderate (it is positively homogeneous:
    # no biases before the heads, frozen BatchNorm an identity).
    images = _images(2, 64, 96) * 0.1
    boxes, (verts, polys) = _scaled_batch(0.5)
    with mx.autograd.record():
        out = net.forward_train(images, boxes, LABELS, verts, polys, seed=SEED)
        losses = net.losses(out)
    params = [p for p in net.collect_params().values() if p.grad_req != "null"]
    start = [p.data().copy() for p in params]
    gradients = {}
    for name in LOSS_NAMES:
        losses[name].backward(retain_graph=True)
        gradients[name] = [p.grad().copy() for p in params]
    for name in LOSS_NAMES:
        for param, weight, grad in zip(params, start, gradients[name]):
            param.set_data(weight - 1e-3 * grad)
        after = net.train_losses(images, boxes, LABELS, verts, polys, seed=SEED,
                                 sample=out.sample)[name].asscalar()
        assert after < losses[name].asscalar(), (name, losses[name].asscalar(), after)


def _frozen_and_trained(net):
    stem_and_stage1 = {name for index in range(5)
                       for name in net.backbone.features[index].collect_params()}
    frozen, trained = {}, {}
    for name, param in net.collect_params().items():
        if name in stem_and_stage1 or "batchnorm" in name:
            frozen[name] = param.data().asnumpy().copy()
        elif param.grad_req != "null":
            trained[name] = param.data().asnumpy().copy()
    return frozen, trained


def test_a_training_step_lowers_the_loss_and_leaves_frozen_layers_alone():
    """A Trainer step on the sum of the five losses lowers the sum; the stem, stage 1 and
    every BatchNorm (gamma, beta, running mean and variance) stay as they were, while every
    other parameter with a gradient moves."""
    net = _net(seed=1, roi=RoISettings(num_sample=128))  # 32 mask RoIs: faster
    images = _images(2, 96, 128) * 0.1
    boxes, (verts, polys) = _scaled_batch()
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 1e-3})
    with mx.autograd.record():
        out = net.forward_train(images, boxes, LABELS, verts, polys, seed=SEED)
        total = mx.nd.add_n(*net.losses(out).values())
    frozen, trained = _frozen_and_trained(net)
    total.backward()
    pulled = {name for name, param in net.collect_params().items()
              if param.grad_req != "null" and param.grad().abs().sum().asscalar() > 0}
    trainer.step(1)
    frozen_after, trained_after = _frozen_and_trained(net)
    assert len(frozen) > 40 and frozen.keys() == frozen_after.keys()
    for name, value in frozen.items():
        np.testing.assert_array_equal(frozen_after[name], value, err_msg=name)
    after = mx.nd.add_n(*net.train_losses(images, boxes, LABELS, verts, polys, seed=SEED,
                                          sample=out.sample).values())
    assert after.asscalar() < total.asscalar()
    moved = {name for name, value in trained.items()
             if not np.array_equal(trained_after[name], value)}
    # (Anchors of P4-P6, 128-512 pixels, all cross the border of a 96x128 image: those
    # levels' own layers get no gradient here.)
    assert pulled <= moved, sorted(pulled - moved)[:5]
    for part in ("stage2", "stage4", "fpn_lateral", "fpn_output", "rpn", "box_head",
                 "mask_head"):
        assert any(part in name for name in moved), part


def test_a_classifier_checkpoint_loads_into_the_backbone(tmp_path):
    """`--backbone-weights` path: a resnet18_v1.5 classifier of this project saved with
    save_parameters loads into the small network's backbone by structural name, and its
    frozen layers stay frozen."""
    classifier = models.get_model("resnet18_v1.5", classes=10)
    mx.random.seed(3)
    classifier.initialize(models.default_initializer())
    classifier(mx.nd.zeros((1, 3, 64, 64)))
    path = str(tmp_path / "model.params")
    classifier.save_parameters(path)
    net = _net()
    models.load_backbone_weights(net.backbone, path)
    theirs = classifier._collect_params_with_prefix()
    for name, param in net.backbone._collect_params_with_prefix().items():
        np.testing.assert_array_equal(param.data().asnumpy(), theirs[name].data().asnumpy())
    assert net.backbone.features[0].weight.grad_req == "null"
    with pytest.raises(ValueError, match="does not fit"):
        models.load_backbone_weights(models.get_model("maskrcnn_r50_fpn").backbone, path)


def test_multilevel_roi_align_equals_roi_align_of_each_roi_on_its_level():
    """Pooling all RoIs at once (skipped rows masked) gives what RoIAlign gives for each RoI
    alone on its FPN level; MXNet's CPU RoIAlign corrupts the first rows when skipped RoIs
    are present, which this guards against."""
    rng = np.random.RandomState(0)
    settings = RoISettings()
    levels = [mx.nd.array(rng.randn(2, 4, 128 >> k, 128 >> k)) for k in range(4)]
    xy = rng.uniform(0, 300, (2, 60, 2))
    wh = np.exp(rng.uniform(np.log(8), np.log(900), (2, 60, 2)))
    rois = mx.nd.array(np.concatenate([xy, xy + wh], -1))
    valid = rng.rand(2, 60) > 0.3
    valid[0, :2] = True  # the first rows are those MXNet's skipped RoIs overwrite
    valid = mx.nd.array(valid)
    pooled = multilevel_roi_align(levels, rois, valid, 7, settings).asnumpy()
    level = roi_levels(rois, settings).asnumpy().astype(int)
    assert set(level.ravel()) == {2, 3, 4, 5}
    for b in range(2):
        for r in range(60):
            if not valid[b, r]:
                assert (pooled[b * 60 + r] == 0).all()
                continue
            k = level[b, r] - 2
            alone = mx.nd.contrib.ROIAlign(levels[k][b:b + 1],
                                           mx.nd.array([[0, *rois[b, r].asnumpy()]]), (7, 7),
                                           1.0 / settings.strides[k], sample_ratio=2)
            np.testing.assert_array_equal(pooled[b * 60 + r], alone.asnumpy()[0])


def test_float16_levels_are_pooled_in_float32_and_come_back_in_float16():
    """RoIAlign of float16 pyramid levels runs in float32 on the same RoIs (their coordinates
    keep their fractions) and returns float16 rows for the float16 heads."""
    rng = np.random.RandomState(1)
    settings = RoISettings()
    levels = [mx.nd.array(rng.randn(2, 4, 128 >> k, 128 >> k)).astype("float16")
              for k in range(4)]
    xy = rng.uniform(0, 300, (2, 20, 2))
    rois = mx.nd.array(np.concatenate([xy, xy + rng.uniform(8, 400, (2, 20, 2))], -1) + 0.3)
    valid = mx.nd.array(rng.rand(2, 20) > 0.2)
    pooled = multilevel_roi_align(levels, rois, valid, 7, settings)
    assert pooled.dtype == np.float16
    in_float32 = multilevel_roi_align([x.astype("float32") for x in levels], rois, valid, 7,
                                      settings)
    np.testing.assert_array_equal(pooled.asnumpy(), in_float32.asnumpy().astype(np.float16))


def test_float16_cast_keeps_batchnorm_in_float32_and_the_heads_outputs_float32():
    net = _net()
    models.cast_network(net, "float16")
    dtypes = {name: np.dtype(p.dtype) for name, p in net.collect_params().items()}
    assert all(dtypes[n] == np.float32 for n in dtypes if "batchnorm" in n)
    weights = [n for n in dtypes if n.endswith("weight") and "batchnorm" not in n]
    assert len(weights) > 30 and all(dtypes[n] == np.float16 for n in weights)
    # The RPN, box and mask heads hand float32 to the targets, losses and ops/.
    for head, inputs in ((net.rpn_head, [mx.sym.var(f"p{k}") for k in range(5)]),
                         (net.box_head, [mx.sym.var("pooled")]),
                         (net.mask_head, [mx.sym.var("pooled")])):
        outputs = head(*inputs)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        assert mx.sym.Group(outputs).tojson().count('"amp_cast"') == len(outputs), head.name


@pytest.mark.gpu
def test_float16_training_step_and_inference_on_gpu():
    """The small network cast to float16 on a GPU: one training step of the five losses
    (float32, finite, positive) with float16 gradients, then float32 detections and masks."""
    ctx = mx.gpu(0)
    net = models.build_network("maskrcnn_r18_fpn", CLASSES, "NCHW", (3, 64, 64), "float16",
                               ctx)
    images = _images().as_in_context(ctx).astype("float16")
    verts, polys = ops.pack_polygons(POLYGONS)
    with mx.autograd.record():
        losses = net.train_losses(images, BOXES, LABELS, verts, polys, IM_HW, seed=SEED)
    mx.autograd.backward(list(losses.values()))
    values = {k: v.asscalar() for k, v in losses.items()}
    assert all(v.dtype == np.float32 for v in losses.values())
    assert all(np.isfinite(v) and v > 0 for v in values.values()), values
    grads = [p.grad() for p in net.collect_params().values() if p.grad_req != "null"
             and p.name.endswith("weight") and np.dtype(p.dtype) == np.float16]
    assert grads and all(np.isfinite(g.asnumpy()).all() for g in grads)
    assert sum(float(g.abs().sum().asscalar()) for g in grads) > 0
    detections, masks = net(images, IM_HW)
    assert detections.dtype == masks.dtype == np.float32
    assert detections.shape == (2, 100, 6) and masks.shape == (2, 100, 28, 28)


def test_roi_levels_follow_the_fpn_rule():
    sides = np.array([20, 56, 111, 112, 224, 447, 448, 1000], np.float32)
    rois = mx.nd.array(np.stack([0 * sides, 0 * sides, sides, sides], -1)[None])
    np.testing.assert_array_equal(roi_levels(rois, RoISettings()).asnumpy()[0],
                                  [2, 2, 2, 3, 4, 4, 5, 5])


def test_detections_are_thresholded_class_wise_suppressed_and_masked(small_net):
    """Detections: classes 1..C, scores at or above the threshold (0.6 here, where the random
    network's scores reach 0.99, so that some images have fewer than 100), best first, inside
    each image, no two of a class overlapping by more than the NMS threshold; masks are
    probabilities, and zero on padding rows."""
    net = _net(detect=DetectSettings(score_thresh=0.6))
    detections, masks = net(_images(), IM_HW)
    detections, masks = detections.asnumpy(), masks.asnumpy()
    for b in range(2):
        found = detections[b, :, 0] >= 1
        assert 0 < found.sum() < 100 and (detections[b, ~found] == -1).all()
        rows = detections[b, found]
        assert set(rows[:, 0]) <= set(range(1, CLASSES + 1))
        assert (rows[:, 1] >= 0.6).all() and (np.diff(rows[:, 1]) <= 0).all()
        assert (rows[:, 2:] >= 0).all() and (rows[:, [2, 4]] <= IM_HW[b, 1]).all()
        assert (rows[:, [3, 5]] <= IM_HW[b, 0]).all()
        iou = ops.box_iou(mx.nd.array(rows[:, 2:]), mx.nd.array(rows[:, 2:])).asnumpy()
        same_class = rows[:, 0][:, None] == rows[:, 0][None, :]
        pairs = np.triu(np.ones_like(iou, bool), 1)
        assert (iou[pairs & same_class] <= 0.5 + 1e-6).all()
        assert (masks[b, found] >= 0).all() and (masks[b, found] <= 1).all()
        assert (masks[b, ~found] == 0).all()
    # Suppression is per class: at the recipe's threshold 0.05 the RoIs of the random
    # network on faint images (moderate logits) pass with several classes, which overlap.
    rows = small_net(_images(1) * 0.1, IM_HW[:1])[0].asnumpy()[0]
    iou = ops.box_iou(mx.nd.array(rows[:, 2:]), mx.nd.array(rows[:, 2:])).asnumpy()
    other_class = rows[:, 0][:, None] != rows[:, 0][None, :]
    assert (iou[other_class] > 0.5).any()


def test_paste_masks_fills_each_box_in_one_call():
    masks = np.ones((2, 28, 28), np.float32)
    boxes = np.array([(10, 20, 50, 40), (60, 50, 120, 90)], np.float64)  # the 2nd clipped
    pasted = paste_masks(masks, boxes, (64, 80))
    assert pasted.shape == (2, 64, 80) and pasted.dtype == np.uint8
    ys, xs = np.nonzero(pasted[0])
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (10, 49, 20, 39)
    assert pasted[1, 50:, 60:].all() and pasted[1].sum() == 14 * 20
    # What pycocotools' RLE encoder takes, with no copy made.
    assert pasted.transpose(1, 2, 0).flags.f_contiguous
    on_device = paste_masks(mx.nd.array(masks), mx.nd.array(boxes), (64, 80))
    np.testing.assert_array_equal(on_device, pasted)


def test_paste_masks_of_no_detections_is_empty():
    assert paste_masks(np.zeros((0, 28, 28)), np.zeros((0, 4)), (64, 80)).shape == (0, 64, 80)


def test_registered_for_instance_segmentation_with_the_recipe_as_its_defaults():
    from engine.options import apply_task_defaults, build_parser, mask_rcnn_settings
    assert models.model_task("maskrcnn_r50_fpn") == "instance_segmentation"
    assert models.list_models("instance_segmentation") == ["maskrcnn_r18_fpn",
                                                           "maskrcnn_r50_fpn"]
    args = apply_task_defaults(build_parser().parse_args(["--arch", "maskrcnn_r50_fpn"]))
    assert (args.batch_size, args.lr, args.lr_batch, args.num_steps, args.warmup_steps,
            args.lr_schedule, args.lr_decay_steps, args.momentum, args.wd) == (
        2, 0.02, 16, 90000, 500, "step", "60000,80000", 0.9, 1e-4)
    assert args.warmup_begin_factor == pytest.approx(1 / 3)
    assert (args.min_size, args.max_size, args.nms_threshold) == ([800], 1333, 0.5)
    settings = mask_rcnn_settings(args)
    assert settings["rpn"] == RPNSettings() and settings["roi"] == RoISettings()
    assert settings["detect"] == DetectSettings()
    # Every recipe number is a flag.
    args = build_parser().parse_args(["--arch", "maskrcnn_r50_fpn", "--rpn-fg-iou", "0.6",
                                      "--aspect-ratios", "1", "--anchor-sizes", "16,32",
                                      "--roi-batch-size", "128", "--nms-threshold", "0.4"])
    settings = mask_rcnn_settings(apply_task_defaults(args))
    assert settings["rpn"].fg_iou_thresh == 0.6 and settings["rpn"].aspect_ratios == (1.0,)
    assert settings["rpn"].anchor_sizes == (16, 32)
    assert settings["roi"].num_sample == 128 and settings["detect"].nms_thresh == 0.4
    with pytest.raises(ValueError, match="NCHW"):
        models.get_model("maskrcnn_r18_fpn", layout="NHWC")


def _np_bce(x, t):
    return np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))


def _np_smooth_l1(x, beta):
    x = np.abs(x)
    return np.where(x < beta, 0.5 * x * x / beta, x - 0.5 * beta)


def test_losses_equal_their_definitions():
    """The five losses on random predictions and targets against numpy: maskrcnn-benchmark's
    normalisations (sampled anchors / sampled RoIs / positive mask pixels), turning points
    1/9 and 1, the ground-truth class's box deltas and mask channel."""
    from models.roi_heads import RoISample, roi_losses
    from models.rpn import rpn_losses
    rng = np.random.RandomState(0)
    b, a, r, rm, c, s = 2, 50, 12, 4, 3, 5
    logits, deltas = rng.randn(b, a), rng.randn(b, a, 4)
    cls_target = rng.choice([-1, 0, 1], (b, a)).astype(np.float32)
    box_mask = np.repeat((cls_target == 1)[..., None], 4, -1).astype(np.float32)
    box_target = rng.randn(b, a, 4) * box_mask
    objectness, rpn_box = rpn_losses(*(mx.nd.array(v) for v in (logits, deltas, cls_target,
                                                                box_target, box_mask)))
    sampled = cls_target >= 0
    np.testing.assert_allclose(objectness.asscalar(),
                               _np_bce(logits, cls_target)[sampled].mean(), rtol=1e-5)
    np.testing.assert_allclose(rpn_box.asscalar(), (_np_smooth_l1(deltas - box_target, 1 / 9)
                                                    * box_mask).sum() / sampled.sum(), rtol=1e-5)
    labels = np.array([[2, 1, 3, 0, 0, 0, 0, 0, 0, 0, -1, -1],
                       [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]], np.float32)
    targets = rng.randn(b, r, 4) * (labels > 0)[..., None]
    mask_targets = (rng.rand(b, rm, s, s) > 0.5).astype(np.float32)
    sample = RoISample(None, mx.nd.array(labels), None, mx.nd.array(targets),
                       mx.nd.array(np.repeat((labels > 0)[..., None], 4, -1)),
                       mx.nd.array(mask_targets))
    cls_logits, box_deltas = rng.randn(b, r, c + 1), rng.randn(b, r, c, 4)
    mask_logits = rng.randn(b, rm, c, s, s)
    cls, box, mask = roi_losses(mx.nd.array(cls_logits), mx.nd.array(box_deltas),
                                mx.nd.array(mask_logits), sample)
    log_p = cls_logits - np.log(np.exp(cls_logits).sum(-1, keepdims=True))
    rows = np.argwhere(labels >= 0)
    expected_cls = -np.mean([log_p[i, j, int(labels[i, j])] for i, j in rows])
    positives = np.argwhere(labels > 0)
    expected_box = sum(_np_smooth_l1(box_deltas[i, j, int(labels[i, j]) - 1] - targets[i, j],
                                     1.0).sum() for i, j in positives) / len(rows)
    mask_rows = [(i, j) for i, j in positives if j < rm]
    expected_mask = np.mean([_np_bce(mask_logits[i, j, int(labels[i, j]) - 1],
                                     mask_targets[i, j]) for i, j in mask_rows])
    np.testing.assert_allclose([cls.asscalar(), box.asscalar(), mask.asscalar()],
                               [expected_cls, expected_box, expected_mask], rtol=1e-5)
