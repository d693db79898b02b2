"""Training logs: a JSON line per interval and per epoch, readable text, a progress bar.

JSON records (one object per line, rank 0 only):

- ``{"event": "train", "epoch", "iteration", "step", "loss", "losses", "lr", "img_per_s",
  "data_wait_ms", "loss_scale"}`` every `interval` iterations;
- ``{"event": "epoch", "epoch", "loss", "losses", "lr", "img_per_s", "iter_ms",
  "data_wait_ms", "seconds", "skipped_samples", "val": {...} or null, "target_reached"}``
  after each epoch, where ``img_per_s`` is the global batch over the mean iteration time (data
  wait included, evaluation excluded), ``skipped_samples`` counts the training samples all
  workers left out of the epoch as undecodable (``--bad-data skip``; `data.bad_records`) and
  ``target_reached`` is true when this epoch's evaluation reached every --target-* given
  (false otherwise, null without targets; `engine.hooks.TargetStopHook`).

``loss`` is the sum of the task's losses, ``losses`` each of them by name (``{"xent": ...}``
for classification; SSD's ``cls`` and ``box``).

``epoch`` is 0-based and ``iteration`` 1-based within the epoch; ``step`` counts optimizer steps
from the start of training. With gradient accumulation (``--accumulate N``) an iteration is an
optimizer step of N batches: the global batch of ``img_per_s`` counts all of them, ``loss`` is
the mean over them and ``data_wait_ms`` the wait for all of them.
"""
import json
import logging
import sys
import time

import numpy as np
from mxnet import nd

from engine.loop import HookBase, TrainingDiverged

log = logging.getLogger(__name__)


class LoggerHook(HookBase):
    """Log losses, learning rate, throughput and data-loading wait.

    Parameters
    ----------
    dist : Distributed
    json_path : str or None
        Where rank 0 appends JSON lines.
    interval : int
        Iterations between "train" records.
    progress : bool or None
        Show a tqdm bar; None shows it when stderr is a terminal.
    """

    def __init__(self, dist, json_path, interval=20, progress=None):
        self.dist = dist
        self.json_path = json_path
        self.interval = max(1, interval)
        self.progress = sys.stderr.isatty() if progress is None else progress
        self._bar = None

    def before_epoch(self, loop):
        self._epoch_losses = []
        self._epoch_data_seconds = 0.0
        self._start_interval(loop)
        if self.dist.is_main and self.progress:
            from tqdm import tqdm
            self._bar = tqdm(total=loop.epoch_steps, desc=f"epoch {loop.epoch}",
                             unit="it", leave=False, dynamic_ncols=True)

    def _start_interval(self, loop):
        self._interval_losses = []
        self._interval_data_seconds = 0.0
        self._interval_start = time.perf_counter()

    def after_step(self, loop):
        self._names = sorted(loop.losses)
        # One small array per step, [total, each loss by name], read only when logged.
        losses = nd.concat(loop.loss.reshape((1,)),
                           *[loop.losses[name].reshape((1,)) for name in self._names], dim=0)
        self._interval_losses.append(losses)
        self._epoch_losses.append(losses)
        self._interval_data_seconds += loop.data_seconds
        self._epoch_data_seconds += loop.data_seconds
        if self._bar is not None:
            self._bar.update(1)
        iteration = loop.step_in_epoch + 1
        if iteration % self.interval == 0 or iteration == loop.epoch_steps:
            self._log_interval(loop, iteration)

    def _log_interval(self, loop, iteration):
        losses = nd.add_n(*self._interval_losses).asnumpy() / len(self._interval_losses)
        seconds = time.perf_counter() - self._interval_start  # asnumpy() waited for the steps
        steps = len(self._interval_losses)
        loss = losses[0]
        if not np.isfinite(loss) and not loop.loss_scaler.can_recover():
            raise TrainingDiverged(
                f"the training loss is {loss} in the {steps} steps up to step "
                f"{loop.global_step} (epoch {loop.epoch}, learning rate "
                f"{loop.trainer.learning_rate:g}): training diverged. Start again with a "
                f"lower --lr (given per 256 images and scaled to the global batch) or a "
                f"longer warm-up (--warmup-steps, --warmup-epochs); float16 runs can also "
                f"take --loss-scale dynamic")
        record = {"event": "train", "epoch": loop.epoch, "iteration": iteration,
                  "step": loop.global_step, "loss": float(loss),
                  "losses": self._by_name(losses),
                  "lr": loop.trainer.learning_rate,
                  "img_per_s": loop.samples_per_step * self.dist.size * steps / seconds,
                  "data_wait_ms": 1000 * self._interval_data_seconds / steps,
                  "loss_scale": loop.loss_scaler.scale}
        if self.dist.is_main:
            self._write(record)
            if self._bar is not None:
                self._bar.set_postfix(loss=f"{loss:.3f}", img_s=f"{record['img_per_s']:.1f}")
            else:
                log.info("epoch %d iter %d/%d  loss %.4f  lr %.5f  %.1f img/s  data wait %.1f ms",
                         loop.epoch, iteration, loop.epoch_steps, loss, record["lr"],
                         record["img_per_s"], record["data_wait_ms"])
        self._start_interval(loop)

    def after_epoch(self, loop):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        steps = len(self._epoch_losses)
        local_losses = nd.add_n(*self._epoch_losses).asnumpy().astype("float64") / steps
        # The skip count rides along in the same collective: [losses..., skipped samples].
        skipped = getattr(loop.train_loader, "skipped_samples", 0)
        summed = self.dist.sum(np.append(local_losses, skipped), "log.epoch_losses")
        losses, skipped = summed[:-1] / self.dist.size, int(summed[-1])
        loss = losses[0]
        iter_seconds = loop.epoch_seconds / steps
        record = {"event": "epoch", "epoch": loop.epoch, "loss": float(loss),
                  "losses": self._by_name(losses),
                  "lr": loop.trainer.learning_rate,
                  "img_per_s": loop.samples_per_step * self.dist.size / iter_seconds,
                  "iter_ms": 1000 * iter_seconds,
                  "data_wait_ms": 1000 * self._epoch_data_seconds / steps,
                  "seconds": loop.epoch_seconds, "skipped_samples": skipped,
                  "val": getattr(loop, "metrics", None),
                  "target_reached": getattr(loop, "target_reached", None)}
        if self.dist.is_main:
            self._write(record)
            val = record["val"]
            val_text = ("  " + "  ".join(f"val {k} {val[k]:.2f}"
                                         for k in loop.task.display_metrics)) if val else ""
            skip_text = f"  skipped {skipped} bad samples" if skipped else ""
            log.info("epoch %d done: loss %.4f  %.1f img/s  %.1f ms/iter  data wait %.1f ms%s%s",
                     loop.epoch, loss, record["img_per_s"], record["iter_ms"],
                     record["data_wait_ms"], skip_text, val_text)

    def _by_name(self, losses):
        return {name: float(value) for name, value in zip(self._names, losses[1:])}

    def _write(self, record):
        if self.json_path:
            with open(self.json_path, "a") as f:
                f.write(json.dumps(record) + "\n")
