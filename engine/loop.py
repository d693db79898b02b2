"""The training loop shared by every task.

It does one thing: pull a batch (or `accumulate` of them), take an optimizer step, and tell the
hooks. What differs per task (forward pass, loss, evaluation) sits behind `Task`; logging,
evaluation, checkpoints, timing and stopping at a target are hooks (`engine/hooks.py`) with
state of their own that goes into checkpoints.
"""
import time
from contextlib import nullcontext

from mxnet import autograd, nd

from data.streams import endless


EXIT_DIVERGED = 3  # train.py's exit status when the loss is no longer finite


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite, and no loss scaling is left to lower."""


class HookBase:
    """A hook is called around the loop's events; override the ones you need.

    `loop` is the `TrainLoop`; hooks read its `epoch`, `global_step`, `loss`, `batch_size`,
    `data_seconds` and so on. A hook with state returns it from `state_dict()`; a hook that
    sets `loop.stop_training` in `after_epoch` ends the run after that epoch.
    """

    def before_train(self, loop):
        pass

    def before_epoch(self, loop):
        pass

    def after_step(self, loop):
        pass

    def after_epoch(self, loop):
        pass

    def after_train(self, loop):
        pass

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class TrainLoop:
    """Data-parallel training over an endless stream of batches.

    Each optimizer step runs `accumulate` forward/backward passes over as many batches into
    summed gradients (grad_req "add", zeroed after every step, applied or skipped), then one
    allreduce, the loss scaler's finiteness check and one update that divides by
    ``scale * accumulate``: the update of the mean of the batches' gradients, that is of one
    batch `accumulate` times larger wherever the task's losses are means over their batch
    (classification: exactly). Losses normalised otherwise stay normalised per batch: SSD's,
    divided by each batch's positive-anchor count, become the mean of per-batch-normalised
    losses (as NVIDIA's implementations accumulate them). A step, `global_step` and every
    step count of the hooks are optimizer steps; epochs end on step boundaries, so a
    checkpoint (written after an epoch) never holds partly accumulated gradients.

    Parameters
    ----------
    net : mxnet.gluon.HybridBlock
        The network, initialised, on the worker's device.
    trainer : mxnet.gluon.Trainer
        From `Distributed.make_trainer`: its `allreduce_grads` averages over workers.
    task : Task
        Computes the named, normalised training losses of a batch, and evaluates.
    train_loader : iterable
        Yields dict batches and starts over by itself after each of its epochs.
    steps_per_epoch : int
        Optimizer steps per epoch, equal on every worker (allreduce would hang otherwise);
        each takes `accumulate` batches of the loader.
    batch_size : int
        Samples per batch on this worker (for throughput).
    loss_scaler : LossScaler
    hooks : list of HookBase
        Called in order.
    dist : Distributed, optional
        Bounds each step's wait for the gradient allreduce with its stall watchdog.
    accumulate : int
        Batches per optimizer step (gradient accumulation); above 1, the trainable
        parameters' grad_req becomes "add".
    """

    def __init__(self, net, trainer, task, train_loader, steps_per_epoch, batch_size,
                 loss_scaler, hooks, dist=None, accumulate=1):
        self.net = net
        self.trainer = trainer
        self.task = task
        self.train_loader = train_loader
        self.steps_per_epoch = steps_per_epoch
        self.epoch_steps = steps_per_epoch  # steps of the current epoch (the last may be short)
        self.batch_size = batch_size
        self.accumulate = accumulate
        self.samples_per_step = batch_size * accumulate  # on this worker
        self.loss_scaler = loss_scaler
        self.hooks = list(hooks)
        self.dist = dist
        self.params = [p for p in net.collect_params().values() if p.grad_req != "null"]
        if accumulate > 1:
            for param in self.params:
                param.grad_req = "add"  # backward adds; _apply_gradients zeroes after a step
        self._in_flight = None  # the loss of the latest batch queued
        self.epoch = 0
        self.global_step = 0
        self.step_in_epoch = 0
        self.loss = None  # the sum of the last step's losses (mean over its batches)
        self.losses = {}  # and each of them by name
        self.data_seconds = 0.0
        self.epoch_seconds = 0.0
        self.num_epochs = 0
        self.metrics = None
        self.target_reached = None  # set by TargetStopHook when targets are given
        self.stop_training = False  # set by a hook: the run ends after this epoch

    def run(self, start_epoch, num_epochs, max_steps=None):
        """Train from the start of `start_epoch` to the end of epoch `num_epochs - 1`, or
        until `max_steps` optimizer steps in all (step-based recipes: the last epoch is then
        cut short; an "epoch" is the interval between evaluations and checkpoints)."""
        self.epoch = start_epoch
        self.num_epochs = num_epochs
        self.global_step = start_epoch * self.steps_per_epoch
        self._call("before_train")
        batches = endless(self.train_loader,
                          no_data="the training loader produced no batch in a whole epoch")
        for self.epoch in range(start_epoch, num_epochs):
            remaining = self.steps_per_epoch if max_steps is None else \
                max_steps - self.global_step
            self.epoch_steps = min(self.steps_per_epoch, remaining)
            self._call("before_epoch")
            epoch_start = time.perf_counter()
            for self.step_in_epoch in range(self.epoch_steps):
                self.run_step(batches)
                self.global_step += 1
                self._call("after_step")
            nd.waitall()  # the epoch's time includes its last queued operators
            self.epoch_seconds = time.perf_counter() - epoch_start
            self._call("after_epoch")
            if self.stop_training:
                break
        self._call("after_train")

    def run_step(self, batches):
        """One optimizer step over the next `accumulate` batches of the iterator `batches`:
        forward and backward for each, one allreduce, one update (skipped when the gradients
        overflow)."""
        self.data_seconds = 0.0
        scale = self.loss_scaler.scale
        results = []
        for _ in range(self.accumulate):
            # Outside the stall bound: a bad-data recovery may check a shard for minutes.
            batch = self._next_batch(batches)
            with self._waiting_for_gradients():
                results.append(self._forward_backward(batch, scale))
        with self._waiting_for_gradients():
            self._apply_gradients(scale)
        self.loss = _mean([loss for loss, _ in results])
        self.losses = {name: _mean([losses[name] for _, losses in results])
                       for name in results[0][1]}

    def _next_batch(self, batches):
        started = time.perf_counter()
        batch = next(batches)
        self.data_seconds += time.perf_counter() - started
        return batch

    def _forward_backward(self, batch, scale):
        """The batch's (summed loss, losses by name); its gradients written or added."""
        with autograd.record():
            losses = self.task.train_losses(self.net, batch)
            loss = nd.add_n(*losses.values()) if len(losses) > 1 else next(iter(losses.values()))
            scaled_loss = loss * scale if scale != 1.0 else loss
        scaled_loss.backward()
        # MXNet runs operators asynchronously. Waiting for the previous batch bounds the queue
        # to one batch in flight (its activations in memory) while the next is being prepared.
        if self._in_flight is not None:
            self._in_flight.wait_to_read()
        self._in_flight = loss
        return loss, losses

    def _apply_gradients(self, scale):
        self.trainer.allreduce_grads()  # once per optimizer step, however many batches
        finite = self.loss_scaler.grads_finite(self.params)
        if finite:
            # The task normalised each batch's losses; dividing by scale * accumulate undoes
            # the loss scaling and turns the summed gradients into their mean over the
            # batches, and Horovod averages them over workers.
            self.trainer.update(scale * self.accumulate)
        self.loss_scaler.update(finite)
        if self.accumulate > 1:  # after a skipped step too: an overflow must not carry over
            grads = [p.grad() for p in self.params]
            nd.reset_arrays(*grads, num_arrays=len(grads))

    def _waiting_for_gradients(self):
        # A wait inside run_step covers the previous batch's compute and the allreduce.
        if self.dist is None:
            return nullcontext()
        return self.dist.waiting(f"grad.* (gradient allreduce of step {self.global_step})")

    def state_dict(self):
        """Loop position and hook states (equal on every worker)."""
        return {"epoch": self.epoch, "global_step": self.global_step,
                "loss_scaler": self.loss_scaler.state_dict(),
                "hooks": {type(h).__name__: h.state_dict() for h in self.hooks}}

    def load_state_dict(self, state):
        self.loss_scaler.load_state_dict(state["loss_scaler"])
        for hook in self.hooks:
            hook.load_state_dict(state["hooks"].get(type(hook).__name__, {}))

    def _call(self, event):
        for hook in self.hooks:
            getattr(hook, event)(self)


def _mean(arrays):
    return arrays[0] if len(arrays) == 1 else nd.add_n(*arrays) / len(arrays)
