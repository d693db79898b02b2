"""benchmark.py with Mask R-CNN: by-task defaults and usage errors, the runner command,
inference with mask pasting, a training case through ./runner, the DALI-vs-gluoncv data
paths, and gluoncv's Mask R-CNN trained and run as its own scripts do (the peer of --peer).

The demo set's images are 128x128; the runs here resize them to 64 (the smallest input with
every pyramid level), with the small maskrcnn_r18_fpn on the project's side."""
import json
import math

import mxnet as mx
import numpy as np
import pytest

import benchmark
from benchmarking import gluoncv_mask_rcnn, mask_rcnn_cli, mask_rcnn_loaders
from benchmarking.mask_rcnn_inference import run_inference_case
from benchmarking.mask_rcnn_peer import peer_ratios
from benchmarking.report import format_report
from benchmarking.settings import Settings
from benchmarking.training import runner_command

ARCH = "maskrcnn_r18_fpn"
SMALL = ["--min-size", "64", "--max-size", "64"]


@pytest.fixture(autouse=True)
def _threads(monkeypatch):
    # benchmark.main sets OMP_NUM_THREADS when unset; keep it out of the other tests.
    monkeypatch.setenv("OMP_NUM_THREADS", "2")


def _resolved(*argv):
    args, _ = benchmark.parse_args(["--arch", ARCH, *argv])
    return benchmark.resolve_task_defaults(args)


def _finite_positive(*values):
    return all(math.isfinite(v) and v > 0 for v in values)


def test_the_recipe_sizes_set_the_synthetic_inference_input():
    args = _resolved()
    assert (args.task, args.min_size, args.max_size) == ("instance_segmentation", 800, 1333)
    assert args.image_hw == (800, 1067) and args.image_shape == (3, 800, 1088)
    assert (args.num_classes, args.data_root) == (80, "/data/coco2017")
    args = _resolved("--min-size", "320", "--max-size", "320")  # a 640x480 image: 320x240
    assert args.image_hw == (240, 320) and args.image_shape == (3, 256, 320)
    assert _resolved("--image-shape", "3,256,320").image_hw == (256, 320)


@pytest.mark.parametrize("argv, message", [
    (["--arch", "resnet18_v1.5", "--min-size", "320"], "--min-size: Mask R-CNN's"),
    (["--arch", "ssd128_resnet18_fpn64", "--peer", "gluoncv"], "--peer: Mask R-CNN's"),
    (["--arch", ARCH, "--image-shape", "3,240,320", "--only-inference"], "multiples of 32"),
    (["--arch", ARCH, "--layout", "NHWC", "--only-inference"], "--layout NCHW"),
    (["--arch", ARCH, "--only-training", "--data-backend", "synthetic"],
     "trains on real data only"),
    (["--arch", ARCH, "--only-training", "--data-root", "/nonexistent"], "data.demo detection"),
])
def test_bad_mask_rcnn_requests_exit_2_saying_why(argv, message, capsys):
    assert benchmark.main(argv) == 2
    assert message in capsys.readouterr().err


def test_peer_compares_one_worker_at_batch_1(capsys):
    with pytest.raises(SystemExit) as exit_:
        benchmark.main(["--peer", "gluoncv", "--arch", ARCH, "-b", "2"])
    assert exit_.value.code == 2 and "batch 1" in capsys.readouterr().err


def test_training_passes_the_resize_and_runs_steps():
    settings = Settings(model=ARCH, task="instance_segmentation", min_size=320, max_size=512,
                        iterations=5, epochs=2, warmup=1, data_backend="dali-cpu",
                        image_shape=(3, 256, 320), data_root="/coco")
    command = runner_command(settings, workers=1, batch_size=1, workspace="/ws")
    assert command[command.index("--min-size") + 1] == "320"
    assert command[command.index("--max-size") + 1] == "512"
    assert command[command.index("--num-steps") + 1] == "15"
    assert command[command.index("--epoch-steps") + 1] == "5"
    assert "--image-shape" not in command and "--num-classes" not in command


def test_a_learning_rate_or_backbone_given_is_kept():
    args = _resolved()
    assert mask_rcnn_cli.runner_flags(args, ["--lr=0.01"]) == ["--lr=0.01"]
    assert mask_rcnn_cli.runner_flags(args, ["--backbone-weights", "w"]) == [
        "--backbone-weights", "w"]
    assert mask_rcnn_cli.runner_flags(args, []) == ["--lr", "0"]


def _inference_settings(**overrides):
    values = dict(model=ARCH, task="instance_segmentation", image_shape=(3, 64, 64),
                  image_hw=(48, 64), min_size=64, max_size=64, iterations=2, epochs=1,
                  warmup=1, num_classes=5,
                  detect_options={"score_thresh": 0.0, "nms_thresh": 0.5, "max_detections": 20})
    values.update(overrides)
    return Settings(**values)


