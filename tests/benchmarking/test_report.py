"""Reports: atomic JSON, printed tables, --compare ratios and the plot."""
import pytest

from benchmarking.report import (build_report, compare, format_comparison, format_report,
                                 plot)


def _inference(batch, img_per_s, p50, p99, status="ok"):
    row = {"mode": "inference", "workers": 1, "batch_size": batch, "status": status}
    if status == "ok":
        row.update(img_per_s=img_per_s, latency_ms={"mean": p50, "p50": p50, "p90": p99,
                                                    "p95": p99, "p99": p99})
    return row


def _training(workers, batch, img_per_s, status="ok"):
    row = {"mode": "training", "workers": workers, "batch_size": batch, "status": status}
    if status == "ok":
        row.update(img_per_s=img_per_s, iter_ms=1000 * workers * batch / img_per_s,
                   data_wait_ms=0.5, iterations=100)
    else:
        row["error"] = "out of memory"
    return row


# Two hand-written reports: b is faster at training and at inference batch 8, slower at
# batch 1, has a case a lacks and lacks one that a has.
REPORT_A = {"kind": "training+inference", "model": "resnet50_v1.5", "dtype": "float32",
            "device": "CPU (test, 2 cores)", "created": "2026-01-01T00:00:00",
            "results": [_training(1, 32, 100.0), _training(2, 32, 150.0),
                        _inference(1, 10.0, 100.0, 120.0), _inference(8, 40.0, 200.0, 250.0),
                        _inference(32, 50.0, 640.0, 700.0)]}
REPORT_B = {"kind": "training+inference", "model": "resnet50_v1.5", "dtype": "float32",
            "device": "CPU (test, 2 cores)", "created": "2026-01-02T00:00:00",
            "results": [_training(1, 32, 125.0), _training(2, 32, 0.0, status="failed"),
                        _inference(1, 8.0, 125.0, 150.0), _inference(8, 80.0, 100.0, 100.0),
                        _inference(64, 60.0, 1000.0, 1100.0)]}


def test_compare_gives_ratios_b_over_a_per_case():
    rows = {r["case"]: r for r in compare(REPORT_A, REPORT_B)}
    assert list(rows) == ["training n=1 b=32", "training n=2 b=32", "inference b=1",
                          "inference b=8", "inference b=32", "inference b=64"]
    assert rows["training n=1 b=32"]["img_per_s_ratio"] == pytest.approx(1.25)
    assert rows["training n=1 b=32"]["p50_ratio"] is None  # training has no latencies
    assert rows["inference b=1"]["img_per_s_ratio"] == pytest.approx(0.8)
    assert rows["inference b=1"]["p50_ratio"] == pytest.approx(1.25)
    assert rows["inference b=1"]["p99_ratio"] == pytest.approx(1.25)
    assert rows["inference b=8"]["img_per_s_ratio"] == pytest.approx(2.0)
    assert rows["inference b=8"]["p50_ratio"] == pytest.approx(0.5)
    assert rows["inference b=8"]["p99_ratio"] == pytest.approx(0.4)
    # A failed case and cases measured by one report only have no ratio.
    assert rows["training n=2 b=32"]["old_img_per_s"] == 150.0
    assert rows["training n=2 b=32"]["new_img_per_s"] is None
    assert rows["training n=2 b=32"]["img_per_s_ratio"] is None
    assert rows["inference b=32"]["new_img_per_s"] is None
    assert rows["inference b=64"]["old_img_per_s"] is None


def test_printed_comparison_names_both_reports_and_the_ratios():
    text = format_comparison(REPORT_A, REPORT_B, "a.json", "b.json")
    lines = text.splitlines()
    assert lines[0].startswith("a: a.json: resnet50_v1.5 float32 on CPU (test, 2 cores)")
    assert lines[1].startswith("b: b.json:")
    row = next(line for line in lines if line.startswith("inference b=8 "))
    assert row.split() == ["inference", "b=8", "40.0", "80.0", "2.00", "0.50", "0.40"]
    row = next(line for line in lines if line.startswith("training n=2 b=32"))
    assert row.split()[-4:] == ["-", "-", "-", "-"]


def test_report_counts_failures_and_prints_them():
    rows = REPORT_B["results"]
    report = build_report("training+inference", rows, {}, "python benchmark.py",
                          model="resnet50_v1.5", dtype="float32", device="CPU")
    assert report["failed"] == 1 and report["results"] is rows
    assert report["schema_version"] == 1 and report["created"]
    text = format_report(report)
    assert "Training: images/s" in text and "Inference: images/s" in text
    assert "training n=2 b=32: failed: out of memory" in text
    inference_rows = [line.split() for line in text.splitlines()
                      if line.split()[:1] == ["8"]]
    assert inference_rows == [["8", "80.0", "100.0", "100.0", "100.0", "100.0", "100.0", "-"]]


def test_plot_writes_a_png(tmp_path):
    path = tmp_path / "report.png"
    plot(REPORT_A, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    only_training = dict(REPORT_A, results=REPORT_A["results"][:2])
    plot(only_training, str(path))  # panels without data say so instead of failing
    assert path.stat().st_size > 0
