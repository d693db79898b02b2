"""Mask R-CNN through the one train.py and ./runner, end to end on CPU: the small variant
(ResNet-18 v1.5, FPN of 64 channels) started from the demo's classifier trains on the demo
detection set with 2 workers and reaches asserted box and mask APs; the run logs the five
losses by name, writes bbox.json and segm.json in the file's own category ids, checkpoints and
exports the parts MXNet can export, and checks its box and mask AP targets at each evaluation
(out of reach here: the run goes on); its checkpoint scores the same on one worker; a run
killed after its first checkpoint and resumed ends with the weights of an uninterrupted
one."""
import json
import os
import re
import subprocess

import mxnet as mx
import numpy as np
import pytest

from tests.engine.test_resume import _checkpoint, _kill_whole_run_when
from tests.test_ssd_training import RUNNER, ROOT

STEPS, EPOCH_STEPS = 200, 100
# Percent; measured on this run (2026-12-02): box AP 16.6 and mask AP 15.6 at step 200 (7.2
# and 2.7 at step 100); 300 steps gave 20.2 and 20.2 in 1.5 times the time. --lr 0.16, twice
# this, diverged at step 40 on some machines' demo classifier (the box head's class loss blew
# up in the warm-up) and passed on others.
BOX_AP_REACHED, MASK_AP_REACHED = 10.0, 10.0
# The demo's images are 128 x 128 with 1-6 objects: 128 RoIs per image are plenty.
SMALL = ["--arch", "maskrcnn_r18_fpn", "--min-size", "128", "--max-size", "128",
         "--roi-batch-size", "128", "--data-threads", "1", "--progress", "off"]
LOSSES = {"rpn_objectness", "rpn_box", "roi_cls", "roi_box", "mask"}


