"""The DALI-to-MXNet iterator: last-batch policies, sharding, reset, checkpoints, memory."""
import cv2
import mxnet as mx
import numpy as np
import pytest

from data.dali_iterator import DALIMXNetIterator, LastBatchPolicy
from data.pipelines import READER_NAME, classification_train_pipeline, classification_val_pipeline


def _indexed_record(directory, count):
    """`count` tiny JPEGs whose label is their index, so batches show which samples came."""
    prefix = str(directory / f"indexed{count}")
    record = mx.recordio.MXIndexedRecordIO(prefix + ".idx", prefix + ".rec", "w")
    for i in range(count):
        jpeg = cv2.imencode(".jpg", np.full((16, 16, 3), 7 * i % 256, np.uint8))[1].tobytes()
        record.write_idx(i, mx.recordio.pack(mx.recordio.IRHeader(0, float(i), i, 0), jpeg))
    record.close()
    return prefix


def _val_iterator(prefix, batch_size, shard_id=0, num_shards=1,
                  policy=LastBatchPolicy.PARTIAL, checkpoint=None):
    pipeline = classification_val_pipeline(
        rec_path=prefix + ".rec", idx_path=prefix + ".idx", shard_id=shard_id,
        num_shards=num_shards, crop_size=(8, 8), resize_shorter=8, decoder_device="cpu",
        hw_decoder_load=0.0, dtype="float32", layout="NCHW", pad_channels=False,
        batch_size=batch_size, num_threads=1, device_id=None, enable_checkpointing=True,
        checkpoint=checkpoint)
    return DALIMXNetIterator(pipeline, ["data", "label"], READER_NAME, policy)


def _epoch_labels(iterator):
    return [batch["label"].asnumpy().tolist() for batch in iterator]


@pytest.mark.parametrize("policy, expected", [
    (LastBatchPolicy.DROP, [[0, 1], [2, 3], [4, 5]]),
    (LastBatchPolicy.PARTIAL, [[0, 1], [2, 3], [4, 5], [6]]),
    (LastBatchPolicy.FILL, [[0, 1], [2, 3], [4, 5], [6, 6]]),
])
def test_last_batch_policies(tmp_path, policy, expected):
    iterator = _val_iterator(_indexed_record(tmp_path, 7), 2, policy=policy)
    assert len(iterator) == len(expected)
    for _ in range(2):  # the second epoch starts again at sample 0 (padded shards)
        assert _epoch_labels(iterator) == expected


@pytest.mark.parametrize("num_shards", [2, 3])
def test_shards_cover_every_sample_exactly_once_per_epoch(tmp_path, num_shards):
    prefix = _indexed_record(tmp_path, 23)
    iterators = [_val_iterator(prefix, 4, shard, num_shards) for shard in range(num_shards)]
    assert len({len(it) for it in iterators}) == 1  # equal batch counts on every worker
    for _ in range(2):
        seen = [label for it in iterators for batch in _epoch_labels(it) for label in batch]
        assert sorted(seen) == list(range(23))


def test_training_shards_take_equal_steps_and_distinct_samples(tmp_path):
    prefix = _indexed_record(tmp_path, 23)
    epochs = []
    for shard in range(3):
        pipeline = classification_train_pipeline(
            rec_path=prefix + ".rec", idx_path=prefix + ".idx", shard_id=shard, num_shards=3,
            crop_size=(8, 8), random_area=(0.5, 1.0), random_aspect_ratio=(0.75, 4 / 3),
            decoder_device="cpu", hw_decoder_load=0.0, dtype="float32", layout="NCHW",
            pad_channels=False, batch_size=3, num_threads=1, device_id=None, seed=shard)
        iterator = DALIMXNetIterator(pipeline, ["data", "label"], READER_NAME,
                                     LastBatchPolicy.DROP)
        epochs.append(sum(_epoch_labels(iterator), []))
    assert [len(e) for e in epochs] == [6, 6, 6]  # 23 // 3 = 7 per shard, 2 whole batches
    flat = sum(epochs, [])
    assert len(set(flat)) == len(flat)  # no sample on two workers


def test_kept_batches_are_not_overwritten_by_later_ones(tmp_path):
    # Zero-copy is only safe if DALI never reuses a buffer that MXNet still holds.
    iterator = _val_iterator(_indexed_record(tmp_path, 12), 4)
    kept, copies = [], []
    for _ in range(3):
        for batch in iterator:
            kept.append(batch)
            copies.append(batch["data"].asnumpy().copy())
    for batch, copy in zip(kept, copies):
        np.testing.assert_array_equal(batch["data"].asnumpy(), copy)


def test_checkpoint_resumes_mid_epoch(tmp_path):
    prefix = _indexed_record(tmp_path, 10)
    iterator = _val_iterator(prefix, 3)
    stream = iter(iterator)
    next(stream)
    checkpoint = iterator.checkpoints()[0]
    rest = [batch["label"].asnumpy().tolist() for batch in stream]
    restored = _val_iterator(prefix, 3, checkpoint=checkpoint)
    assert _epoch_labels(restored) == rest == [[3, 4, 5], [6, 7, 8], [9]]


def test_mismatched_output_names_are_reported(tmp_path):
    pipeline = classification_val_pipeline(
        rec_path=_indexed_record(tmp_path, 4) + ".rec", idx_path=str(tmp_path / "indexed4.idx"),
        shard_id=0, num_shards=1, crop_size=(8, 8), resize_shorter=8, decoder_device="cpu",
        hw_decoder_load=0.0, dtype="float32", layout="NCHW", pad_channels=False, batch_size=2,
        num_threads=1, device_id=None)
    with pytest.raises(ValueError, match="2 outputs"):
        DALIMXNetIterator(pipeline, ["data"], READER_NAME, LastBatchPolicy.PARTIAL)


def test_static_executor_outputs_are_copied_before_reuse(tmp_path):
    # Without the dynamic executor DALI recycles its output buffers; batches must not change.
    prefix = _indexed_record(tmp_path, 12)
    pipeline = classification_val_pipeline(
        rec_path=prefix + ".rec", idx_path=prefix + ".idx", shard_id=0, num_shards=1,
        crop_size=(8, 8), resize_shorter=8, decoder_device="cpu", hw_decoder_load=0.0,
        dtype="float32", layout="NCHW", pad_channels=False, batch_size=4, num_threads=1,
        device_id=None, exec_dynamic=False, prefetch_queue_depth=2)
    iterator = DALIMXNetIterator(pipeline, ["data", "label"], READER_NAME,
                                 LastBatchPolicy.PARTIAL)
    kept = [batch for _ in range(2) for batch in iterator]
    labels = [batch["label"].asnumpy().tolist() for batch in kept]
    assert labels == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]] * 2
