"""device/ssd_pipeline.py on the CPU: its data, its bare pipeline, its timing in turns and the
whole harness with ``--decoder-device cpu`` (the GPU run itself is logged in device/notes)."""
import json
import os

import numpy as np
import pytest

from data.coco import prepare_coco
from device import ssd_pipeline
from device.dali_common import host_array, time_in_turns

BATCH, SIDE = 4, 48


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("ssd_harness") / "coco")
    ssd_pipeline.make_coco(root, 16, size=(96, 72), processes=1)
    return prepare_coco(root, ssd_pipeline.SPLIT, os.path.join(root, "cache"))


def test_made_data_is_coco_with_gapped_ids_and_some_crowd(dataset):
    assert dataset.num_images == 16 and dataset.num_classes == len(ssd_pipeline.CATEGORIES)
    assert dataset.stats["objects"] >= 16 and dataset.stats["crowd"] >= 1


def test_bare_pipeline_outputs_padded_boxes_and_normalised_images(dataset):
    pipe = ssd_pipeline.bare_pipeline(dataset, "cpu", 0.0, BATCH, 1, SIDE, seed=3)
    images, boxes, labels = (host_array(out) for out in pipe.run())
    rows = ssd_pipeline.LOADER_SETTINGS["max_boxes"]
    assert images.shape == (BATCH, 3, SIDE, SIDE) and images.dtype == np.float16
    assert boxes.shape == (BATCH, rows, 4) and labels.shape == (BATCH, rows)
    valid = labels != -1
    assert valid[:, 0].all() and np.all(boxes[~valid] == -1)
    assert np.all((boxes[valid] >= 0) & (boxes[valid] <= 1))
    assert -2.2 < images.min() and images.max() < 2.7


def test_pipelines_are_timed_in_rotating_turns(dataset):
    pipes = {name: ssd_pipeline.bare_pipeline(dataset, "cpu", 0.0, BATCH, 1, SIDE, seed=1)
             for name in ("a", "b")}
    turns = []
    rates = time_in_turns(pipes, BATCH, warmup=1, rewarm=1, rounds=2, round_batches=2,
                          on_turn=lambda name, r, rate: turns.append((name, r)))
    assert turns == [("a", 0), ("b", 0), ("b", 1), ("a", 1)]
    for rate in rates.values():
        assert rate["timed_images"] == 2 * 2 * BATCH and rate["img_per_s"] > 0
        assert len(rate["round_img_per_s"]) == 2


def test_harness_runs_on_cpu_and_writes_results(tmp_path):
    out = str(tmp_path / "out")
    ssd_pipeline.main(["--out", out, "--images", "16", "--photo-size", "96x72",
                       "--image-size", str(SIDE), "--batch-size", str(BATCH), "--threads", "1",
                       "--decoder-device", "cpu", "--hw-loads", "0.5", "--check-batches", "2",
                       "--warmup", "1", "--rewarm", "1", "--rounds", "1",
                       "--round-batches", "2"])
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    checks = results["checks"]
    same_device = checks["cpu matches cpu (hw 0.5)"]
    bare = checks["bare pipeline does the same work"]
    assert same_device["passed"] and same_device["boxes_equal"] and same_device["labels_equal"]
    assert same_device["objects"] > 0
    assert bare["passed"] and bare["boxes_equal"] and bare["labels_equal"]
    assert bare["max"] == 0  # both colour-jitter to uint8: the same pixels on one device
    rates = results["throughput"]["cpu hw 0.5"]
    assert set(rates) == {"project", "project, no checkpointing", *ssd_pipeline.VARIANTS}
    assert rates["project"]["ratio_to_bare"] > 0
    assert "project >= 0.9 x bare (cpu hw 0.5)" in checks  # passing is a matter for the GPU
