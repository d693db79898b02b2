"""Training cases: the runner command, reading the run's log, naming a failure, and a sweep
that records failures and goes on (with a stand-in runner, so it takes seconds)."""
import io
import json
import os
import signal

import pytest

from benchmarking.settings import Settings
from benchmarking.stats import add_scaling
from benchmarking.sweep import training_sweep
from benchmarking.training import (CaseFailed, error_line, read_epoch_records,
                                   run_training_case, runner_command)

FAKE_RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_runner.py")


def _flag(command, name):
    return command[command.index(name) + 1]


def test_runner_command_trains_warmup_plus_counted_epochs_of_i_iterations():
    settings = Settings(model="resnet18_v1.5", iterations=7, epochs=3, warmup=2,
                        image_shape=(3, 64, 64), data_backend="dali-cpu", data_root="/d",
                        runner_args=("--lr", "0.1"))
    command = runner_command(settings, workers=2, batch_size=16, workspace="/ws",
                             runner="/r/runner")
    assert command[1] == "/r/runner"
    assert _flag(command, "-n") == "2" and _flag(command, "-b") == "16"
    assert _flag(command, "--num-epochs") == "5"
    assert _flag(command, "--num-examples") == str(7 * 2 * 16)
    assert _flag(command, "--mode") == "train" and _flag(command, "--workspace") == "/ws"
    assert _flag(command, "--data-backend") == "dali-cpu" and _flag(command, "--data-root") == "/d"
    assert _flag(command, "--image-shape") == "3,64,64"
    assert _flag(command, "--arch") == "resnet18_v1.5"
    assert _flag(command, "--save-frequency") == "0" and _flag(command, "--progress") == "off"
    assert command[-2:] == ["--lr", "0.1"]  # pass-through flags last


def test_num_examples_caps_the_iterations():
    settings = Settings(iterations=100, num_examples=640)
    command = runner_command(settings, workers=2, batch_size=32, workspace="/ws")
    assert _flag(command, "--num-examples") == "640"  # 10 iterations of 64
    assert settings.epoch_iterations(64) == 10 and settings.epoch_iterations(1000) == 0


def test_read_epoch_records_keeps_epoch_events_in_order(tmp_path):
    path = tmp_path / "log.jsonl"
    lines = [{"event": "train", "epoch": 0}, {"event": "epoch", "epoch": 0},
             {"event": "train", "epoch": 1}, {"event": "epoch", "epoch": 1}]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert [r["epoch"] for r in read_epoch_records(str(path))] == [0, 1]
    assert read_epoch_records(str(tmp_path / "missing.jsonl")) == []


@pytest.mark.parametrize("lines, returncode, expected", [
    # runner refusing a request
    (["runner: error: --dtype float16 needs GPUs and a CUDA build of MXNet"], 2,
     "runner: error: --dtype float16 needs GPUs and a CUDA build of MXNet"),
    # train.py's logged error under horovodrun, followed by horovod's own lines
    (["[0]<stdout>:12:01:02 INFO training resnet50_v1.5",
      "[0]<stdout>:12:01:03 ERROR --num-examples 3 is less than one global batch (4 x 1)",
      "Process 0 exit with status code 2.",
      "Terminating remaining workers after failure of Process 0."], 1,
     "--num-examples 3 is less than one global batch (4 x 1)"),
    # out of memory wins over a later, more generic error line
    (["[1]<stderr>:Traceback (most recent call last):",
      '[1]<stderr>:  File "train.py", line 3, in <module>',
      "[1]<stderr>:mxnet.base.MXNetError: cudaMalloc retry failed: out of memory",
      "[1]<stderr>:RuntimeError: worker failed"], 1,
     "mxnet.base.MXNetError: cudaMalloc retry failed: out of memory"),
    # killed by the kernel's OOM killer: no message at all
    (["[0]<stdout>:12:01:02 INFO training resnet50_v1.5"], -signal.SIGKILL,
     "a worker was killed (SIGKILL): most likely out of host memory"),
    (["some output", "last words"], 3, "last words"),
    ([], 3, "exit status 3 and no output"),
])
def test_error_line_names_the_failure(lines, returncode, expected):
    assert error_line(lines, returncode) == expected


def test_a_case_reads_the_counted_epochs_of_the_run(tmp_path):
    settings = Settings(iterations=5, epochs=2, warmup=1)
    result = run_training_case(settings, 2, 4, str(tmp_path / "case.log"), FAKE_RUNNER)
    # The fake runner's iterations take 100 ms x batch (twice that in the warm-up epoch).
    assert result["iter_ms"] == pytest.approx(400.0)
    assert result["img_per_s"] == pytest.approx(2 * 4 / 0.4)
    assert result["iterations"] == 10 and result["epochs"] == 2 and "note" not in result
    assert "epoch 2 done" in (tmp_path / "case.log").read_text()


def test_fewer_iterations_than_requested_are_noted(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_RUNNER_EPOCH_BATCHES", "3")
    settings = Settings(iterations=5, epochs=2, warmup=1)
    result = run_training_case(settings, 1, 4, str(tmp_path / "case.log"), FAKE_RUNNER)
    assert result["iterations"] == 6
    assert result["note"].startswith("6 iterations counted instead of 10")


def test_a_failing_case_raises_with_its_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_RUNNER_FAIL", "4")
    with pytest.raises(CaseFailed, match="^batch 4 cannot run here$"):
        run_training_case(Settings(iterations=2), 1, 4, str(tmp_path / "case.log"),
                          FAKE_RUNNER)


def test_sweep_records_failures_skips_after_out_of_memory_and_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_RUNNER_FAIL", "2")
    monkeypatch.setenv("FAKE_RUNNER_OOM", "8")
    out = io.StringIO()
    rows = add_scaling(list(training_sweep(Settings(iterations=3, epochs=1, warmup=1), [1, 2],
                                           [2, 4, 8, 16], str(tmp_path / "logs"),
                                           FAKE_RUNNER, out=out)))
    status = {(r["workers"], r["batch_size"]): r["status"] for r in rows}
    assert status == {(1, 2): "failed", (1, 4): "ok", (1, 8): "failed", (1, 16): "skipped",
                      (2, 2): "failed", (2, 4): "ok", (2, 8): "failed", (2, 16): "skipped"}
    by_case = {(r["workers"], r["batch_size"]): r for r in rows}
    assert by_case[(1, 2)]["error"] == "batch 2 cannot run here"
    assert by_case[(1, 2)]["log"].endswith("train-n1-b2.log")
    assert "out of memory" in by_case[(1, 8)]["error"]
    assert by_case[(1, 16)]["error"] == "batch 8 ran out of memory"
    # Two workers at batch 4: twice the images per 400 ms iteration, perfect scaling.
    assert by_case[(2, 4)]["speedup"] == pytest.approx(2.0)
    assert by_case[(2, 4)]["scaling_efficiency"] == pytest.approx(1.0)
    progress = out.getvalue()
    assert "[1/8] training" in progress and "[8/8] training" in progress
    assert "-> FAILED: batch 2 cannot run here" in progress
    assert "epoch 1 done" in progress  # the runs' epoch summaries are echoed
