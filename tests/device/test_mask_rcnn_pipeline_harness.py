"""device/mask_rcnn_pipeline.py on the CPU, the whole harness with ``--decoder-device cpu``
at a small size: its data has polygons, its check compares every output, its report has the
throughput of each pipeline (the GPU run itself is logged in device/notes)."""
import json

from device import mask_rcnn_pipeline


def test_the_harness_runs_on_the_cpu_and_reports_its_checks_and_throughput(tmp_path):
    status = mask_rcnn_pipeline.main([
        "--out", str(tmp_path), "--images", "12", "--photo-size", "96x72", "--min-size", "64",
        "--max-size", "100", "--batch-size", "2", "--threads", "1", "--decoder-device", "cpu",
        "--hw-loads", "0.0", "--check-batches", "2", "--warmup", "1", "--rewarm", "1",
        "--rounds", "2", "--round-batches", "2"])
    assert status == 0
    with open(tmp_path / "results.json") as f:
        results = json.load(f)
    (check,) = results["checks"].values()
    assert check["passed"] and check["polygons"] > 0 and check["vertices_equal"]
    assert check["mean_abs_diff"] == 0  # the CPU pipeline against itself
    # Shorter side 64 of 96x72 photos: 64 x 85, padded to 64 x 96.
    assert check["padded_hw"][0] == [64, 96]
    (rate,) = results["throughput"].values()
    assert rate["img_per_s"] > 0 and rate["ratio_to_cpu"] == 1.0
    # The decoders' own difference is measured beside it (none here: the same decoder).
    assert check["decoded_alone"]["p99_9"] == 0


def test_resized_images_pass_within_the_decoders_own_difference_only():
    decoded = {"mean_abs_diff": 0.006, "p99_9": 0.25, "max": 1.0}
    assert mask_rcnn_pipeline.within_decoder_difference(
        {"mean_abs_diff": 0.005, "p99_9": 0.21, "max": 0.9}, decoded)
    assert not mask_rcnn_pipeline.within_decoder_difference(
        {"mean_abs_diff": 0.005, "p99_9": 0.30, "max": 0.9}, decoded)
    assert not mask_rcnn_pipeline.within_decoder_difference(
        {"mean_abs_diff": 0.03, "p99_9": 0.1, "max": 0.9}, decoded)
