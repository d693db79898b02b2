"""gluoncv's Mask R-CNN, trained and run the way its own scripts do, for the side-by-side
comparison with the project's (`benchmarking.mask_rcnn_peer`, `benchmarking.mask_rcnn_loaders`).

The model is gluoncv's ``mask_rcnn_fpn_resnet50_v1b_coco`` (ResNet-50 v1b, FPN P2-P6, 2x1024
FC box head, 4x256 mask head) with random weights (``pretrained=False,
pretrained_base=False``), its class predictors reset to the data set's categories, and its
``short`` / ``max_size`` set to the sizes compared. Everything else follows gluoncv's
``scripts/instance/mask_rcnn/train_mask_rcnn.py`` (``--use-fpn``, one device, no AMP):

* data: ``COCOInstance`` (`benchmarking.detection_loaders.gluoncv_dataset`),
  ``MaskRCNNDefaultTrainTransform(net.short, net.max_size, net, ashape=net.ashape,
  multi_stage=True)`` (resize, flip, full-image masks from the polygons, normalise, RPN
  anchor targets) in a ``DataLoader`` with a ``SplitSortedBucketSampler`` and
  ``MaskRCNNTrainBatchify``;
* step: its ``ForwardBackwardTask.forward_backward`` (the net's own RoI sampling and mask
  targets; sigmoid BCE and smooth L1 RPN losses, softmax CE and smooth L1 RoI losses, sigmoid
  BCE mask loss, normalised as there), the next batch fetched after the backward pass as its
  loop prefetches it, its loss and accuracy metrics updated, then ``trainer.step``;
  SGD over ``net.collect_train_params()`` at 0.00125 x batch (or the learning rate given:
  benchmark.py gives 0 where the project trains at 0 from random weights), momentum 0.9,
  weight decay 1e-4 (none on biases); the network hybridized without ``static_alloc`` (its
  defaults).
  The script's ``Parallel`` executor with one thread runs the same call on the main thread.

Inference is its ``validate``: the network's (class ids, scores, boxes, masks) of 1,000
detections (its mask head runs on all 1,000), boxes clipped to the image, then the masks of
the best detections pasted into the image with gluoncv's ``mask.fill``.
"""
import functools
import time

import numpy as np

from benchmarking.detection_loaders import TRAIN_SPLIT, gluoncv_dataset
from benchmarking.stats import images_per_second
from data.streams import endless

MODEL = "mask_rcnn_fpn_resnet50_v1b_coco"
_NO_DATA = "gluoncv's loader produced no batch (fewer training images than one batch?)"


def build_net(classes, min_size, max_size, batch_size=1):
    """gluoncv's Mask R-CNN R-50-FPN, randomly initialised as its script initialises a
    network without ``--resume``, for `classes` (names) at `min_size` / `max_size`."""
    from gluoncv.model_zoo import get_model
    net = get_model(MODEL, pretrained=False, pretrained_base=False,
                    per_device_batch_size=batch_size)
    _initialize(net)
    if list(classes) != list(net.classes):
        net.reset_class(list(classes))
        _initialize(net)
    net.short, net.max_size = min_size, max_size
    return net


def class_names(count):
    """Names for a network of `count` classes: COCO's 80, or placeholders."""
    from gluoncv.data import COCODetection
    if count == len(COCODetection.CLASSES):
        return list(COCODetection.CLASSES)
    return [f"class{i + 1}" for i in range(count)]


def _initialize(net):
    for param in net.collect_params().values():
        if param._data is None:
            param.initialize()


def train_loader(net, dataset, batch_size, workers):
    """The training ``DataLoader`` of train_mask_rcnn.py's ``get_dataloader`` (one device):
    batches of (images, labels, masks, rpn_cls_targets, rpn_box_targets, rpn_box_masks),
    each a tuple with one array per device."""
    import mxnet as mx
    from gluoncv.data.batchify import MaskRCNNTrainBatchify
    from gluoncv.data.transforms.presets.rcnn import MaskRCNNDefaultTrainTransform
    from gluoncv.data.sampler import SplitSortedBucketSampler
    transform = MaskRCNNDefaultTrainTransform(net.short, net.max_size, net, ashape=net.ashape,
                                              multi_stage=True)
    sampler = SplitSortedBucketSampler(dataset.get_im_aspect_ratio(), batch_size, num_parts=1,
                                       part_index=0, shuffle=True)
    return mx.gluon.data.DataLoader(dataset.transform(transform), batch_sampler=sampler,
                                    batchify_fn=MaskRCNNTrainBatchify(net, 1),
                                    num_workers=workers)


