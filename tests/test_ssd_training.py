"""SSD through the one train.py and ./runner: a short step-based run on a small COCO-format
demo set logs both losses by name, evaluates with pycocotools (bbox.json in the file's own
category ids), checkpoints and exports; evaluating its checkpoint on 2 workers gives exactly
the metrics of 1 worker (detections sharded, gathered, scored once)."""
import json
import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, "runner")


@pytest.fixture(scope="module")
def coco_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("coco_demo") / "det"
    subprocess.run([os.path.join(ROOT, ".venv", "bin", "python"), "-m", "data.demo",
                    "detection", "--out", str(out), "--train-images", "16", "--val-images",
                    "6", "--size", "128", "--no-progress"], cwd=ROOT, check=True,
                   capture_output=True, timeout=300)
    return out


def _runner(data_root, workspace, workers, *extra):
    command = [RUNNER, "-n", str(workers), "-b", "4", "--arch", "ssd256_resnet18_fpn",
               "--image-shape", "3,128,128", "--data-root", str(data_root),
               "--workspace", str(workspace), "--data-threads", "1", "--progress", "off",
               *extra]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def _summary(stdout):
    return re.search(r"validation: (box AP .*images\))", stdout).group(1)


def test_ssd_trains_evaluates_and_two_workers_score_like_one(coco_demo, tmp_path):
    train_ws = tmp_path / "train"
    # A threshold far below the recipe's 0.05, so that 4 steps' network already detects.
    stdout = _runner(coco_demo, train_ws, 1, "--num-steps", "4", "--epoch-steps", "2",
                     "--warmup-steps", "1", "--lr", "0.05", "--log-interval", "1",
                     "--score-threshold", "0.001")
    with open(train_ws / "log.jsonl") as f:
        records = [json.loads(line) for line in f]
    steps = [r for r in records if r["event"] == "train"]
    epochs = [r for r in records if r["event"] == "epoch"]
    assert [r["step"] for r in steps] == [1, 2, 3, 4] and len(epochs) == 2
    for record in steps + epochs:
        assert record["losses"].keys() == {"cls", "box"}
        assert record["loss"] == pytest.approx(sum(record["losses"].values()))
        assert 0 < record["losses"]["cls"] < 100 and 0 < record["losses"]["box"] < 100
    stats = epochs[-1]["val"]
    assert {"AP", "AP50", "AP75", "AR100", "best"} <= stats.keys() and stats["images"] == 6
    # Detections are written in the annotation file's own category ids.
    with open(coco_demo / "annotations" / "instances_val2017.json") as f:
        category_ids = {c["id"] for c in json.load(f)["categories"]}
    with open(train_ws / "bbox.json") as f:
        detections = json.load(f)
    assert detections and {d["category_id"] for d in detections} <= category_ids
    assert os.path.isdir(train_ws / "checkpoints" / "epoch-0002")
    assert os.path.isfile(train_ws / "model-symbol.json")
    assert "backbone" not in stdout  # no --backbone-weights given

    checkpoint = str(train_ws / "checkpoints" / "epoch-0002")
    one = _summary(_runner(coco_demo, tmp_path / "val1", 1, "--mode", "val", "--load",
                           checkpoint, "--score-threshold", "0.001"))
    two = _summary(_runner(coco_demo, tmp_path / "val2", 2, "--mode", "val", "--load",
                           checkpoint, "--score-threshold", "0.001"))
    assert one == two and one.endswith("(6 images)")


def test_runner_names_what_a_coco_data_root_lacks(tmp_path):
    (tmp_path / "annotations").mkdir()
    result = subprocess.run([RUNNER, "--arch", "ssd320_resnet18_fpn", "--data-root",
                             str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert "instances_train2017.json" in result.stderr


def _classifier_checkpoint(path, arch):
    import mxnet as mx

    import models
    net = models.build_network(arch, 10, "NCHW", (3, 32, 32), "float32", mx.cpu(), seed=3)
    net.save_parameters(str(path))
    return net


def test_backbone_weights_start_the_detector_and_a_wrong_depth_is_refused(coco_demo, tmp_path):
    import mxnet as mx
    classifier = _classifier_checkpoint(tmp_path / "resnet18.params", "resnet18_v1.5")
    workspace = tmp_path / "ws"
    stdout = _runner(coco_demo, workspace, 1, "--mode", "train", "--num-steps", "1",
                     "--lr", "1e-9", "--backbone-weights", str(tmp_path / "resnet18.params"))
    assert "backbone initialised from" in stdout
    # After one step at a negligible learning rate, the first convolution is the classifier's.
    saved = mx.nd.load(str(workspace / "checkpoints" / "epoch-0001" / "model.params"))
    first_conv = next(name for name in saved if name.startswith("backbone.") and
                      name.endswith("weight") and saved[name].ndim == 4)
    expected = classifier.collect_params()[next(iter(classifier.collect_params().keys()))]
    assert saved[first_conv].shape == expected.shape
    assert abs(saved[first_conv].asnumpy() - expected.data().asnumpy()).max() < 1e-5

    _classifier_checkpoint(tmp_path / "resnet34.params", "resnet34_v1.5")
    result = subprocess.run(
        [RUNNER, "-b", "4", "--arch", "ssd256_resnet18_fpn", "--image-shape", "3,128,128",
         "--data-root", str(coco_demo), "--workspace", str(tmp_path / "ws34"),
         "--backbone-weights", str(tmp_path / "resnet34.params")],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "--backbone-weights" in result.stdout and "resnet34.params" in result.stdout
