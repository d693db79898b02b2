"""Loss scaling inside the training loop (TrainLoop + LossScaler), on CPU in one process.

A static scale must not change training: the loss is multiplied by S and the update divides by
S again. A dynamic scaler must skip the update of a step whose gradients overflowed, leave the
weights as they were, and halve the scale.
"""
import mxnet as mx
import numpy as np
from mxnet.gluon import nn

from engine.distributed import Distributed
from engine.loop import HookBase, TrainLoop
from engine.loss_scaler import LossScaler
from engine.optimization import make_lr_schedule, sgd_params
from engine.tasks.classification import ClassificationTask

CLASSES, BATCH = 5, 4


def _batches(steps, seed=1234):
    rng = np.random.default_rng(seed)
    return [{"data": mx.nd.array(rng.standard_normal((BATCH, 3, 8, 8))),
             "label": mx.nd.array(rng.integers(0, CLASSES, BATCH), dtype="int32")}
            for _ in range(steps)]


def _network():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(8, 3, padding=1, activation="relu"), nn.Flatten(), nn.Dense(CLASSES))
    mx.random.seed(7)  # the same initial weights in every run
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, 8, 8)))
    return net


class _RecordWeights(HookBase):
    """Keeps a copy of every weight after each step."""

    def __init__(self):
        self.after = []

    def after_step(self, loop):
        self.after.append(_weights(loop.net))


def _weights(net):
    return [p.data().asnumpy().copy() for p in net.collect_params().values()]


def _train(batches, loss_scaler):
    """Train on `batches` (one epoch, one step each); return the loop and the recorded
    weights (initial weights first)."""
    net = _network()
    dist = Distributed(None)
    schedule = make_lr_schedule("step", 0.1, len(batches), 1)  # constant learning rate
    trainer = dist.make_trainer(net.collect_params(), "sgd",
                                sgd_params(schedule, 0.875, 1e-3, multi_precision=False))
    task = ClassificationTask(CLASSES, mx.cpu(), label_smoothing=0.1)
    recorder = _RecordWeights()
    initial = _weights(net)
    loop = TrainLoop(net, trainer, task, batches, len(batches), BATCH, loss_scaler,
                     hooks=[recorder])
    loop.run(0, 1)
    return loop, [initial] + recorder.after


def _assert_weights_close(actual, expected, rtol=1e-5, atol=1e-6):
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)


def test_static_loss_scale_gives_the_weights_of_no_scaling():
    """Five steps with a static loss scale of 128 end with the weights of five unscaled steps
    (within float32 rounding), and training did move the weights."""
    batches = _batches(5)
    _, unscaled = _train(batches, LossScaler(init_scale=1.0))
    loop, scaled = _train(batches, LossScaler(init_scale=128.0))
    assert loop.loss_scaler.scale == 128.0 and loop.loss_scaler.skipped_steps == 0
    assert not np.allclose(unscaled[-1][0], unscaled[0][0])
    _assert_weights_close(scaled[-1], unscaled[-1])


def test_dynamic_loss_scale_skips_exactly_the_overflowing_step():
    """A batch holding an inf makes every gradient non-finite: that one update is skipped
    (weights unchanged), the scale halves, and training goes on as if the batch had never
    been there."""
    clean = _batches(4)
    bad = {"data": clean[0]["data"].copy(), "label": clean[0]["label"]}
    bad["data"][1, 0, 3, 3] = float("inf")
    with_overflow = clean[:2] + [bad] + clean[2:]
    loop, weights = _train(with_overflow, LossScaler(init_scale=1024.0, dynamic=True,
                                                     growth_interval=100))
    scaler = loop.loss_scaler
    assert scaler.skipped_steps == 1 and scaler.scale == 512.0
    assert scaler.clean_steps == 2  # counted again from zero after the overflow
    # weights[i] is after step i (weights[0]: initial); step 3 used the bad batch.
    for step in (1, 2, 4, 5):
        assert not np.allclose(weights[step][0], weights[step - 1][0]), step
    for after_bad, before_bad in zip(weights[3], weights[2]):
        np.testing.assert_array_equal(after_bad, before_bad)
    # Skipping left no trace (momentum, update count): the clean batches alone, unscaled,
    # give the same weights.
    _, reference = _train(clean, LossScaler(init_scale=1.0))
    _assert_weights_close(weights[-1], reference[-1])
