"""Step-based recipes (SSD's 12,500 steps with 1,000 warm-up steps): --num-steps ends the run
at an exact step count whatever the epoch length, --epoch-steps sets the interval of
evaluation and checkpoints, and the schedule warms up from --warmup-begin-factor over
--warmup-steps and decays at --lr-decay-steps. The logs carry each of the task's losses."""
import json
import os
import subprocess
import sys

import pytest

from engine.optimization import make_step_schedule

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_step_schedule_warms_up_from_its_begin_lr_and_decays_at_its_steps():
    lr = make_step_schedule("step", 0.4, total_steps=100, warmup_steps=10,
                            decay_steps=(50, 80, 200), decay_factor=0.5, warmup_begin_lr=0.1)
    assert lr(0) == pytest.approx(0.1)
    assert lr(5) == pytest.approx(0.25)  # halfway from 0.1 to 0.4
    assert lr(10) == pytest.approx(0.4) and lr(50) == pytest.approx(0.4)
    assert lr(51) == pytest.approx(0.2) and lr(81) == pytest.approx(0.1)
    cosine = make_step_schedule("cosine", 0.4, total_steps=100, warmup_steps=10)
    assert cosine(10) == pytest.approx(0.4) and cosine(100) == pytest.approx(0.0, abs=1e-9)
    assert cosine(55) == pytest.approx(0.2)  # half-way through the decay


def test_num_steps_ends_the_run_at_that_step_with_short_last_epoch(tiny_dataset, tmp_path):
    command = [sys.executable, os.path.join(ROOT, "train.py"), "--mode", "train_val",
               "--data-root", str(tiny_dataset), "--workspace", str(tmp_path),
               "--arch", "resnet18_v1.5", "--num-classes", "4", "--image-shape", "3,32,32",
               "--batch-size", "8", "--num-steps", "10", "--epoch-steps", "4",
               "--warmup-steps", "2", "--warmup-begin-factor", "0.125", "--lr", "0.4",
               "--lr-schedule", "step", "--lr-decay-steps", "6", "--lr-factor", "0.5",
               "--data-threads", "1", "--log-interval", "1", "--progress", "off"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(tmp_path / "log.jsonl") as f:
        records = [json.loads(line) for line in f]
    steps = [r for r in records if r["event"] == "train"]
    epochs = [r for r in records if r["event"] == "epoch"]
    assert [r["step"] for r in steps] == list(range(1, 11))
    assert [r["iteration"] for r in steps] == [1, 2, 3, 4, 1, 2, 3, 4, 1, 2]
    assert len(epochs) == 3 and all(r["val"] is not None for r in epochs)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == [
        "epoch-0001", "epoch-0002", "epoch-0003"]
    with open(tmp_path / "checkpoints" / "epoch-0003" / "state.json") as f:
        assert json.load(f)["loop"]["global_step"] == 10
    # lr per 256 images, batch 8: peak 0.4 * 8 / 256 = 0.0125 after a warm-up from
    # 0.05 * 8 / 256 = 0.0015625, halved after step 6.
    lrs = [r["lr"] for r in steps]
    assert lrs[0] == pytest.approx((0.0015625 + 0.0125) / 2)  # after update 1 of 2
    assert max(lrs) == pytest.approx(0.0125) and lrs[-1] == pytest.approx(0.0125 / 2)
    # Each loss by name, and the total is their sum (one loss for classification).
    assert all(r["losses"].keys() == {"xent"} for r in steps + epochs)
    assert all(r["losses"]["xent"] == pytest.approx(r["loss"]) for r in steps + epochs)


def test_the_task_of_arch_chooses_the_recipe_defaults():
    """`--arch ssd320_resnet50_fpn` alone is NVIDIA's SSD320 v1.2 recipe; the classifier keeps
    its own; a flag given on the command line wins over both."""
    import train
    ssd = train.parse_args(["--arch", "ssd320_resnet50_fpn"])
    assert (ssd.batch_size, ssd.image_shape, ssd.num_steps, ssd.warmup_steps) == \
        (32, (3, 320, 320), 12500, 1000)
    assert (ssd.lr, ssd.momentum, ssd.wd) == (0.16, 0.9, 4e-4)
    assert ssd.lr * ssd.warmup_begin_factor == pytest.approx(0.0693312)
    # 8 workers x 32 = 256 images a step: the rates are the recipe's own.
    schedule = train.lr_schedule(ssd, train.scaled_learning_rate(ssd.lr, 256), steps=1250)
    assert schedule(0) == pytest.approx(0.0693312) and schedule(1000) == pytest.approx(0.16)
    assert schedule(12500) == pytest.approx(0.0, abs=1e-9)
    rn50 = train.parse_args([])
    assert (rn50.batch_size, rn50.image_shape, rn50.lr, rn50.num_steps) == \
        (208, (3, 224, 224), 0.256, None)
    given = train.parse_args(["--arch", "ssd320_resnet18_fpn", "-b", "8", "--lr", "0.01"])
    assert (given.batch_size, given.lr, given.num_steps) == (8, 0.01, 12500)
    # The warm-up follows a learning rate given on the command line.
    low = train.lr_schedule(given, 0.01, steps=10)
    assert low(0) == pytest.approx(0.01 * 0.0693312 / 0.16) and low(1000) == pytest.approx(0.01)
