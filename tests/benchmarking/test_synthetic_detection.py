"""The synthetic detection backend: one fixed batch in the training pipeline's format (keys,
shapes, dtypes, devices, -1 padding, classes of the json), repeated for an epoch of the real
split's length, refused for evaluation; and train.py trains on it through ./runner (the
benchmark's training case)."""
import numpy as np
import pytest

from benchmarking.settings import Settings
from benchmarking.training import run_training_case
from data.coco import prepare_coco
from data.coco_loaders import TRAIN_OUTPUTS, CocoLoaderConfig, build_coco_loader
from data.loaders import DataError


@pytest.fixture(scope="module")
def train_split(coco_demo, tmp_path_factory):
    return prepare_coco(coco_demo, "train2017", str(tmp_path_factory.mktemp("cache")))


def _config(backend, **overrides):
    options = dict(backend=backend, batch_size=4, image_size=128, num_threads=1,
                   max_boxes=10)
    options.update(overrides)
    return CocoLoaderConfig(**options)


def test_synthetic_batches_have_the_training_pipelines_format(train_split):
    real = next(iter(build_coco_loader(_config("dali-cpu"), train_split, "train")))
    loader = build_coco_loader(_config("synthetic"), train_split, "train")
    batches = list(loader)
    assert len(batches) == len(loader) == 16 // 4  # the demo split has no empty image
    batch = batches[0]
    assert all(b is batch for b in batches)  # one fixed batch, repeated
    assert tuple(batch) == TRAIN_OUTPUTS == tuple(real)
    for key in TRAIN_OUTPUTS:
        assert batch[key].shape == real[key].shape, key
        assert batch[key].dtype == real[key].dtype, key
        assert batch[key].context == real[key].context, key
    assert batch["data"].shape == (4, 3, 128, 128)
    boxes, labels = batch["boxes"].asnumpy(), batch["labels"].asnumpy()
    assert boxes.shape == (4, 10, 4) and labels.shape == (4, 10)
    # The demo split's mean number of objects per image, valid rows first, then -1 rows.
    objects = round(train_split.stats["objects"] / train_split.stats["images"])
    assert loader.objects == objects >= 1
    valid = labels >= 1
    assert (valid.sum(axis=1) == objects).all() and valid[:, :objects].all()
    assert (boxes[~valid] == -1).all() and (labels[~valid] == -1).all()
    kept = boxes[valid]
    assert (0 <= kept).all() and (kept <= 1).all()
    assert (kept[:, 2] > kept[:, 0]).all() and (kept[:, 3] > kept[:, 1]).all()
    # Object classes 1..C only: no crowd regions (label C + 1).
    assert set(labels[valid].tolist()) <= set(range(1, train_split.num_classes + 1))


def test_synthetic_layout_epoch_length_and_evaluation(train_split):
    nhwc = next(iter(build_coco_loader(_config("synthetic", layout="NHWC"), train_split,
                                       "train")))
    assert nhwc["data"].shape == (4, 128, 128, 3)
    assert len(build_coco_loader(_config("synthetic", world_size=2), train_split,
                                 "train")) == 16 // 2 // 4
    assert len(build_coco_loader(_config("synthetic", batch_size=32), train_split,
                                 "train")) == 1
    with pytest.raises(DataError, match="synthetic feeds detection training only"):
        build_coco_loader(_config("synthetic"), train_split, "val")
    with pytest.raises(DataError, match="or synthetic for training"):
        build_coco_loader(_config("mxnet"), train_split, "train")


def test_train_py_trains_a_detector_on_synthetic_data(coco_demo, tmp_path):
    settings = Settings(model="ssd128_resnet18_fpn64", task="detection",
                        data_backend="synthetic", data_root=coco_demo,
                        image_shape=(3, 128, 128), iterations=1, epochs=1, warmup=1)
    log = tmp_path / "case.log"
    result = run_training_case(settings, 1, 2, str(log))
    assert result["iterations"] == 1 and result["epochs"] == 1 and "note" not in result
    assert result["img_per_s"] > 0 and result["iter_ms"] > 0
    text = log.read_text()
    assert "--data-backend synthetic" in text and "epoch 1 done: loss" in text
    assert np.isfinite(float(text.split("epoch 1 done: loss ")[1].split()[0]))
