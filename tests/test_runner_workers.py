"""./runner with several real workers on this machine: a worker that dies is named with its
signal and the command that resumes, the run listens on loopback only, a checkpoint error on
rank 0 ends every worker, --mode val counts every image once over an uneven split, a
record that fails to decode is skipped or stops every worker, as --bad-data says, and a
target accuracy ends every worker after the evaluation that reaches it."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import _write_tiny_recordio

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, "runner")


def _command(data_root, workspace, workers, *extra):
    return [RUNNER, "-n", str(workers), "-b", "8", "--data-root", str(data_root),
            "--workspace", str(workspace), "--image-shape", "3,32,32",
            "--arch", "resnet18_v1.5", "--num-classes", "4", "--data-threads", "1",
            "--log-interval", "2", "--progress", "off", *extra]


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _children(pid):
    """{pid: rank} of the Horovod workers started by process `pid`."""
    workers = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
        except (OSError, ValueError, IndexError):
            continue
        if parent == pid and b"HOROVOD_RANK" in env:
            workers[int(entry)] = int(env[b"HOROVOD_RANK"])
    return workers


def _listening_addresses(pids):
    """The local addresses of the TCP sockets in LISTEN state that `pids` own."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    addresses = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    addresses.append(fields[1].split(":")[0][:width])
    return addresses


LOOPBACK = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1 and ::1, as /proc writes them


