"""Evaluation, stopping at a target accuracy and checkpointing, as hooks of the training loop
(logging is in `logger.py`)."""
import logging

from engine.checkpoint import export_for_deployment, save_checkpoint
from engine.loop import HookBase

log = logging.getLogger(__name__)


def _is_due(loop, every):
    """True after every `every`-th epoch, after the last one, and when training stops early."""
    done = loop.epoch + 1
    return (every > 0 and done % every == 0) or done == loop.num_epochs or loop.stop_training


class SyncBatchNormStatsHook(HookBase):
    """Average BatchNorm running means and variances over all workers after every epoch.

    Each worker updates its statistics from its own batches only; averaging them makes every
    worker evaluate the same network, and the checkpoint (written by rank 0) the network that
    was evaluated. Place it before `EvalHook` and `CheckpointHook`.
    """

    def __init__(self, dist):
        self.dist = dist

    def after_epoch(self, loop):
        # By name: frozen layers' weights have grad_req "null" too, and must not be averaged.
        stats = [p.data() for name, p in sorted(loop.net.collect_params().items())
                 if name.endswith(("running_mean", "running_var"))]
        self.dist.average_arrays(stats, "batchnorm_stats")


class EvalHook(HookBase):
    """Evaluate on the validation loader after every `every` epochs and after the last.

    The metrics land in `loop.metrics` for the logger and the checkpoint; the best value of
    the task's main metric is kept in this hook's state.
    """

    def __init__(self, val_loader, dist, every=1):
        self.val_loader = val_loader
        self.dist = dist
        self.every = every
        self.best = None

    def before_epoch(self, loop):
        loop.metrics = None

    def after_epoch(self, loop):
        if not _is_due(loop, self.every):
            return
        metrics = loop.task.evaluate(loop.net, self.val_loader, self.dist)
        main = metrics[loop.task.main_metric]
        if self.best is None or main > self.best:
            self.best = main
        loop.metrics = dict(metrics, best=self.best)

    def state_dict(self):
        return {"best": self.best}

    def load_state_dict(self, state):
        self.best = state.get("best")


class TargetStopHook(HookBase):
    """End training after the first evaluation at which every target is reached.

    Place it after `EvalHook` (it reads `loop.metrics`) and before `LoggerHook` and
    `CheckpointHook` (the epoch's log record says `target_reached`, and the checkpoint of the
    stopping epoch is written whatever their frequency).

    Parameters
    ----------
    targets : dict
        {metric: threshold} in the units of the task's metrics (percent; see
        `engine.options.metric_targets`).
    """

    def __init__(self, targets):
        self.targets = dict(targets)

    def before_train(self, loop):
        loop.target_reached = False

    def after_epoch(self, loop):
        if loop.metrics is None:  # no evaluation this epoch (the same on every worker)
            return
        # Every worker must leave the loop at the same epoch, or the others wait in the next
        # allreduce: the tasks' evaluate gives every worker rank 0's metrics, so every worker
        # decides the same.
        loop.target_reached = all(loop.metrics[name] >= value
                                  for name, value in self.targets.items())
        if loop.target_reached:
            loop.stop_training = True
            log.info("target reached at epoch %d: %s", loop.epoch, self._compared(loop, ">="))

    def after_train(self, loop):
        if not loop.target_reached:
            comparison = self._compared(loop, "vs") if loop.metrics else "no evaluation"
            log.info("target not reached by epoch %d, the last: %s", loop.epoch, comparison)

    def _compared(self, loop, sign):
        return "  ".join(f"{name} {loop.metrics[name]:.2f} {sign} {value:.2f}"
                         for name, value in self.targets.items())


class CheckpointHook(HookBase):
    """Save a checkpoint after every `every` epochs, after the last, and after the epoch that
    stops training early (rank 0 writes).

    Every worker contributes its loader and task state (its own data shard position and random
    generators), gathered to rank 0, so that a resumed run continues with the same samples and
    augmentations. With `export_prefix`, the network is also exported as
    `export_prefix`-symbol.json / -NNNN.params for deployment.
    """

    def __init__(self, directory, dist, train_loader, config, every=1, keep_last=5,
                 export_prefix=None):
        self.directory = directory
        self.dist = dist
        self.train_loader = train_loader
        self.config = config
        self.every = every
        self.keep_last = keep_last
        self.export_prefix = export_prefix

    def after_epoch(self, loop):
        if not _is_due(loop, self.every):
            return
        workers = self.dist.gather_objects({"loader": self.train_loader.state(),
                                            "task": loop.task.state_dict()},
                                           "checkpoint.worker_states")
        if not self.dist.is_main:
            return
        loop_state = loop.state_dict()
        loop_state["epoch"] = loop.epoch + 1  # the epoch a resumed run starts with
        state = {"loop": loop_state, "workers": workers, "config": self.config,
                 "metrics": getattr(loop, "metrics", None)}
        path = save_checkpoint(self.directory, loop.epoch + 1, loop.net, loop.trainer, state,
                               self.keep_last)
        log.info("saved checkpoint %s", path)
        if self.export_prefix:
            export_for_deployment(loop.net, self.export_prefix, loop.epoch + 1, self.keep_last)
