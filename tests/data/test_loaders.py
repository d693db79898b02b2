"""Every backend yields the same batches; bad data roots fail with a message that helps."""
import os
import shutil

import numpy as np
import pytest

from data.loaders import DataError, LoaderConfig, build_loader, record_files


def _config(root, backend, **overrides):
    options = dict(backend=backend, data_root=str(root), batch_size=8,
                   image_shape=(3, 32, 32), num_threads=1, num_classes=4)
    options.update(overrides)
    return LoaderConfig(**options)


@pytest.mark.parametrize("backend", ["dali-cpu", "mxnet", "synthetic"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_backends_yield_the_same_batch_format(tiny_dataset, backend, layout):
    for split in ("train", "val"):
        loader = build_loader(_config(tiny_dataset, backend, layout=layout), split)
        batches = list(loader)
        assert len(batches) == len(loader) > 0
        batch = batches[0]
        assert set(batch) == {"data", "label"}
        expected = (8, 3, 32, 32) if layout == "NCHW" else (8, 32, 32, 3)
        assert batch["data"].shape == expected and batch["data"].dtype == np.float32
        assert batch["label"].shape == (8,) and batch["label"].dtype == np.int32
        assert set(batch["label"].asnumpy()) <= {0, 1, 2, 3}


@pytest.mark.parametrize("backend", ["dali-cpu", "mxnet"])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_validation_counts_every_sample_once(tiny_dataset, backend, workers):
    labels = []
    for rank in range(workers):
        loader = build_loader(_config(tiny_dataset, backend, rank=rank, world_size=workers),
                              "val")
        for _ in range(2):  # a second pass gives the same samples
            epoch = [batch["label"].asnumpy() for batch in loader]
        labels.extend(np.concatenate(epoch))
    assert len(labels) == 40
    assert np.bincount(labels).tolist() == [10, 10, 10, 10]  # the fixture's 40 = 4 x 10


@pytest.mark.parametrize("backend", ["dali-cpu", "mxnet"])
def test_training_workers_take_equal_step_counts(tiny_dataset, backend):
    lengths = {len(build_loader(_config(tiny_dataset, backend, rank=r, world_size=3), "train"))
               for r in range(3)}
    assert lengths == {96 // 3 // 8}


def test_float16_output(tiny_dataset):
    batch = next(iter(build_loader(_config(tiny_dataset, "dali-cpu", dtype="float16"), "train")))
    assert batch["data"].dtype == np.float16


def test_missing_data_root(tmp_path):
    with pytest.raises(DataError, match="not a directory.*--data-root"):
        record_files(str(tmp_path / "nowhere"), "train")


def test_missing_rec(tmp_path):
    with pytest.raises(DataError, match="train.rec does not exist.*data.im2rec"):
        record_files(str(tmp_path), "train")


def test_rec_without_idx(tiny_dataset, tmp_path):
    shutil.copy(tiny_dataset / "train.rec", tmp_path / "train.rec")
    with pytest.raises(DataError, match="has no index.*--index-only"):
        build_loader(_config(tmp_path, "dali-cpu"), "train")


def test_empty_and_unreadable_files(tiny_dataset, tmp_path):
    shutil.copy(tiny_dataset / "train.rec", tmp_path / "train.rec")
    (tmp_path / "train.idx").write_text("")
    with pytest.raises(DataError, match="train.idx is empty"):
        record_files(str(tmp_path), "train")
    shutil.copy(tiny_dataset / "train.idx", tmp_path / "train.idx")
    os.chmod(tmp_path / "train.rec", 0)
    if os.access(tmp_path / "train.rec", os.R_OK):
        pytest.skip("running as root: permissions do not stop reading")
    with pytest.raises(DataError, match="not readable"):
        record_files(str(tmp_path), "train")


def test_batch_larger_than_a_shard(tiny_dataset):
    with pytest.raises(DataError, match="fewer samples per worker than one batch"):
        build_loader(_config(tiny_dataset, "dali-cpu", batch_size=64, world_size=2), "train")
    # Validation keeps partial batches, so it still sees every sample.
    val = build_loader(_config(tiny_dataset, "dali-cpu", batch_size=64, world_size=3), "val")
    assert [b["label"].shape[0] for b in val] == [13]


def test_unknown_backend(tiny_dataset):
    with pytest.raises(DataError, match="unknown data backend"):
        build_loader(_config(tiny_dataset, "pillow"), "train")


def test_synthetic_epoch_length_follows_num_examples(tiny_dataset):
    assert len(build_loader(_config(tiny_dataset, "synthetic", num_examples=64, world_size=2),
                            "train")) == 64 // 2 // 8
    assert len(build_loader(_config(tiny_dataset, "synthetic"), "train")) == 96 // 8
    assert len(build_loader(_config(None, "synthetic"), "train")) == 10_000 // 8