def training_setup(data_root, min_size, max_size, batch_size, split=TRAIN_SPLIT):
    """(dataset, net): gluoncv's ``COCOInstance`` over `data_root`'s `split` and its
    network for the dataset's categories, whose anchors and feature shapes its training
    transform uses (`benchmarking.detection_loaders.LoaderSkipped` where gluoncv cannot be
    imported)."""
    dataset = gluoncv_dataset(data_root, split, kind="COCOInstance")
    return dataset, build_net(dataset.classes, min_size, max_size, batch_size)


def train_batches(net, dataset, batch_size, workers):
    """Endless batches of gluoncv's training data path, as its loop takes them (moved to the
    CPU context by `split_and_load`), pass after pass."""
    import mxnet as mx
    loader = train_loader(net, dataset, batch_size, workers)
    try:
        for batch in endless(loader, no_data=_NO_DATA):
            yield split_and_load(batch, mx.cpu())
    finally:
        _settle(loader)


def _settle(loader):
    """Wait for every batch the worker processes of MXNet's `loader` were asked for.

    Each request carries the pickled ``MaskRCNNTrainBatchify`` (1.4 MB: it holds the
    network's feature symbols), and the loader keeps requests in flight (its prefetch, and
    the next pass's, which it starts at the end of each pass). The pool's task thread is
    then often in the middle of writing one into the workers' pipe, and terminating the pool
    (the DataLoader's ``__del__``) deadlocks in CPython's ``Pool.terminate``, which kills
    the workers first. Once every request is answered, that thread is idle and the loader
    stops cleanly. (The pending requests are the pool's ``_cache``.)"""
    pool = getattr(loader, "_worker_pool", None)
    for pending in list(getattr(pool, "_cache", {}).values()):
        pending.wait()