def _runner(data_root, workspace, workers, *extra, batch=2):
    command = [RUNNER, "-n", str(workers), "-b", str(batch), *SMALL, "--data-root",
               str(data_root), "--workspace", str(workspace), *extra]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900,
                            env=dict(os.environ, OMP_NUM_THREADS=str(2 // workers)))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def _summary(stdout):
    return re.search(r"validation: (box AP .*images\))", stdout).group(1)


@pytest.fixture(scope="module")
def trained_mask_rcnn(demo_run, demo_detection, tmp_path_factory):
    """(workspace, stdout) of the run: 2 workers x 2 images, STEPS steps, with targets
    (NVIDIA's full-COCO ones) that it does not reach; --report goes to workspace.json."""
    classifier = demo_run[1] / "checkpoints" / "epoch-0008"
    workspace = tmp_path_factory.mktemp("mask_rcnn") / "workspace"
    stdout = _runner(demo_detection, workspace, 2, "--num-steps", str(STEPS), "--epoch-steps",
                     str(EPOCH_STEPS), "--warmup-steps", "50", "--lr", "0.08",
                     "--lr-decay-steps", "170", "--log-interval", "50",
                     "--backbone-weights", str(classifier), "--target-bbox-map", "0.377",
                     "--target-mask-map", "0.342", "--report", f"{workspace}.json")
    return workspace, stdout


@pytest.mark.slow
def test_mask_rcnn_from_the_demo_classifier_reaches_its_box_and_mask_ap(trained_mask_rcnn,
                                                                          demo_detection):
    workspace, stdout = trained_mask_rcnn
    assert "backbone initialised from" in stdout
    assert "segm:" in stdout  # both 12-line summaries are printed
    with open(workspace / "log.jsonl") as f:
        records = [json.loads(line) for line in f]
    steps = [r for r in records if r["event"] == "train"]
    epochs = [r for r in records if r["event"] == "epoch"]
    assert len(epochs) == STEPS // EPOCH_STEPS
    for record in steps + epochs:
        assert record["losses"].keys() == LOSSES
        assert record["loss"] == pytest.approx(sum(record["losses"].values()))
    for name in ("roi_cls", "mask", "rpn_objectness"):
        assert steps[-1]["losses"][name] < 0.7 * steps[0]["losses"][name], name
    stats = epochs[-1]["val"]
    assert stats["images"] == 32 and "mask_AP75" in stats
    assert stats["AP"] >= BOX_AP_REACHED, [e["val"]["AP"] for e in epochs]
    assert stats["mask_AP"] >= MASK_AP_REACHED, [e["val"]["mask_AP"] for e in epochs]
    # The targets were checked at each evaluation, in percent, and the run went on to the end.
    assert [e["target_reached"] for e in epochs] == [False, False]
    assert re.search(r"target not reached by epoch 1, the last: AP [\d.]+ vs 37.70  "
                     r"mask_AP [\d.]+ vs 34.20", stdout), stdout[-2000:]
    with open(f"{workspace}.json") as f:
        report = json.load(f)
    assert report["target_reached"] is False and report["metrics"]["AP"] == stats["AP"]
    with open(demo_detection / "annotations" / "instances_val2017.json") as f:
        category_ids = {c["id"] for c in json.load(f)["categories"]}
    for name in ("bbox.json", "segm.json"):
        with open(workspace / name) as f:
            results = json.load(f)
        assert results and {r["category_id"] for r in results} == category_ids, name
    assert all(set(r["segmentation"]) == {"size", "counts"} for r in results)
    assert os.path.isdir(workspace / "checkpoints" / f"epoch-{STEPS // EPOCH_STEPS:04d}")
    for part in ("backbone", "fpn", "rpn_head", "box_head", "mask_head"):
        assert os.path.isfile(workspace / f"model-{part}-symbol.json"), part
        assert os.path.isfile(workspace / f"model-{part}-{STEPS // EPOCH_STEPS:04d}.params")


@pytest.mark.slow
def test_its_checkpoint_scores_the_same_on_one_worker(trained_mask_rcnn, demo_detection,
                                                      tmp_path):
    workspace, stdout = trained_mask_rcnn
    checkpoint = str(workspace / "checkpoints" / f"epoch-{STEPS // EPOCH_STEPS:04d}")
    one = _summary(_runner(demo_detection, tmp_path / "val", 1, "--mode", "val", "--load",
                           checkpoint, batch=4))
    assert one == _summary(stdout) and one.endswith("(32 images)")


def _params(workspace, epoch):
    return mx.nd.load(os.path.join(_checkpoint(workspace, epoch), "model.params"))


@pytest.mark.slow
def test_a_killed_and_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(
        demo_detection, tmp_path):
    """The samplers' seeds and the data position are checkpointed: a run killed (SIGKILL,
    runner and worker) after its first 2-step checkpoint and resumed with --resume ends with
    the weights of an uninterrupted 6-step run (one worker, random initialisation)."""
    common = ["--mode", "train", "--epoch-steps", "2", "--warmup-steps", "1",
              "--lr-decay-steps", "100", "--log-interval", "1", "--num-steps", "6"]
    _runner(demo_detection, tmp_path / "whole", 1, *common)
    parts = tmp_path / "parts"
    command = [RUNNER, "-n", "1", "-b", "2", *SMALL, "--data-root", str(demo_detection),
               "--workspace", str(parts), *common]
    # The thread count of _runner's runs: a different one rounds differently.
    _kill_whole_run_when(command, lambda: os.path.isdir(_checkpoint(parts, 1)),
                         env=dict(os.environ, OMP_NUM_THREADS="2"))
    assert not os.path.isdir(_checkpoint(parts, 3)), "killed too late to test resume"
    stdout = _runner(demo_detection, parts, 1, *common, "--resume")
    assert "using checkpoint" in stdout
    whole, resumed = _params(tmp_path / "whole", 3), _params(parts, 3)
    first = _params(parts, 1)
    assert whole.keys() == resumed.keys()
    changed = 0
    for name in whole:
        np.testing.assert_array_equal(whole[name].asnumpy(), resumed[name].asnumpy(), name)
        changed += not np.array_equal(whole[name].asnumpy(), first[name].asnumpy())
    assert changed > 10  # the steps after resuming did train
