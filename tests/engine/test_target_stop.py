"""Stopping at a target accuracy (engine.hooks.TargetStopHook, engine.options' --target-*
flags) inside a real TrainLoop: the run ends after the first evaluation at which every target
is reached, the checkpoint of that epoch is written whatever --save-frequency says, and the
epoch records say target_reached. The evaluations' metrics are scripted (a task whose
`evaluate` returns the next of a list), so that the thresholds are exact. (No test runs a
target through train.py and the runner, nor with 2 Horovod workers, yet.)"""
import argparse
import json
import os
import re

import mxnet as mx
import pytest

from engine.distributed import Distributed
from engine.hooks import CheckpointHook, EvalHook, TargetStopHook
from engine.logger import LoggerHook
from engine.options import TARGET_UNITS, check_target_flags, metric_targets
from engine.tasks.classification import ClassificationTask
from engine.tasks.mask_rcnn import MaskRCNNTask
from engine.tasks.ssd import SSDTask
from tests.engine.test_accumulation import _CountingLoader, _loop
from tests.engine.test_loss_scaling import _batches


class _ScriptedEvaluation(ClassificationTask):
    """Classification training; each evaluation reports the next metrics of `script`."""

    def __init__(self, script):
        super().__init__(5, mx.cpu())
        self.script = list(script)

    def evaluate(self, net, loader, dist):
        return self.script.pop(0)


def _flags(**given):
    values = {dest: None for dest in TARGET_UNITS}
    values.update(given)
    return argparse.Namespace(mode="train_val", eval_every=1, arch="some_arch", **values)


def _run(tmp_path, script, targets, epochs=4, save_every=3):
    """Train `epochs` epochs of 2 steps with an evaluation after each; returns the loop and
    the epoch records of log.jsonl."""
    dist = Distributed(None)
    log_path = str(tmp_path / "log.jsonl")
    hooks = [EvalHook(None, dist), TargetStopHook(targets),
             LoggerHook(dist, log_path, 10, False),
             CheckpointHook(str(tmp_path / "checkpoints"), dist, _CountingLoader([]), {},
                            every=save_every)]
    loop, _ = _loop(_batches(2), 2, 1, hooks, epochs=epochs)
    loop.task = _ScriptedEvaluation(script)
    loop.run(0, epochs)
    with open(log_path) as f:
        epochs_logged = [r for r in map(json.loads, f) if r["event"] == "epoch"]
    return loop, epochs_logged


def test_the_run_stops_after_the_first_evaluation_that_reaches_the_target(tmp_path):
    """Top-1 10, 30, 60, 50 against --target-top1 55: the run ends after its third epoch (of
    4), whose checkpoint is written although a save frequency of 2 would not write it, and
    the epoch records say where the target was reached."""
    script = [{"top1": v, "top5": 100.0} for v in (10.0, 30.0, 60.0, 50.0)]
    targets = metric_targets(_flags(target_top1=55.0), ClassificationTask.target_metrics)
    assert targets == {"top1": 55.0}
    loop, records = _run(tmp_path, script, targets, save_every=2)
    assert loop.epoch == 2 and loop.target_reached and loop.global_step == 6
    assert [r["target_reached"] for r in records] == [False, False, True]
    assert [r["val"]["top1"] for r in records] == [10.0, 30.0, 60.0]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["epoch-0002", "epoch-0003"]


def test_box_and_mask_targets_are_fractions_and_both_must_be_reached(tmp_path):
    """--target-bbox-map 0.377 --target-mask-map 0.342 (NVIDIA's Mask R-CNN recipe, as
    fractions) against AP in percent: box reached alone (38.0 / 33.0), then mask alone
    (37.6 / 35.0), then both (37.7 / 34.2, equal counts as reached): the run stops there."""
    targets = metric_targets(_flags(target_bbox_map=0.377, target_mask_map=0.342),
                             MaskRCNNTask.target_metrics)
    assert targets == pytest.approx({"AP": 37.7, "mask_AP": 34.2})
    script = [{"top1": 0.0, "top5": 0.0, "AP": ap, "mask_AP": mask}
              for ap, mask in ((38.0, 33.0), (37.6, 35.0), (37.7, 34.2), (40.0, 40.0))]
    loop, records = _run(tmp_path, script, targets)
    assert [r["target_reached"] for r in records] == [False, False, True]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["epoch-0003"]


def test_a_target_never_reached_runs_every_epoch(tmp_path):
    script = [{"top1": v, "top5": 100.0} for v in (10.0, 30.0)]
    loop, records = _run(tmp_path, script, {"top1": 99.0}, epochs=2)
    assert loop.epoch == 1 and loop.target_reached is False and not loop.stop_training
    assert [r["target_reached"] for r in records] == [False, False]


def test_a_target_the_task_does_not_report_is_refused():
    with pytest.raises(ValueError, match=r"--target-top1: --arch some_arch does not report "
                                         r"that metric; its task takes --target-bbox-map"):
        metric_targets(_flags(target_top1=50.0), SSDTask.target_metrics)
    with pytest.raises(ValueError, match="--target-mask-map.*takes --target-bbox-map$"):
        metric_targets(_flags(target_mask_map=0.3), SSDTask.target_metrics)
    assert metric_targets(_flags(), SSDTask.target_metrics) == {}


@pytest.mark.parametrize("flags, remedy", [
    ({"mode": "train"}, "use --mode train_val instead of --mode train"),
    ({"mode": "val"}, "use --mode train_val instead of --mode val"),
    ({"eval_every": 0}, "give --eval-every 1 (or every N epochs) instead of --eval-every 0"),
])
def test_a_target_without_evaluations_is_refused(flags, remedy):
    args = _flags(target_top1=50.0)
    vars(args).update(flags)
    with pytest.raises(ValueError, match=r"--target-top1: a target is checked at each "
                                         r"evaluation during training; " + re.escape(remedy)):
        check_target_flags(args)
    vars(args).update(target_top1=None)
    check_target_flags(args)  # the same flags without a target are fine