class TrainStep:
    """One iteration of train_mask_rcnn.py's loop on one device (see the module docstring):
    ``step(batch, fetch_next)`` returns the next batch and the seconds spent fetching it."""

    def __init__(self, net, batch_size, learning_rate=None):
        import mxnet as mx
        self.net, self.batch_size = net, batch_size
        self.trainer = _trainer(net, 0.00125 * batch_size if learning_rate is None
                                else learning_rate)
        loss = mx.gluon.loss
        self.rpn_cls_loss = loss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=False)
        self.rpn_box_loss = loss.HuberLoss(rho=1 / 9)
        self.rcnn_cls_loss = loss.SoftmaxCrossEntropyLoss()
        self.rcnn_box_loss = loss.HuberLoss(rho=1.0)
        self.rcnn_mask_loss = loss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=False)
        self.loss_metrics, self.other_metrics = _metrics()
        net.hybridize(static_alloc=False)

    def __call__(self, batch, fetch_next):
        losses, extra = self.forward_backward(batch)
        start = time.perf_counter()
        next_batch = fetch_next()  # the script's prefetch, after the backward pass
        waited = time.perf_counter() - start
        for metric, value in zip(self.loss_metrics, losses):
            metric.update(0, [value])
        for metric, (labels, preds) in zip(self.other_metrics, extra):
            metric.update(labels, preds)
        self.trainer.step(self.batch_size)
        return next_batch, waited

    def loss(self):
        """The sum of the five loss metrics so far (a finite number when training works)."""
        return float(sum(metric.get()[1] for metric in self.loss_metrics))

    def forward_backward(self, shard):
        """train_mask_rcnn.py's ``ForwardBackwardTask.forward_backward`` (no AMP)."""
        import mxnet as mx
        from mxnet import autograd
        data, label, gt_mask, rpn_cls_targets, rpn_box_targets, rpn_box_masks = shard
        with autograd.record():
            gt_label, gt_box = label[:, :, 4:5], label[:, :, :4]
            cls_pred, box_pred, mask_pred, roi, _, matches, rpn_score, rpn_box, _, \
                cls_targets, box_targets, box_masks, indices = self.net(data, gt_box, gt_label)
            rpn_score = rpn_score.squeeze(axis=-1)
            num_rpn_pos = (rpn_cls_targets >= 0).sum()
            rpn_loss1 = self.rpn_cls_loss(rpn_score, rpn_cls_targets, rpn_cls_targets >= 0) \
                * rpn_cls_targets.size / num_rpn_pos
            rpn_loss2 = self.rpn_box_loss(rpn_box, rpn_box_targets, rpn_box_masks) \
                * rpn_box.size / num_rpn_pos
            num_rcnn_pos = (cls_targets >= 0).sum()
            rcnn_loss1 = self.rcnn_cls_loss(cls_pred, cls_targets,
                                            cls_targets.expand_dims(-1) >= 0) \
                * cls_targets.size / num_rcnn_pos
            rcnn_loss2 = self.rcnn_box_loss(box_pred, box_targets, box_masks) \
                * box_pred.size / num_rcnn_pos
            images = indices.shape[0]

            def taken(x):
                return mx.nd.concat(*[mx.nd.take(x[i], indices[i]) for i in range(images)],
                                    dim=0).reshape((images, -1) + x.shape[2:])
            mask_targets, mask_masks = self.net.mask_target(taken(roi), gt_mask,
                                                            taken(matches), taken(cls_targets))
            mask_loss = self.rcnn_mask_loss(mask_pred, mask_targets, mask_masks) \
                * mask_targets.size / mask_masks.sum()
            total = (rpn_loss1 + rpn_loss2).sum() + (rcnn_loss1 + rcnn_loss2).sum() \
                + mask_loss.sum()
            total.backward()
        losses = [rpn_loss1.mean(), rpn_loss2.mean(), rcnn_loss1.sum(), rcnn_loss2.sum(),
                  mask_loss.sum()]
        extra = [([rpn_cls_targets, rpn_cls_targets >= 0], [rpn_score]),
                 ([rpn_box_targets, rpn_box_masks], [rpn_box]),
                 ([cls_targets], [cls_pred]), ([box_targets, box_masks], [box_pred]),
                 ([mask_targets, mask_masks], [mask_pred]),
                 ([mask_targets, mask_masks], [mask_pred])]
        return losses, extra


def _trainer(net, learning_rate):
    """The script's SGD over the trainable parameters (no weight decay on biases)."""
    import mxnet as mx
    net.collect_params().setattr("grad_req", "null")
    net.collect_train_params().setattr("grad_req", "write")
    for param in net.collect_params(".*bias").values():
        param.wd_mult = 0.0
    return mx.gluon.Trainer(net.collect_train_params(), "sgd",
                            {"learning_rate": learning_rate, "wd": 1e-4, "momentum": 0.9})


def _metrics():
    """The script's five loss metrics and six accuracy metrics, updated every step."""
    import mxnet as mx
    from gluoncv.utils.metrics.rcnn import (MaskAccMetric, MaskFGAccMetric, RCNNAccMetric,
                                            RCNNL1LossMetric, RPNAccMetric, RPNL1LossMetric)
    losses = [mx.metric.Loss(name) for name in (
        "RPN_Conf", "RPN_SmoothL1", "RCNN_CrossEntropy", "RCNN_SmoothL1", "RCNN_Mask")]
    return losses, [RPNAccMetric(), RPNL1LossMetric(), RCNNAccMetric(), RCNNL1LossMetric(),
                    MaskAccMetric(), MaskFGAccMetric()]


def split_and_load(batch, ctx):
    """The script's ``split_and_load`` for one device: the arrays of a
    ``MaskRCNNTrainBatchify`` batch (each a tuple with one array per device, or the array
    itself) moved out of the workers' shared memory to `ctx`."""
    return [(item[0] if isinstance(item, (list, tuple)) else item).as_in_context(ctx)
            for item in batch]