def test_killed_worker_is_named_and_the_run_listens_on_loopback_only(tiny_dataset, tmp_path):
    process = subprocess.Popen(_command(tiny_dataset, tmp_path, 2, "--num-epochs", "40"),
                               env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        listening, workers = set(), {}
        deadline = time.monotonic() + 240
        while not os.path.isdir(tmp_path / "checkpoints" / "epoch-0002"):
            assert process.poll() is None and time.monotonic() < deadline
            workers.update(_children(process.pid))
            listening.update(_listening_addresses([process.pid, *workers]))
            time.sleep(0.05)
        assert sorted(workers.values()) == [0, 1]
        # The rendezvous server at least was seen; nothing listened beyond loopback.
        assert listening and listening <= LOOPBACK, listening
        rank1 = next(pid for pid, rank in workers.items() if rank == 1)
        os.kill(rank1, signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 137
    assert "runner: worker 1 was killed (SIGKILL)" in stderr and "out-of-memory" in stderr
    assert re.search(r"last valid checkpoint: .*epoch-000\d", stderr)
    resume = next(line for line in stderr.splitlines() if "to continue from it:" in line)
    assert resume.endswith("--resume") and "--num-epochs 40" in resume


def test_no_checkpoint_on_rank_0_ends_every_worker_with_status_2(tiny_dataset, tmp_path):
    started = time.monotonic()
    result = subprocess.run(_command(tiny_dataset, tmp_path, 2, "--mode", "val"), env=_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "no valid checkpoint" in result.stdout
    # Both workers stopped with the error, neither hung until the stall bound.
    assert "stopped with exit status 2" in result.stderr
    assert time.monotonic() - started < 60


@pytest.fixture(scope="module")
def uneven_val(tiny_dataset, tmp_path_factory):
    """train.rec of the tiny set, and a 41-image val.rec: 2 and 3 workers split it unevenly."""
    root = tmp_path_factory.mktemp("uneven")
    for name in ("train.rec", "train.idx"):
        os.symlink(tiny_dataset / name, root / name)
    _write_tiny_recordio(str(root / "val"), 41, seed=5)
    return root


@pytest.mark.parametrize("workers", [2, 3])
def test_val_mode_counts_every_image_once_and_matches_one_worker(uneven_val, tmp_path,
                                                                 workers):
    weights = tmp_path / "weights"
    subprocess.run(_command(uneven_val, weights, 1, "--mode", "train", "--num-epochs", "1"),
                   env=_env(), check=True, capture_output=True, timeout=300)

    def evaluate(n):
        result = subprocess.run(_command(uneven_val, tmp_path / f"val{n}", n, "--mode", "val",
                                         "--load", str(weights / "checkpoints" / "epoch-0001")),
                                env=_env(), capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        return re.search(r"validation: (top-1 \S+ +top-5 \S+ +\((\d+) images\))",
                         result.stdout).groups()

    one, many = evaluate(1), evaluate(workers)
    assert many[1] == one[1] == "41"
    assert many[0] == one[0]


def test_a_reached_target_ends_every_worker_after_that_evaluation(tiny_dataset, tmp_path):
    """--target-top1 0 is reached by the first evaluation: both workers leave the loop after
    epoch 1 of 4 (neither waits for the other in a next allreduce), the stopping epoch's
    checkpoint is written although --save-frequency 3 would skip it, and the log and the
    report say the target was reached."""
    report = tmp_path / "report.json"
    result = subprocess.run(
        _command(tiny_dataset, tmp_path, 2, "--mode", "train_val", "--num-epochs", "4",
                 "--save-frequency", "3", "--target-top1", "0", "--report", str(report)),
        env=_env(), capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "target reached" in result.stdout
    epochs = [json.loads(line) for line in open(tmp_path / "log.jsonl")
              if '"event": "epoch"' in line]
    assert [e["target_reached"] for e in epochs] == [True]
    assert os.listdir(tmp_path / "checkpoints") == ["epoch-0001"]
    with open(report) as f:
        assert json.load(f)["target_reached"] is True


@pytest.mark.parametrize("policy", ["skip", "stop"])
def test_a_bad_record_is_skipped_or_stops_every_worker(damaged_dataset, tmp_path, policy):
    """Two workers on an unrepaired .rec (truncated JPEG, random bytes, empty record):
    skip (the default) finishes every epoch with the bad samples counted in the log; stop
    ends both workers at once with status 2, naming each record and the repair command.
    Neither hangs (the test's timeout bounds it)."""
    extra = ["--num-epochs", "2", "--mode", "train"] + (["--bad-data", "stop"]
                                                         if policy == "stop" else [])
    result = subprocess.run(_command(damaged_dataset, tmp_path, 2, *extra), env=_env(),
                            capture_output=True, text=True, timeout=180)
    output = result.stdout + result.stderr
    assert "Critical error in pipeline" not in output  # never DALI's raw traceback
    if policy == "skip":
        assert result.returncode == 0, output[-3000:]
        epochs = [json.loads(line) for line in open(tmp_path / "log.jsonl")
                  if '"event": "epoch"' in line]
        assert [e["skipped_samples"] for e in epochs] == [3, 3]
        assert "leaving out" in result.stdout and "--repair" in result.stdout
    else:
        assert result.returncode == 2, output[-3000:]
        assert "stopped with exit status 2" in result.stderr
        assert re.search(r"cannot be decoded: key \d+ at offset \d+: ", result.stdout)
        assert "im2rec --check" in result.stdout and "train.rec --repair" in result.stdout
        assert not os.path.isdir(tmp_path / "checkpoints" / "epoch-0001")


@pytest.fixture(scope="module")
def coco_with_a_bad_image(tmp_path_factory):
    """The demo detection set (16 training images of 128x128) with one training JPEG cut
    short, as a broken download leaves it."""
    data = tmp_path_factory.mktemp("bad_coco") / "coco"
    subprocess.run([sys.executable, "-m", "data.demo", "detection", "--out", str(data),
                    "--train-images", "16", "--val-images", "4", "--size", "128",
                    "--no-progress"], cwd=ROOT, check=True, capture_output=True, timeout=300)
    image = sorted((data / "train2017").iterdir())[3]
    image.write_bytes(image.read_bytes()[:200])
    return data, image


@pytest.mark.parametrize("policy", ["skip", "stop"])
def test_a_bad_coco_image_is_skipped_or_stops_every_worker(coco_with_a_bad_image, tmp_path,
                                                           policy):
    """SSD, two workers, a truncated training JPEG: skip (the default) trains every step
    without it and logs it; stop ends both workers at once with status 2, naming the image
    and the check command. Never DALI's traceback, never a hang (the timeout bounds it)."""
    data, image = coco_with_a_bad_image
    result = subprocess.run(
        [RUNNER, "-n", "2", "-b", "4", "--arch", "ssd128_resnet18_fpn64", "--data-root",
         str(data), "--workspace", str(tmp_path), "--num-steps", "8", "--epoch-steps", "4",
         "--data-threads", "1", "--progress", "off", "--bad-data", policy],
        env=_env(), capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert "Critical error in pipeline" not in output and "Traceback" not in output
    assert f"{image}: truncated JPEG" in output, output[-3000:]
    assert f"python -m data.coco_check {data} --splits train2017" in output
    if policy == "skip":
        assert result.returncode == 0, output[-3000:]
        assert "leaving out 1 bad image(s)" in output
        epochs = [json.loads(line) for line in open(tmp_path / "log.jsonl")
                  if '"event": "epoch"' in line]
        assert len(epochs) == 2 and all(e["skipped_samples"] >= 1 for e in epochs)
    else:
        assert result.returncode == 2, output[-3000:]
        assert "1 image(s) cannot be decoded" in output
        assert "stopped with exit status 2" in result.stderr