def test_inference_times_the_network_and_every_paste(monkeypatch):
    import models.mask_rcnn
    pasted, paste = [], models.mask_rcnn.paste_masks

    def counted(masks, boxes, image_hw, **kwargs):
        pasted.append((len(boxes), tuple(image_hw)))
        return paste(masks, boxes, image_hw, **kwargs)
    monkeypatch.setattr(models.mask_rcnn, "paste_masks", counted)
    result = run_inference_case(_inference_settings(), 2)
    # graph build, warm-up epoch, timed epoch: 5 batches of 2 images, each image's 20
    # detections pasted in one call
    assert pasted == [(20, (48, 64))] * (5 * 2)
    assert result["detections_per_image"] == 20 and result["iterations"] == 2
    latency = result["latency_ms"]
    assert _finite_positive(result["img_per_s"], latency["p50"])
    assert latency["p50"] <= latency["p90"] <= latency["p95"] <= latency["p99"]


def test_inference_on_real_data_reads_the_evaluation_pipeline(coco_demo):
    settings = _inference_settings(data_backend="dali-cpu", data_root=coco_demo)
    result = run_inference_case(settings, 1)
    assert _finite_positive(result["img_per_s"], result["latency_ms"]["p99"])
    assert result["detections_per_image"] == 20


def test_inference_sweep_report_names_the_post_processing(tmp_path):
    output = tmp_path / "mask.json"
    assert benchmark.main(["--arch", ARCH, "--only-inference", "--data-backend", "synthetic",
                           *SMALL, "-b", "1", "-i", "2", "-e", "1", "-w", "1",
                           "-o", str(output)]) == 0
    report = json.loads(output.read_text())
    assert report["task"] == "instance_segmentation" and report["failed"] == 0
    assert "paste_masks" in report["inference_includes"]
    settings = report["settings"]
    assert (settings["min_size"], settings["max_size"], settings["image_hw"],
            settings["image_shape"]) == (64, 64, [48, 64], [3, 64, 64])
    assert settings["detect_options"] == {"score_thresh": 0.0, "nms_thresh": 0.5,
                                          "max_detections": 100}
    [row] = report["results"]
    assert row["status"] == "ok" and row["detections_per_image"] == 100
    assert _finite_positive(row["img_per_s"], row["latency_ms"]["p50"])
    assert (tmp_path / "mask.png").exists()


def test_training_sweep_runs_train_py_through_the_runner(coco_demo, tmp_path):
    output = tmp_path / "train.json"
    assert benchmark.main(["--arch", ARCH, "--only-training", "--data-root", coco_demo, *SMALL,
                           "-i", "2", "-e", "1", "-w", "1", "-o", str(output)]) == 0
    report = json.loads(output.read_text())
    assert report["data_backend"] == "dali-cpu" and report["failed"] == 0
    [row] = report["results"]
    assert (row["mode"], row["workers"], row["batch_size"]) == ("training", 1, 1)
    assert row["status"] == "ok" and row["iterations"] == 2 and row["data_wait_ms"] >= 0
    assert _finite_positive(row["img_per_s"], row["iter_ms"])
    log = (tmp_path / "train-logs" / "train-n1-b1.log").read_text()
    assert "--min-size 64 --max-size 64" in log
    # Random weights: a learning rate of 0 keeps the losses finite (benchmark.py says so).
    assert report["settings"]["runner_args"] == ["--lr", "0"] and "--lr 0" in log


def test_data_paths_side_by_side(coco_demo, tmp_path, capsys):
    output = tmp_path / "loaders.json"
    assert benchmark.main(["--loaders", "--arch", ARCH, "--data-root", coco_demo, *SMALL,
                           "-i", "2", "-e", "2", "-w", "1", "-o", str(output)]) == 0
    report = json.loads(output.read_text())
    assert report["kind"] == "mask-rcnn-loaders" and report["failed"] == 0
    assert (report["batch_size"], report["min_size"], report["max_size"]) == (1, 64, 64)
    rows = {r["loader"]: r for r in report["results"]}
    assert list(rows) == list(mask_rcnn_loaders.LOADERS)
    assert rows["dali-gpu"]["status"] == ("ok" if mx.context.num_gpus() else "skipped")
    assert rows["gluoncv-in-process"]["note"] == "in this process"
    for name in ("gluoncv", "gluoncv-in-process", "dali-cpu", "dali-cpu-pipeline"):
        row = rows[name]
        assert row["status"] == "ok" and _finite_positive(row["img_per_s"]), row
        assert len(row["round_img_per_s"]) == 2
        assert row["ratio_to_gluoncv"] == pytest.approx(row["img_per_s"] /
                                                        rows["gluoncv"]["img_per_s"])
    assert "x gluoncv" in capsys.readouterr().out


