"""Gradient accumulation in TrainLoop (`accumulate=N`, train.py's --accumulate), on CPU in one
process with real MXNet: N batches of b per optimizer step train exactly as one batch of N*b,
the optimizer (and its learning-rate schedule) steps once per N batches, the logs count all
N*b samples and average the N losses, an overflow in one batch skips the whole step, and a
run resumed from an epoch-end checkpoint ends as one never interrupted. The 2-worker Horovod
equivalence is in test_horovod.py."""
import json

import mxnet as mx
import numpy as np
import pytest

from engine.checkpoint import latest_checkpoint
from engine.distributed import Distributed
from engine.hooks import CheckpointHook
from engine.logger import LoggerHook
from engine.loop import HookBase, TrainLoop
from engine.loss_scaler import LossScaler
from engine.optimization import make_lr_schedule, sgd_params
from engine.tasks.classification import ClassificationTask
from engine.weights import load_weights, read_trainer_states, restore_trainer_states
from tests.engine.hvd_equivalence_worker import CLASSES, small_network, train
from tests.engine.test_loss_scaling import _batches, _weights

BATCH = 4  # of tests.engine.test_loss_scaling._batches


def _params(net):
    return {name: p.data().asnumpy() for name, p in net._collect_params_with_prefix().items()}


class _RecordParams(HookBase):
    """Keeps every parameter after each optimizer step."""

    def __init__(self):
        self.after = []

    def after_step(self, loop):
        self.after.append(_params(loop.net))


def test_accumulated_batches_train_exactly_as_one_large_batch():
    """3 accumulated batches of 2 give the parameters of one batch of 6 after the first
    optimizer step and after each of the next two (SGD with momentum 0.875 and weight decay,
    cosine schedule)."""
    dist = Distributed(None)
    initial = _params(small_network())
    large, accumulated = _RecordParams(), _RecordParams()
    train("classification", 6, 3, dist, hooks=[large])
    train("classification", 2, 3, dist, accumulate=3, hooks=[accumulated])
    assert len(large.after) == len(accumulated.after) == 3
    for step, (expected, actual) in enumerate(zip(large.after, accumulated.after), 1):
        for name in expected:
            np.testing.assert_allclose(actual[name], expected[name], rtol=1e-5, atol=1e-7,
                                       err_msg=f"{name} after step {step}")
            # Each step moved every parameter, so the comparison means something.
            before = initial if step == 1 else large.after[step - 2]
            assert np.abs(expected[name] - before[name]).max() > 1e-4, (name, step)


class _CountingLoader:
    """A list of batches as a loader that counts the batches it gave out."""

    def __init__(self, batches):
        self.batches = batches
        self.taken = 0

    def __iter__(self):
        for batch in self.batches:
            self.taken += 1
            yield batch

    def __len__(self):
        return len(self.batches)

    def state(self):
        return None


class _LossRecordingTask(ClassificationTask):
    """The classification task, keeping each batch's loss as the loop computes it."""

    def __init__(self):
        super().__init__(CLASSES, mx.cpu(), label_smoothing=0.1)
        self.batch_losses = []

    def train_losses(self, net, batch):
        losses = super().train_losses(net, batch)
        self.batch_losses.append(losses["xent"])
        return losses


class _RecordSteps(HookBase):
    def __init__(self):
        self.steps = []

    def after_step(self, loop):
        optimizer = loop.trainer._optimizer
        self.steps.append({"global_step": loop.global_step, "updates": optimizer.num_update,
                           "lr": loop.trainer.learning_rate, "taken": loop.train_loader.taken,
                           "loss": float(loop.loss.asscalar()),
                           "batch_losses": [float(x.asscalar())
                                            for x in loop.task.batch_losses[-loop.accumulate:]]})


def _loop(batches, steps_per_epoch, accumulate, hooks, loss_scaler=None, lr=0.1, epochs=1,
          schedule="step"):
    net = small_network()
    dist = Distributed(None)
    lr_schedule = make_lr_schedule(schedule, lr, steps_per_epoch, epochs, warmup_epochs=0)
    trainer = dist.make_trainer(net.collect_params(), "sgd",
                                sgd_params(lr_schedule, 0.875, 1e-3, multi_precision=False))
    loader = _CountingLoader(batches)
    return TrainLoop(net, trainer, _LossRecordingTask(), loader, steps_per_epoch, BATCH,
                     loss_scaler or LossScaler(), hooks, accumulate=accumulate), lr_schedule


