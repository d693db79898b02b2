"""Worker of test_horovod.py: train a small network for a few steps: classifier, SSD or Mask
R-CNN.

Run by horovodrun with N workers and batch B each, or alone with batch N*B; every run sees the
same global batches in the same order, so the final weights must agree. With ACCUMULATE A,
each optimizer step takes A batches of B per worker (gradient accumulation): N workers x A x B
must end where one worker with batch N*A*B ends. `train` does the same in-process.

    python hvd_equivalence_worker.py {classification,ssd,mask_rcnn} BATCH STEPS OUTPUT.params
                                     [ACCUMULATE]

The classifier has no BatchNorm, and the SSD's BatchNorm layers use their running statistics
(frozen, as detectors fine-tuned from a classifier often train): batch statistics of b images
differ from those of 2b by design, and would hide what the test is about, that gradients are
averaged and losses normalised over the global batch.

Mask R-CNN normalises each loss per worker by its own counts (sampled anchors, sampled RoIs,
positive RoIs), as maskrcnn-benchmark does, and draws its samples at random: N workers equal one
only where every image has the same counts and nothing is left to chance. `small_segmenter`
and `global_segmentation_batches` make that so (see there).
"""
import os
import sys

import mxnet as mx
import numpy as np
from mxnet.gluon import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from engine.distributed import init_distributed  # noqa: E402
from engine.loop import TrainLoop  # noqa: E402
from engine.loss_scaler import LossScaler  # noqa: E402
from engine.optimization import exclude_from_weight_decay, make_lr_schedule, sgd_params  # noqa
from engine.tasks.classification import ClassificationTask  # noqa: E402

CLASSES = 5
SSD_SIDE = 64
MAX_BOXES = 3
CROWD_LABEL = CLASSES + 1


def global_batches(global_batch, steps):
    rng = np.random.default_rng(1234)
    data = rng.standard_normal((steps * global_batch, 3, 8, 8)).astype(np.float32)
    labels = rng.integers(0, CLASSES, steps * global_batch).astype(np.int32)
    return {"data": data, "label": labels}


def global_detection_batches(global_batch, steps):
    """Images with 1..MAX_BOXES objects each, then a crowd region in every third image
    (relative boxes, the crowd label CLASSES + 1, rows of -1 pad)."""
    rng = np.random.default_rng(1234)
    count = steps * global_batch
    data = rng.standard_normal((count, 3, SSD_SIDE, SSD_SIDE)).astype(np.float32)
    boxes = -np.ones((count, MAX_BOXES + 1, 4), np.float32)
    labels = -np.ones((count, MAX_BOXES + 1), np.int32)
    for i in range(count):
        n = rng.integers(1, MAX_BOXES + 1)
        corner = rng.uniform(0, 0.6, (n, 2))
        boxes[i, :n] = np.concatenate([corner, corner + rng.uniform(0.15, 0.4, (n, 2))], 1)
        labels[i, :n] = rng.integers(1, CLASSES + 1, n)
        if i % 3 == 0:
            boxes[i, n], labels[i, n] = (0.6, 0.6, 0.95, 0.95), CROWD_LABEL
    return {"data": data, "boxes": boxes, "labels": labels}


SEGMENTATION_SIDE = 64
# Two objects in every image: a rectangle and a triangle (vertices in pixels), then a padding row.
SEGMENTATION_BOXES = [[8, 8, 40, 36], [24, 30, 60, 60], [-1, -1, -1, -1]]
SEGMENTATION_VERTICES = [[8, 8], [40, 8], [40, 36], [8, 36], [24, 30], [60, 30], [24, 60], [-1, -1]]
SEGMENTATION_POLYGONS = [[0, 0, 4], [1, 4, 7]]  # [object row, first vertex, end vertex)


def global_segmentation_batches(global_batch, steps):
    """Random pixels with the same two objects in every image, so that every image has the
    same anchor and RoI counts; what the network sees (and so its proposals and gradients)
    still differs from image to image."""
    rng = np.random.default_rng(1234)
    count = steps * global_batch
    side = SEGMENTATION_SIDE

    def every_image(rows, dtype):
        return np.tile(np.array(rows, dtype), (count, 1, 1))
    return {"data": rng.standard_normal((count, 3, side, side)).astype(np.float32),
            "boxes": every_image(SEGMENTATION_BOXES, np.float32),
            "labels": every_image([[1, 3, -1]], np.float32)[:, 0],
            "polygons": every_image(SEGMENTATION_POLYGONS, np.int32),
            "vertices": every_image(SEGMENTATION_VERTICES, np.float32),
            "im_hw": np.full((count, 2), side, np.float32)}


