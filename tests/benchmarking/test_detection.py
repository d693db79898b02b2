"""benchmark.py with a detector: by-task defaults, the step-based runner command, inference
with post-processing, and the DALI-vs-gluoncv comparison of the SSD training data path."""
import json

import pytest

import benchmark
from benchmarking import detection_loaders
from benchmarking.inference import run_inference_case
from benchmarking.settings import Settings
from benchmarking.training import runner_command
from models.ssd import retinanet_anchors

ARCH = "ssd128_resnet18_fpn64"


@pytest.fixture(autouse=True)
def _threads(monkeypatch):
    # benchmark.main sets OMP_NUM_THREADS when unset; keep it out of the other tests.
    monkeypatch.setenv("OMP_NUM_THREADS", "2")


def _flag(command, name):
    return command[command.index(name) + 1]


def test_the_task_of_arch_sets_the_defaults():
    args, _ = benchmark.parse_args(["--arch", ARCH])
    benchmark.resolve_task_defaults(args)
    assert (args.task, args.image_shape, args.num_classes) == ("detection", (3, 128, 128), 80)
    assert args.data_root == "/data/coco2017"
    args, _ = benchmark.parse_args(["--model", "resnet18_v1.5"])  # the old name still works
    benchmark.resolve_task_defaults(args)
    assert (args.task, args.image_shape, args.num_classes) == ("classification", (3, 224, 224),
                                                               1000)


def test_detection_training_runs_train_py_s_step_based_recipe_for_i_steps():
    settings = Settings(model=ARCH, task="detection", iterations=5, epochs=2, warmup=1,
                        image_shape=(3, 128, 128), data_root="/coco")
    command = runner_command(settings, workers=2, batch_size=4, workspace="/ws")
    assert _flag(command, "--num-steps") == "15" and _flag(command, "--epoch-steps") == "5"
    assert _flag(command, "--arch") == ARCH and _flag(command, "--data-root") == "/coco"
    # Classes come from the json; epochs are counted in steps.
    for flag in ("--num-classes", "--num-epochs", "--num-examples"):
        assert flag not in command


def test_a_missing_coco_data_root_is_named_before_any_case(tmp_path, capsys):
    assert benchmark.main(["--arch", ARCH, "--data-root", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "instances_train2017.json" in error and "python -m data.demo detection" in error


def test_detection_inference_times_detect_with_post_processing(monkeypatch):
    calls = []
    from models.ssd import SSDFPN
    detect = SSDFPN.detect

    def counted(self, x, **kwargs):
        out = detect(self, x, **kwargs)
        calls.append((kwargs, out.shape))
        return out
    monkeypatch.setattr(SSDFPN, "detect", counted)
    options = {"score_thresh": 0.05, "nms_thresh": 0.6, "max_detections": 20}
    settings = Settings(model=ARCH, task="detection", image_shape=(3, 128, 128),
                        iterations=2, epochs=1, warmup=1, num_classes=5,
                        detect_options=options)
    result = run_inference_case(settings, 2)
    assert len(calls) == 1 + 2 * 2  # graph build, warm-up epoch, timed epoch
    assert calls[0] == (options, (2, 20, 6))  # (class, score, box) rows per image
    latency = result["latency_ms"]
    assert result["img_per_s"] > 0 and result["iterations"] == 2
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p95"] <= latency["p99"]


def test_inference_sweep_report_names_the_post_processing(tmp_path, capsys):
    output = tmp_path / "ssd.json"
    assert benchmark.main(["--arch", ARCH, "--only-inference", "-b", "1", "-i", "2", "-e", "1",
                           "-w", "1", "-o", str(output)]) == 0
    report = json.loads(output.read_text())
    assert report["task"] == "detection" and report["model"] == ARCH
    assert report["settings"]["detect_options"] == {"score_thresh": 0.05, "nms_thresh": 0.6,
                                                    "max_detections": 100}
    assert "SSDFPN.detect" in report["inference_includes"]
    [row] = report["results"]
    assert row["mode"] == "inference" and row["status"] == "ok" and row["img_per_s"] > 0
    assert "post-processing included" in capsys.readouterr().out


def test_gluoncv_takes_the_same_anchors_in_centre_form():
    anchors = retinanet_anchors(128)
    centre = detection_loaders.center_anchors(anchors)
    assert centre.shape == (1, len(anchors), 4)
    back = centre[0, :, :2] - centre[0, :, 2:] / 2
    assert abs(back - anchors[:, :2]).max() < 1e-4


def test_dali_and_gluoncv_data_paths_side_by_side(coco_demo, tmp_path, capsys):
    output = tmp_path / "loaders.json"
    assert benchmark.main(["--loaders", "--arch", ARCH, "--data-root", coco_demo, "-b", "4",
                           "-i", "2", "-e", "2", "-w", "1", "-o", str(output)]) == 0
    report = json.loads(output.read_text())
    assert report["kind"] == "detection-loaders" and report["failed"] == 0
    assert report["batch_size"] == 4 and report["image_size"] == 128
    assert report["anchors"] == len(retinanet_anchors(128)) and report["rounds"] == 2
    rows = {r["loader"]: r for r in report["results"]}
    assert list(rows) == list(detection_loaders.LOADERS)
    assert rows["dali-gpu"]["status"] == "skipped"
    for name in ("gluoncv", "dali-cpu", "dali-cpu-pipeline"):
        row = rows[name]
        assert row["status"] == "ok" and row["img_per_s"] > 0, row
        assert len(row["round_img_per_s"]) == 2
        assert row["ratio_to_gluoncv"] == pytest.approx(row["img_per_s"] /
                                                        rows["gluoncv"]["img_per_s"])
    printed = capsys.readouterr().out
    assert "x gluoncv" in printed and "dali-cpu" in printed


def test_both_data_paths_give_images_and_targets_of_every_anchor(coco_demo, tmp_path):
    from data.coco import prepare_coco
    anchors = retinanet_anchors(128)
    dataset = prepare_coco(coco_demo, "train2017", str(tmp_path))
    for batches, _ in (
            detection_loaders.gluoncv_batches(detection_loaders.gluoncv_dataset(coco_demo), 4,
                                              anchors, 128, workers=0),
            detection_loaders.dali_batches("dali-cpu", dataset, 4, anchors, 128, threads=1)):
        batch = next(batches)
        batches.close()
        assert batch["data"].shape == (4, 3, 128, 128)
        assert batch["cls_targets"].shape == (4, len(anchors))
        assert batch["box_targets"].shape == (4, len(anchors), 4)
        assert (batch["cls_targets"].asnumpy() > 0).any()  # some anchors match objects
