"""Worker of test_horovod.py: train a small network without BatchNorm for a few steps.

Run by horovodrun with N workers and batch B each, or alone with batch N*B; every run sees the
same global batches in the same order, so the final weights must agree.

    python hvd_equivalence_worker.py BATCH STEPS OUTPUT.params
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


def global_batches(global_batch, steps):
    rng = np.random.default_rng(1234)
    data = rng.standard_normal((steps * global_batch, 3, 8, 8)).astype(np.float32)
    labels = rng.integers(0, CLASSES, steps * global_batch).astype(np.int32)
    return data, labels


def worker_batches(batch, steps, rank, size):
    """Global batch t is samples [t*G, (t+1)*G); worker r takes its r-th slice of it."""
    data, labels = global_batches(batch * size, steps)
    batches = []
    for t in range(steps):
        start = t * batch * size + rank * batch
        batches.append({"data": mx.nd.array(data[start:start + batch]),
                        "label": mx.nd.array(labels[start:start + batch], dtype="int32")})
    return batches


def small_network():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(8, 3, padding=1, activation="relu"), nn.Flatten(), nn.Dense(CLASSES))
    mx.random.seed(7)
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, 8, 8)))
    return net


def main():
    batch, steps, output = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    dist = init_distributed()
    net = small_network()
    dist.broadcast_parameters(net.collect_params())
    params = net.collect_params()
    exclude_from_weight_decay(params)
    schedule = make_lr_schedule("cosine", 0.2, steps, 1, warmup_epochs=0.3)
    trainer = dist.make_trainer(params, "sgd", sgd_params(schedule, 0.875, 1e-3, False))
    task = ClassificationTask(CLASSES, mx.cpu(), label_smoothing=0.1)
    loop = TrainLoop(net, trainer, task, worker_batches(batch, steps, dist.rank, dist.size),
                     steps, batch, LossScaler(), hooks=[])
    loop.run(0, 1)
    if dist.is_main:
        net.save_parameters(output)


if __name__ == "__main__":
    main()
