"""The loader comparison on a small photo-like file, with and without MXNet."""
import os
import subprocess
import sys

import pytest

from benchmarking import loaders
from benchmarking.photos import make_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def photo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    make_dataset(str(root), num_images=24, num_classes=4)
    return str(root)


def test_every_loader_is_timed_against_the_decode_ceiling(photo_root):
    seen, turns = [], []
    rows = loaders.compare_loaders(photo_root, batch_size=4, crop=(32, 32), threads=2,
                                   warmup_batches=2, round_batches=3, rounds=2,
                                   on_result=seen.append,
                                   on_round=lambda *args: turns.append(args[:3]))
    by_name = {r["loader"]: r for r in rows}
    assert list(by_name) == ["decode-ceiling", *loaders.LOADERS]
    assert sorted(r["loader"] for r in seen) == sorted(by_name)
    # The loaders take turns, round after round (Gluon started first: it forks workers).
    assert turns == [(name, r, 2) for r in (0, 1) for name in ("gluon", "dali-cpu", "mxnet")]
    assert by_name["dali-gpu"] == {"mode": "loader", "loader": "dali-gpu", "batch_size": 4,
                                   "status": "skipped", "note": "no GPU here"}
    ceiling = by_name["decode-ceiling"]["img_per_s"]
    recorditer = by_name["mxnet"]["img_per_s"]
    for name in ("dali-cpu", "mxnet", "gluon"):
        row = by_name[name]
        assert row["status"] == "ok", row
        assert row["img_per_s"] > 0
        assert row["ratio_to_recorditer"] == pytest.approx(row["img_per_s"] / recorditer)
        assert row["share_of_decode_ceiling"] == pytest.approx(row["img_per_s"] / ceiling)
    assert by_name["mxnet"]["ratio_to_recorditer"] == pytest.approx(1.0)
    assert "MXNet NDArrays" in by_name["dali-cpu"]["note"]


def test_batches_have_the_training_format(photo_root):
    for make in (lambda: loaders.dali_batches("dali-cpu", photo_root, 4, (32, 32), 2),
                 lambda: loaders.recorditer_batches(photo_root, 4, (32, 32), 2),
                 lambda: loaders.gluon_batches(photo_root, 4, (32, 32), 2)):
        batches, _ = make()
        batch = next(batches)
        batches.close()
        data = batch["data"].asnumpy()
        assert data.shape == (4, 3, 32, 32) and data.dtype == "float32"
        # Normalised with ImageNet statistics: roughly zero-centred, unit-scaled values.
        assert -3 < data.mean() < 3 and 0.1 < data.std() < 3


def test_without_mxnet_dali_is_timed_on_its_own_outputs(photo_root, tmp_path):
    # Block the import of MXNet, as on a GPU machine with DALI alone.
    code = ("import runpy, sys; sys.modules['mxnet'] = None; "
            f"sys.argv = ['benchmark.py', '--loaders', '--data-root', {photo_root!r}, "
            f"'-b', '4', '-i', '2', '-e', '1', '-w', '1', '--image-shape', '3,32,32', "
            f"'-o', {str(tmp_path / 'loaders.json')!r}]; "
            "runpy.run_path('benchmark.py', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "timed on DALI's own outputs (MXNet not importable)" in result.stdout
    assert "MXNet is not importable here" in result.stdout  # mxnet and gluon rows
    assert (tmp_path / "loaders.json").exists()


def test_a_broken_loader_is_named_and_the_others_are_still_timed(monkeypatch):
    def fine(*args):
        def batches():
            while True:
                yield {"data": None}
        return batches(), "fake"

    starts = []

    def breaks_in_round_two(*args):
        starts.append(1)

        def batches():
            if len(starts) == 2:
                raise OSError("disk vanished")
            while True:
                yield {"data": None}
        return batches(), "fake"

    def cannot_start(*args):
        raise RuntimeError("no such file")

    monkeypatch.setattr(loaders, "_SOURCES", {"dali-cpu": fine, "dali-gpu": cannot_start,
                                              "mxnet": fine, "gluon": breaks_in_round_two})
    monkeypatch.setattr(loaders, "decode_ceiling", lambda *args: 1000.0)
    rows = {r["loader"]: r for r in loaders.compare_loaders(
        "unused", batch_size=4, crop=(32, 32), threads=2, warmup_batches=2, round_batches=3,
        rounds=2)}
    assert rows["dali-gpu"]["status"] == "failed"
    assert rows["dali-gpu"]["error"] == "RuntimeError: no such file"
    assert rows["gluon"]["status"] == "failed" and "disk vanished" in rows["gluon"]["error"]
    assert rows["dali-cpu"]["status"] == rows["mxnet"]["status"] == "ok"
    assert len(rows["dali-cpu"]["round_img_per_s"]) == 2
    assert rows["dali-cpu"]["share_of_decode_ceiling"] == pytest.approx(
        rows["dali-cpu"]["img_per_s"] / 1000.0)
