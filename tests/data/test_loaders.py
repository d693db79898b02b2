"""Every backend yields the same batches; bad data roots fail with a message that helps."""
import os
import re
import shutil
import tempfile

import numpy as np
import pytest

from data.loaders import DataError, LoaderConfig, build_loader, record_files
from tests.conftest import _write_tiny_recordio


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


@pytest.fixture(scope="module")
def numbered_val_dataset(tmp_path_factory):
    """val.rec/.idx with 40 images whose label is their index in the file, so that a batch's
    labels say exactly which samples it holds."""
    import cv2
    import mxnet as mx
    root = tmp_path_factory.mktemp("numbered_val")
    record = mx.recordio.MXIndexedRecordIO(str(root / "val.idx"), str(root / "val.rec"), "w")
    for i in range(40):
        image = np.full((40, 48, 3), 6 * i, np.uint8)
        jpeg = cv2.imencode(".jpg", image)[1].tobytes()
        record.write_idx(i, mx.recordio.pack(mx.recordio.IRHeader(0, float(i), i, 0), jpeg))
    record.close()
    return root


@pytest.mark.parametrize("backend", ["dali-cpu", "mxnet"])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_validation_counts_every_sample_once(numbered_val_dataset, backend, workers):
    """Every validation pass, the first as well as later ones, gives each of the 40 samples
    exactly once over all workers; each worker reads a contiguous run of the file, in order.
    (DALI's readers move each worker to the next shard at every epoch; the union is the same.)
    """
    loaders = [build_loader(_config(numbered_val_dataset, backend, rank=rank,
                                    world_size=workers), "val") for rank in range(workers)]
    for epoch in range(2):
        shards = [np.concatenate([b["label"].asnumpy() for b in loader]) for loader in loaders]
        assert sorted(np.concatenate(shards).tolist()) == list(range(40)), epoch
        for shard in shards:
            assert shard.tolist() == list(range(shard[0], shard[0] + len(shard))), epoch


@pytest.fixture(scope="module")
def uneven_dataset(tmp_path_factory):
    """47 training images: 3 workers get shards of 15, 16 and 16 samples, that is 1, 2 and 2
    whole batches of 8 if nothing evened them out."""
    root = tmp_path_factory.mktemp("uneven_dataset")
    _write_tiny_recordio(str(root / "train"), 47, seed=3)
    return root


@pytest.mark.parametrize("backend", ["dali-cpu", "mxnet"])
def test_training_workers_take_equal_step_counts(uneven_dataset, backend):
    """Shards of unequal size still give every worker the same number of batches (those of
    the smallest shard), epoch after epoch, as allreduce needs; a loader yields as many
    batches as its len() says."""
    for rank in range(3):
        loader = build_loader(_config(uneven_dataset, backend, rank=rank, world_size=3),
                              "train")
        counts = [sum(1 for _ in loader) for _ in range(3)]
        assert counts == [len(loader)] * 3 == [47 // 3 // 8] * 3, (rank, counts, len(loader))


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


def test_empty_file(tiny_dataset, tmp_path):
    shutil.copy(tiny_dataset / "train.rec", tmp_path / "train.rec")
    (tmp_path / "train.idx").write_text("")
    with pytest.raises(DataError, match="train.idx is empty"):
        record_files(str(tmp_path), "train")


def test_file_without_read_permission(tiny_dataset):
    """A file the user may not read is named, with the hint to check its permissions. Root
    reads any file, so the check runs in a child process as the unprivileged user 'nobody'."""
    root = tempfile.mkdtemp()  # not under tmp_path: its parents are closed to other users
    try:
        shutil.copy(tiny_dataset / "train.rec", os.path.join(root, "train.rec"))
        shutil.copy(tiny_dataset / "train.idx", os.path.join(root, "train.idx"))
        os.chmod(root, 0o755)
        os.chmod(os.path.join(root, "train.idx"), 0o644)
        os.chmod(os.path.join(root, "train.rec"), 0)
        message = _record_files_as_nobody(root) if os.geteuid() == 0 else _record_files(root)
    finally:
        shutil.rmtree(root)
    assert re.search(r"train.rec is not readable.*permissions", message), message


def _record_files(root):
    try:
        record_files(root, "train")
    except DataError as error:
        return str(error)
    return "no error"


def _record_files_as_nobody(root):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop root, check, report through the pipe, exit at once
        code = 1
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.write(write, _record_files(root).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        message = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert status == 0, f"child failed with status {status}: {message}"
    return message


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