def small_segmenter():
    """Mask R-CNN R-18 (BatchNorm frozen, as the recipe's) whose samplers take every
    candidate, so that no draw differs between one worker and two: the RPN samples more
    anchors than a 64x64 image has (all those not ignored, a count fixed by the objects), and
    the RoI heads take the 8 proposals of each image plus the objects; a foreground IoU of 1
    makes the objects' own rows the only positives (2 per image, the mask loss's count)."""
    import models
    from models.roi_heads import RoISettings
    from models.rpn import RPNSettings
    return models.build_network(
        "maskrcnn_r18_fpn", CLASSES, "NCHW", (3, SEGMENTATION_SIDE, SEGMENTATION_SIDE),
        "float32", mx.cpu(), seed=7,
        rpn=RPNSettings(num_sample=4096, post_nms_top_n_train=8),
        roi=RoISettings(num_sample=32, pos_fraction=0.5, fg_iou_thresh=1.0))


def worker_batches(arrays, batch, steps, rank, size):
    """Global batch t is samples [t*G, (t+1)*G); worker r takes its r-th slice of it."""
    batches = []
    for t in range(steps):
        start = t * batch * size + rank * batch
        batches.append({name: mx.nd.array(values[start:start + batch], dtype=values.dtype)
                        for name, values in arrays.items()})
    return batches


def small_network():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(8, 3, padding=1, activation="relu"), nn.Flatten(), nn.Dense(CLASSES))
    mx.random.seed(7)
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, 8, 8)))
    return net


def small_detector():
    import models
    net = models.get_model("ssd128_resnet18_fpn64", classes=CLASSES, image_size=SSD_SIDE)
    net.apply(_freeze_batchnorm)
    mx.random.seed(7)
    net.initialize(models.default_initializer())
    net.hybridize()
    net(mx.nd.zeros((1, 3, SSD_SIDE, SSD_SIDE)))
    return net


def _freeze_batchnorm(block):
    if isinstance(block, nn.BatchNorm):
        block._kwargs["use_global_stats"] = True


def setup(task_name, batch, steps, dist, accumulate=1):
    """(network, task, peak learning rate, this worker's batches) of `task_name`: optimizer
    step t takes samples [t*G, (t+1)*G) of G = batch x workers x accumulate, as `accumulate`
    consecutive global batches of batch x workers."""
    if task_name == "classification":
        net = small_network()
        task = ClassificationTask(CLASSES, mx.cpu(), label_smoothing=0.1)
        arrays, lr = global_batches(batch * dist.size * accumulate, steps), 0.2
    elif task_name == "mask_rcnn":
        from engine.tasks.mask_rcnn import MaskRCNNTask
        net = small_segmenter()
        task = MaskRCNNTask(mx.cpu(), seed=dist.rank)  # seeds per worker, as train.py's
        arrays, lr = global_segmentation_batches(batch * dist.size * accumulate, steps), 1e-4
    else:
        from engine.tasks.ssd import SSDTask
        net = small_detector()
        task = SSDTask(mx.cpu(), SSD_SIDE, net.anchors(), CROWD_LABEL, dist=dist)
        arrays, lr = global_detection_batches(batch * dist.size * accumulate, steps), 0.01
    batches = worker_batches(arrays, batch, steps * accumulate, dist.rank, dist.size)
    return net, task, lr, batches


def train(task_name, batch, steps, dist, accumulate=1, hooks=()):
    """The network after `steps` optimizer steps of SGD with momentum and weight decay."""
    net, task, lr, batches = setup(task_name, batch, steps, dist, accumulate)
    dist.broadcast_parameters(net.collect_params())
    params = net.collect_params()
    exclude_from_weight_decay(params)
    schedule = make_lr_schedule("cosine", lr, steps, 1, warmup_epochs=0.3)
    trainer = dist.make_trainer(params, "sgd", sgd_params(schedule, 0.875, 1e-3, False))
    loop = TrainLoop(net, trainer, task, batches, steps, batch, LossScaler(), hooks=list(hooks),
                     accumulate=accumulate)
    loop.run(0, 1)
    return net


def main():
    task_name, batch, steps, output = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    accumulate = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    dist = init_distributed()
    net = train(task_name, batch, steps, dist, accumulate)
    if dist.is_main:
        net.save_parameters(output)


if __name__ == "__main__":
    main()