def test_both_data_paths_give_images_and_targets_of_the_same_anchors(coco_demo, tmp_path):
    from data.coco import prepare_coco
    dataset, net = gluoncv_mask_rcnn.training_setup(coco_demo, 64, 64, 1)
    gluoncv, _ = mask_rcnn_loaders.gluoncv_batches(dataset, net, 1, workers=0)
    split = prepare_coco(coco_demo, "train2017", str(tmp_path), keep_segmentation=True)
    ours, _ = mask_rcnn_loaders.dali_batches("dali-cpu", split, 1, 64, 64, threads=1)
    # P2-P6 of a 64x64 input, 3 anchors a cell: 16x16 + 8x8 + 4x4 + 2x2 + 1x1 cells.
    anchors = 3 * sum(h * w for h, w in mask_rcnn_loaders.level_shapes(64, 64,
                                                                       (4, 8, 16, 32, 64)))
    assert anchors == 1023
    for batches in (gluoncv, ours):
        targets = []
        for _ in range(4):  # one image may have no positive: at 64x64 its objects' best
            batch = next(batches)  # anchors can all cross the border (ignored)
            assert batch["data"].shape == (1, 3, 64, 64)
            assert batch["rpn_cls_targets"].shape == (1, anchors)
            assert (batch["rpn_box_targets"].shape == batch["rpn_box_masks"].shape
                    == (1, anchors, 4))
            targets.append(batch["rpn_cls_targets"].asnumpy())
        batches.close()
        targets = np.concatenate(targets)
        assert (targets == 1).any() and (targets == 0).any()  # positives and negatives


def test_gluoncv_trains_as_its_script_does(coco_demo):
    # 128, the demo's size: gluoncv's training keeps 2,000 RPN proposals and fails on
    # inputs with fewer anchors (at 64x64: 1,023).
    result = gluoncv_mask_rcnn.measure_training(coco_demo, 128, 128, batch_size=1, workers=1,
                                                warmup_iterations=1, iterations=1, epochs=1)
    assert result["iterations"] == 1 and result["epochs"] == 1
    assert _finite_positive(result["img_per_s"], result["iter_ms"], result["loss"])
    assert 0 <= result["data_wait_share"] < 1


def test_peer_ratios_and_table():
    rows = [{"mode": "training", "implementation": "project", "workers": 1, "batch_size": 1,
             "status": "ok", "img_per_s": 2.0, "iter_ms": 500.0, "data_wait_share": 0.01},
            {"mode": "training", "implementation": "gluoncv", "workers": 1, "batch_size": 1,
             "status": "ok", "img_per_s": 0.5, "iter_ms": 2000.0, "data_wait_share": 0.1},
            {"mode": "inference", "implementation": "project", "workers": 1, "batch_size": 1,
             "status": "ok", "img_per_s": 4.0, "latency_ms": {"p50": 250.0, "p99": 300.0}},
            {"mode": "inference", "implementation": "gluoncv", "workers": 1, "batch_size": 1,
             "status": "failed", "error": "boom"}]
    ratios = peer_ratios(rows)
    assert ratios == {"training_img_per_s": 4.0, "inference_img_per_s": None,
                      "inference_p50_latency": None}
    text = format_report({"kind": "mask-rcnn-peer", "results": rows, "ratios": ratios,
                          "model": "maskrcnn_r50_fpn", "peer": "gluoncv x"})
    assert "training_img_per_s 4.00x" in text and "failed: boom" in text


@pytest.mark.slow
def test_peer_report_of_both_implementations(coco_demo, tmp_path):
    # gluoncv's inference alone takes ~25 s a call on 2 cores (its mask head runs on 1,000
    # detections at any image size), its training ~10 s a step: minutes in all.
    # 128: gluoncv's RPN needs 2,000 anchors to train and 1,000 to infer (64x64 has 1,023).
    output = tmp_path / "peer.json"
    status = benchmark.main(["--peer", "gluoncv", "--arch", "maskrcnn_r50_fpn", "--data-root",
                             coco_demo, "--min-size", "128", "--max-size", "128",
                             "-i", "1", "-e", "1", "-w", "0",
                             "-o", str(output)])
    report = json.loads(output.read_text())
    assert status == 0 and report["kind"] == "mask-rcnn-peer" and report["failed"] == 0
    assert [(r["mode"], r["implementation"]) for r in report["results"]] == [
        ("training", "project"), ("training", "gluoncv"),
        ("inference", "project"), ("inference", "gluoncv")]
    for row in report["results"]:
        assert _finite_positive(row["img_per_s"])
        if row["mode"] == "training":
            assert 0 <= row["data_wait_share"] < 1
    assert _finite_positive(*report["ratios"].values())
    assert report["peer"] == f"gluoncv {gluoncv_mask_rcnn.MODEL}"
