"""Distributed with 2 real Horovod processes (Gloo, started by engine.launcher): every
collective meets across ranks whatever each rank passes, parameters in oneDNN's blocked layout
broadcast correctly, BatchNorm statistics are averaged, and a collective that one rank skips,
or a rank that raises, ends the run instead of hanging."""
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = os.path.join(ROOT, "tests", "engine", "dist_worker.py")


def _launch(mode, timeout, **env):
    command = [sys.executable, "-m", "engine.launcher", "-n", "2", sys.executable, WORKER, mode]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, OMP_NUM_THREADS="1", **env))


def _results(stdout):
    return sorted((json.loads(line.split("RESULT ", 1)[1]) for line in stdout.splitlines()
                   if "RESULT {" in line), key=lambda r: r["rank"])


def test_collectives_meet_whatever_each_rank_passes():
    result = _launch("collectives", timeout=240, TEST_STALL_TIMEOUT="60")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rank0, rank1 = _results(result.stdout)
    # None on rank 1 against bytes (or a tuple) on rank 0: both get rank 0's object.
    assert rank0["broadcast_bytes"] == rank1["broadcast_bytes"] == "trainer-states"
    assert rank0["broadcast_tuple"] == rank1["broadcast_tuple"] == ["ckpt", None]
    assert rank0["gathered"] == rank1["gathered"] == [{"rank": 0, "pad": ""},
                                                     {"rank": 1, "pad": "x"}]
    assert rank0["sum"] == rank1["sum"] == [2.0, 1.0]
    # The conv weights were in oneDNN's blocked layout when broadcast (the case that crashed
    # Horovod), and both ranks end with rank 0's weights.
    assert rank0["blocked_before"] > 0 and rank1["blocked_before"] > 0
    assert rank0["digest"] == rank1["digest"]
    assert rank0["bn_mean"] == rank1["bn_mean"] == 1.5  # mean of 1 (rank 0) and 2 (rank 1)


def test_a_skipped_collective_ends_with_the_stall_message_within_the_bound():
    started = time.monotonic()
    result = _launch("mismatch", timeout=120, TEST_STALL_TIMEOUT="6")
    elapsed = time.monotonic() - started
    assert result.returncode == 75, result.stdout[-2000:] + result.stderr[-2000:]
    assert "RESULT unreachable" not in result.stdout
    # The launcher says where each rank waited: rank 0 in the collective rank 1 skipped.
    assert "worker 0 was waiting in collective 'test.only_rank0'" in result.stderr
    assert "launcher: worker" in result.stderr and "--stall-timeout" in result.stderr
    assert "worker 1 was waiting in collective 'test.everyone'" in result.stderr
    assert elapsed < 60, f"the stall took {elapsed:.0f} s to end, with a 6 s bound"


def test_batchnorm_statistics_become_the_mean_over_workers_after_an_epoch():
    result = _launch("batchnorm", timeout=240, TEST_STALL_TIMEOUT="60")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rank0, rank1 = _results(result.stdout)
    (name,) = rank0["after"]
    before0, before1 = np.array(rank0["before"][name]), np.array(rank1["before"][name])
    assert np.abs(before0 - before1).min() > 0.01  # the ranks' data differ, so do their stats
    np.testing.assert_allclose(rank0["after"][name], (before0 + before1) / 2, rtol=1e-6)
    assert rank0["after"] == rank1["after"]


def test_a_worker_that_raises_ends_the_run_within_seconds():
    started = time.monotonic()
    result = _launch("raise", timeout=120)  # no stall bound: the launcher alone must end it
    assert result.returncode == 1
    assert "worker 1 fails on purpose" in result.stderr
    assert "launcher: worker 1 stopped with exit status 1" in result.stderr
    assert time.monotonic() - started < 40
