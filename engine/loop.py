"""The training loop shared by every task.

It does one thing: pull a batch, take an optimizer step, and tell the hooks. What differs per
task (forward pass, loss, evaluation) sits behind `Task`; logging, evaluation, checkpoints and
timing are hooks (`engine/hooks.py`) with state of their own that goes into checkpoints.
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
    `data_seconds` and so on. A hook with state returns it from `state_dict()`.
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
        Optimizer steps per epoch, equal on every worker (allreduce would hang otherwise).
    batch_size : int
        Samples per step on this worker (for throughput).
    loss_scaler : LossScaler
    hooks : list of HookBase
        Called in order.
    dist : Distributed, optional
        Bounds each step's wait for the gradient allreduce with its stall watchdog.
    """

    def __init__(self, net, trainer, task, train_loader, steps_per_epoch, batch_size,
                 loss_scaler, hooks, dist=None):
        self.net = net
        self.trainer = trainer
        self.task = task
        self.train_loader = train_loader
        self.steps_per_epoch = steps_per_epoch
        self.epoch_steps = steps_per_epoch  # steps of the current epoch (the last may be short)
        self.batch_size = batch_size
        self.loss_scaler = loss_scaler
        self.hooks = list(hooks)
        self.dist = dist
        self.params = [p for p in net.collect_params().values() if p.grad_req != "null"]
        self.epoch = 0
        self.global_step = 0
        self.step_in_epoch = 0
        self.loss = None  # the sum of the last step's losses
        self.losses = {}  # and each of them by name
        self.data_seconds = 0.0
        self.epoch_seconds = 0.0
        self.num_epochs = 0
        self.metrics = None

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
                started = time.perf_counter()
                batch = next(batches)
                self.data_seconds = time.perf_counter() - started
                with self._waiting_for_gradients():
                    self.run_step(batch)
                self.global_step += 1
                self._call("after_step")
            nd.waitall()  # the epoch's time includes its last queued operators
            self.epoch_seconds = time.perf_counter() - epoch_start
            self._call("after_epoch")
        self._call("after_train")

    def run_step(self, batch):
        """Forward, backward, allreduce, update; skip the update when gradients overflow."""
        previous_loss = self.loss
        scale = self.loss_scaler.scale
        with autograd.record():
            losses = self.task.train_losses(self.net, batch)
            loss = nd.add_n(*losses.values()) if len(losses) > 1 else next(iter(losses.values()))
            scaled_loss = loss * scale if scale != 1.0 else loss
        scaled_loss.backward()
        self.trainer.allreduce_grads()
        finite = self.loss_scaler.grads_finite(self.params)
        if finite:
            # The task normalised its losses; dividing by the scale undoes the loss scaling,
            # and Horovod averages the gradients over workers.
            self.trainer.update(scale)
        self.loss_scaler.update(finite)
        self.loss, self.losses = loss, losses
        # MXNet runs operators asynchronously. Waiting for the previous step bounds the queue
        # to one step in flight while the next batch is already being prepared.
        if previous_loss is not None:
            previous_loss.wait_to_read()

    def _waiting_for_gradients(self):
        # The wait inside run_step covers the previous step's compute and its allreduce.
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