def test_the_optimizer_steps_once_per_accumulated_batches_and_logs_count_them_all(tmp_path):
    """2 epochs of 3 steps of 2 batches: 6 optimizer steps (global_step, the optimizer's update
    count and the schedule's position agree), 12 batches read; each logged loss is the mean
    of its 2 batches' losses, and the logged throughput counts 2 x 4 samples per step."""
    recorder = _RecordSteps()
    log_path = tmp_path / "log.jsonl"
    loop, schedule = _loop(_batches(6), 3, 2,
                           [recorder, LoggerHook(Distributed(None), str(log_path), 1, False)],
                           epochs=2, schedule="cosine")
    loop.run(0, 2)
    assert [s["global_step"] for s in recorder.steps] == [1, 2, 3, 4, 5, 6]
    assert [s["updates"] for s in recorder.steps] == [1, 2, 3, 4, 5, 6]
    assert [s["taken"] for s in recorder.steps] == [2, 4, 6, 8, 10, 12]
    for step in recorder.steps:
        assert step["lr"] == pytest.approx(schedule(step["updates"]))
        assert step["loss"] == pytest.approx(np.mean(step["batch_losses"]), rel=1e-6)
    assert recorder.steps[0]["batch_losses"][0] != recorder.steps[0]["batch_losses"][1]
    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    train_records = [r for r in records if r["event"] == "train"]
    assert [r["step"] for r in train_records] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in train_records] == pytest.approx(
        [s["loss"] for s in recorder.steps], rel=1e-6)
    for epoch in (r for r in records if r["event"] == "epoch"):
        assert epoch["img_per_s"] * epoch["iter_ms"] / 1000 == pytest.approx(2 * BATCH)


def test_an_overflow_in_one_batch_skips_the_whole_step():
    """With a dynamic loss scale, an inf in the second batch of step 3 leaves the weights as
    they were (its clean first batch is not applied either) and halves the scale; the
    gradients start from zero again, so the next step is clean, and the run ends as if step
    3 had never been there."""
    clean = _batches(6)
    bad = {"data": clean[5]["data"].copy(), "label": clean[5]["label"]}
    bad["data"][0, 0, 2, 2] = float("inf")
    with_overflow = clean[:4] + [clean[4], bad] + clean[:2]

    class RecordWeights(HookBase):
        def __init__(self):
            self.after = []

        def after_step(self, loop):
            self.after.append(_weights(loop.net))

    recorder = RecordWeights()
    loop, _ = _loop(with_overflow, 4, 2, [recorder],
                    LossScaler(init_scale=1024.0, dynamic=True, growth_interval=100))
    loop.run(0, 1)
    assert loop.loss_scaler.skipped_steps == 1 and loop.loss_scaler.scale == 512.0
    assert loop.trainer._optimizer.num_update == 3
    for after_bad, before_bad in zip(recorder.after[2], recorder.after[1]):
        np.testing.assert_array_equal(after_bad, before_bad)
    assert not np.allclose(recorder.after[3][0], recorder.after[2][0])
    reference, _ = _loop(clean[:4] + clean[:2], 3, 2, [])
    reference.run(0, 1)
    for a, e in zip(_weights(loop.net), _weights(reference.net)):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)


def test_a_run_resumed_from_an_epoch_checkpoint_ends_as_the_uninterrupted_one(tmp_path):
    """Accumulating 2 batches per step, 2 steps per epoch: epoch 0, a checkpoint (written by
    CheckpointHook at the epoch's end, on a step boundary), then epoch 1 in a new loop from
    it, ends with the weights, step count and optimizer update count of 2 epochs straight."""
    batches = _batches(4)
    straight, _ = _loop(batches, 2, 2, [], epochs=2, schedule="cosine")
    straight.run(0, 2)

    directory = str(tmp_path / "checkpoints")
    hook = CheckpointHook(directory, Distributed(None), _CountingLoader(batches), {})
    first, _ = _loop(batches, 2, 2, [hook], epochs=2, schedule="cosine")
    first.run(0, 1)
    checkpoint = latest_checkpoint(directory)
    resumed, _ = _loop(batches, 2, 2, [], epochs=2, schedule="cosine")
    load_weights(resumed.net, checkpoint.path, mx.cpu())
    restore_trainer_states(resumed.trainer, read_trainer_states(checkpoint))
    resumed.load_state_dict(checkpoint.state["loop"])
    resumed.run(checkpoint.state["loop"]["epoch"], 2)

    assert checkpoint.state["loop"]["global_step"] == 2
    assert resumed.global_step == straight.global_step == 4
    assert resumed.trainer._optimizer.num_update == 4
    for a, e in zip(_weights(resumed.net), _weights(straight.net)):
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-7)