def measure_training(data_root, min_size, max_size, batch_size, workers, warmup_iterations,
                     iterations, epochs, on_epoch=None, learning_rate=None):
    """Train gluoncv's Mask R-CNN for `warmup_iterations` uncounted iterations, then
    `epochs` epochs of `iterations`, timing every iteration (the wait for its batch
    included) as train.py's log does.

    Parameters
    ----------
    data_root : str
        A COCO-layout folder; its training split is read.
    workers : int
        ``DataLoader`` worker processes.
    on_epoch : callable, optional
        Called as ``on_epoch(epoch, epochs, img_per_s, warmup)``.
    learning_rate : float, optional
        Default: the script's, 0.00125 x batch.

    Returns
    -------
    dict
        ``img_per_s``, ``iter_ms``, ``data_wait_ms`` (means per counted iteration),
        ``data_wait_share``, ``iterations``, ``epochs``, ``epoch_img_per_s``, ``loss``.
    """
    dataset, net = training_setup(data_root, min_size, max_size, batch_size)
    batches = train_batches(net, dataset, batch_size, workers)
    try:
        step = TrainStep(net, batch_size, learning_rate)
        fetch = functools.partial(next, batches)
        batch = fetch()
        seconds, waits, rates = [], [], []
        phases = ([warmup_iterations] if warmup_iterations else []) + [iterations] * epochs
        for number, count in enumerate(phases):
            warmup = bool(warmup_iterations) and number == 0
            times, batch, waited = _timed_iterations(step, batch, fetch, count)
            rate = images_per_second(batch_size, times)
            if not warmup:
                seconds, waits, rates = seconds + times, waits + waited, rates + [rate]
            if on_epoch is not None:
                on_epoch(number, len(phases), rate, warmup)
        iter_ms, wait_ms = 1000 * float(np.mean(seconds)), 1000 * float(np.mean(waits))
        return {"img_per_s": images_per_second(batch_size, seconds), "iter_ms": iter_ms,
                "data_wait_ms": wait_ms, "data_wait_share": wait_ms / iter_ms,
                "iterations": len(seconds), "epochs": epochs, "epoch_img_per_s": rates,
                "loss": step.loss()}
    finally:
        batches.close()  # stops the DataLoader's worker processes


def _timed_iterations(step, batch, fetch, count):
    """Per-iteration seconds and data waits of `count` steps. Each step's work is waited
    for before its time is taken (MXNet runs asynchronously; the script's metric updates
    read every step's outputs back anyway)."""
    import mxnet as mx
    times, waits = [], []
    for _ in range(count):
        start = time.perf_counter()
        batch, waited = step(batch, fetch)
        mx.nd.waitall()
        times.append(time.perf_counter() - start)
        waits.append(waited)
    return times, batch, waits


def predict_and_paste(net, image, max_detections):
    """What gluoncv's ``validate`` does with one image (1, 3, H, W): the network's 1,000
    detections with their masks, boxes clipped to the image, and the masks of the best
    `max_detections` valid ones pasted into an H x W image. Returns how many were pasted."""
    from gluoncv.data.transforms.mask import fill
    from gluoncv.nn.bbox import BBoxClipToImage
    ids, scores, boxes, masks = net(image)
    boxes = BBoxClipToImage()(boxes, image)
    ids, scores = ids[0].asnumpy().ravel(), scores[0].asnumpy().ravel()
    valid = np.where(ids >= 0)[0]
    best = valid[np.argsort(-scores[valid], kind="stable")[:max_detections]]
    height, width = image.shape[2:]
    if len(best):
        fill(masks[0].asnumpy()[best], boxes[0].asnumpy()[best], (width, height))
    return len(best)


def inference_net(classes, min_size, max_size):
    """gluoncv's network for inference, hybridized as its ``validate`` hybridizes it."""
    net = build_net(classes, min_size, max_size)
    net.hybridize(static_alloc=False)
    return net
