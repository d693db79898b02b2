"""SSD through the one train.py and ./runner, end to end on CPU: a small SSD started from the
demo's classifier (as users start detectors from their classifiers) trains on the demo
detection set with 2 workers and reaches an asserted box AP50; the run logs both losses by
name, writes bbox.json in the file's own category ids, checkpoints and exports; evaluating
its checkpoint on 1 and on 2 workers gives exactly the metrics the run ended with
(detections sharded, gathered, scored once)."""
import json
import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, "runner")
STEPS, EPOCH_STEPS = 200, 100
# Percent; measured (2026-12-02): 27.7, the final AP50 of this run (25.3 at step 100). 400
# steps gave 46.9, at twice the time: the suite's budget decides.
AP50_REACHED = 20.0


def _runner(data_root, workspace, workers, *extra, batch=8):
    command = [RUNNER, "-n", str(workers), "-b", str(batch), "--arch", "ssd128_resnet18_fpn64",
               "--image-shape", "3,128,128", "--data-root", str(data_root),
               "--workspace", str(workspace), "--data-threads", "1", "--progress", "off",
               *extra]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def _summary(stdout):
    return re.search(r"validation: (box AP .*images\))", stdout).group(1)


@pytest.fixture(scope="module")
def trained_ssd(demo_run, demo_detection, tmp_path_factory):
    """(workspace, stdout) of the SSD run: 2 workers x 8 images, STEPS steps."""
    classifier = demo_run[1] / "checkpoints" / "epoch-0008"
    workspace = tmp_path_factory.mktemp("ssd") / "workspace"
    stdout = _runner(demo_detection, workspace, 2, "--num-steps", str(STEPS), "--epoch-steps",
                     str(EPOCH_STEPS), "--warmup-steps", "50", "--lr", "0.32",
                     "--log-interval", "20", "--backbone-weights", str(classifier))
    return workspace, stdout


@pytest.mark.slow
def test_ssd_from_the_demo_classifier_reaches_its_ap50(trained_ssd, demo_detection):
    workspace, stdout = trained_ssd
    assert "backbone initialised from" in stdout
    with open(workspace / "log.jsonl") as f:
        records = [json.loads(line) for line in f]
    steps = [r for r in records if r["event"] == "train"]
    epochs = [r for r in records if r["event"] == "epoch"]
    assert [r["step"] for r in steps] == list(range(20, STEPS + 1, 20))
    assert len(epochs) == STEPS // EPOCH_STEPS
    for record in steps + epochs:
        assert record["losses"].keys() == {"cls", "box"}
        assert record["loss"] == pytest.approx(sum(record["losses"].values()))
    for name in ("cls", "box"):
        assert steps[-1]["losses"][name] < 0.5 * steps[0]["losses"][name], name
    stats = epochs[-1]["val"]
    assert stats["images"] == 32 and len(stats) >= 13  # COCO's 12 numbers, the image count
    assert stats["AP50"] >= AP50_REACHED, [e["val"]["AP50"] for e in epochs]
    assert stats["AP50"] > epochs[0]["val"]["AP50"]
    # Detections are written in the annotation file's own category ids.
    with open(demo_detection / "annotations" / "instances_val2017.json") as f:
        category_ids = {c["id"] for c in json.load(f)["categories"]}
    with open(workspace / "bbox.json") as f:
        detections = json.load(f)
    assert detections and {d["category_id"] for d in detections} == category_ids
    last = f"epoch-{STEPS // EPOCH_STEPS:04d}"
    assert os.path.isdir(workspace / "checkpoints" / last)
    assert os.path.isfile(workspace / "model-symbol.json")


@pytest.mark.slow
def test_its_checkpoint_scores_the_same_on_one_and_two_workers(trained_ssd, demo_detection,
                                                               tmp_path):
    workspace, stdout = trained_ssd
    checkpoint = str(workspace / "checkpoints" / f"epoch-{STEPS // EPOCH_STEPS:04d}")
    one = _summary(_runner(demo_detection, tmp_path / "val1", 1, "--mode", "val", "--load",
                           checkpoint, batch=16))
    two = _summary(_runner(demo_detection, tmp_path / "val2", 2, "--mode", "val", "--load",
                           checkpoint, batch=5))
    assert one == two == _summary(stdout) and one.endswith("(32 images)")


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


def test_backbone_weights_start_the_detector_and_a_wrong_depth_is_refused(demo_detection, tmp_path):
    import mxnet as mx
    classifier = _classifier_checkpoint(tmp_path / "resnet18.params", "resnet18_v1.5")
    workspace = tmp_path / "ws"
    stdout = _runner(demo_detection, workspace, 1, "--mode", "train", "--num-steps", "1",
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
        [RUNNER, "-b", "4", "--arch", "ssd128_resnet18_fpn64", "--image-shape", "3,128,128",
         "--data-root", str(demo_detection), "--workspace", str(tmp_path / "ws34"),
         "--backbone-weights", str(tmp_path / "resnet34.params")],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "--backbone-weights" in result.stdout and "resnet34.params" in result.stdout
