"""./runner and train.py refuse what cannot run, with a message that says what to do."""
import argparse
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, "runner")


def _load_runner():
    loader = importlib.machinery.SourceFileLoader("runner_module", RUNNER)
    spec = importlib.util.spec_from_loader("runner_module", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _run(*args, script=RUNNER):
    command = [sys.executable, script, *args] if script.endswith(".py") else [script, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_float16_without_gpu_is_refused(tiny_dataset):
    result = _run("--dtype", "float16", "--data-root", str(tiny_dataset))
    assert result.returncode == 2
    assert "float16 needs a GPU" in result.stderr and "--dtype float32" in result.stderr


def test_missing_data_root_is_refused(tmp_path):
    result = _run("--data-root", str(tmp_path / "missing"))
    assert result.returncode == 2 and "is not a directory" in result.stderr


def test_rec_without_idx_is_refused(tiny_dataset, tmp_path):
    for split in ("train", "val"):
        shutil.copy(tiny_dataset / f"{split}.rec", tmp_path / f"{split}.rec")
    shutil.copy(tiny_dataset / "val.idx", tmp_path / "val.idx")
    result = _run("--data-root", str(tmp_path))
    assert result.returncode == 2
    assert "train.rec has no index" in result.stderr and "--index-only" in result.stderr


@pytest.mark.parametrize("flag", ["-b", "-n", "--accumulate"])
def test_counts_below_one_are_refused(flag):
    result = _run(flag, "0")
    assert result.returncode == 2 and "must be at least 1" in result.stderr
    assert f"argument {flag}" in result.stderr  # the message names the flag


def test_more_workers_than_gpus_is_refused(tiny_dataset):
    runner = _load_runner()
    args, _ = runner.parse_args(["-n", "4", "--data-root", str(tiny_dataset)])
    with pytest.raises(runner.UsageError, match="more workers than the 2 GPUs"):
        runner.check_request(args, gpus=2)
    args, _ = runner.parse_args(["-n", "2", "--data-root", str(tiny_dataset)])
    runner.check_request(args, gpus=2)
    assert args.dtype == "float16"  # the default where there are GPUs


def test_dry_run_shows_the_worker_command_with_every_forwarded_flag(tiny_dataset):
    result = _run("-n", "2", "-b", "16", "--data-root", str(tiny_dataset), "--dry-run",
                  "--resume", "--num-examples", "64", "--arch", "resnet18_v1.5")
    assert result.returncode == 0, result.stderr
    assert "--dtype float32 (MXNet sees no GPU" in result.stdout
    assert "2 workers on this machine (Horovod over Gloo, 127.0.0.1 only)" in result.stdout
    launch = result.stdout.strip().splitlines()[-1]
    assert "horovodrun" not in launch  # one machine: the project's launcher, on loopback
    assert "-b 16" in launch and "--dtype float32" in launch
    assert "--resume" in launch.split() and "--num-examples 64" in launch
    assert "--arch resnet18_v1.5" in launch


def test_several_machines_go_through_horovodrun(tiny_dataset):
    result = _run("-n", "4", "-H", "node1:2,node2:2", "--network-interface", "eth0",
                  "--data-root", str(tiny_dataset), "--dry-run")
    assert result.returncode == 0, result.stderr
    launch = result.stdout.strip().splitlines()[-1]
    assert "horovodrun -np 4 -H node1:2,node2:2 --gloo --gloo-timeout-seconds" in launch
    assert "--network-interface eth0" in launch


def test_missing_horovodrun_is_refused(tiny_dataset, monkeypatch):
    runner = _load_runner()
    args, _ = runner.parse_args(["-n", "4", "-H", "a:2,b:2", "--data-root", str(tiny_dataset)])
    monkeypatch.setattr(runner.shutil, "which", lambda *a, **k: None)
    with pytest.raises(runner.UsageError, match="horovodrun was not found.*make setup"):
        runner.horovodrun_command(args, ["train.py"])


def test_dali_gpu_without_gpu_is_refused(tiny_dataset):
    result = _run("--data-backend", "dali-gpu", "--data-root", str(tiny_dataset))
    assert result.returncode == 2
    assert "dali-gpu needs a GPU; use dali-cpu" in result.stderr


def test_runner_help_explains_every_flag():
    result = _run("--help")
    assert result.returncode == 0
    for flag in ("-n", "-b", "--dtype", "--data-root", "--data-backend", "--num-epochs",
                 "--num-examples", "--image-shape", "--lr", "--mode", "--resume",
                 "--workspace"):
        assert flag in result.stdout


def test_train_refuses_nhwc_on_cpu(tiny_dataset, tmp_path):
    result = _run("--data-root", str(tiny_dataset), "--layout", "NHWC", "--workspace",
                  str(tmp_path), script=os.path.join(ROOT, "train.py"))
    assert result.returncode == 2 and "NHWC needs a GPU" in result.stdout


def test_val_without_checkpoint_is_refused(tiny_dataset, tmp_path):
    result = _run("--data-root", str(tiny_dataset), "--mode", "val", "--workspace",
                  str(tmp_path), script=os.path.join(ROOT, "train.py"))
    assert result.returncode == 2 and "no valid checkpoint" in result.stdout


def test_a_mistyped_flag_is_refused_before_any_worker_starts(tiny_dataset):
    result = _run("-n", "2", "--data-root", str(tiny_dataset), "--num-epoch", "3")
    assert result.returncode == 2
    assert "unrecognized arguments: --num-epoch" in result.stderr


def test_a_diverging_run_stops_with_status_3_and_says_what_to_change(tiny_dataset, tmp_path):
    result = _run("-b", "8", "--data-root", str(tiny_dataset), "--workspace", str(tmp_path),
                  "--arch", "resnet18_v1.5", "--num-classes", "4", "--image-shape", "3,32,32",
                  "--lr", "1e12", "--warmup-epochs", "0", "--label-smoothing", "0",
                  "--num-epochs", "3", "--log-interval", "2", "--data-threads", "1",
                  "--progress", "off", "--mode", "train")
    assert result.returncode == 3, result.stdout[-2000:] + result.stderr[-2000:]
    assert "training diverged" in result.stdout and "lower --lr" in result.stdout
    assert not os.path.isdir(tmp_path / "checkpoints" / "epoch-0003")
