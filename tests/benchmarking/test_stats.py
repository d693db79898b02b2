"""The benchmark's arithmetic against values computed by hand."""
import pytest

from benchmarking.stats import (add_scaling, combine_epochs, cpu_share, epoch_iterations,
                                images_per_second, latency_summary, ratio)


def test_percentiles_interpolate_between_samples():
    # Ten latencies of 1..10 ms. With linear interpolation, percentile q sits at rank
    # (n - 1) * q / 100 = 9q/100 of the sorted samples: p50 at rank 4.5 -> 5.5 ms,
    # p90 at 8.1 -> 9.1 ms, p95 at 8.55 -> 9.55 ms, p99 at 8.91 -> 9.91 ms.
    seconds = [v / 1000 for v in (7, 1, 10, 3, 5, 2, 9, 4, 8, 6)]  # order must not matter
    summary = latency_summary(seconds)
    assert summary == pytest.approx({"mean": 5.5, "p50": 5.5, "p90": 9.1, "p95": 9.55,
                                     "p99": 9.91})


def test_percentiles_of_a_skewed_distribution_are_ordered():
    # 97 fast batches and 3 slow ones: p50 and p90 stay fast, p99 catches the slow tail.
    # Ranks (n - 1 = 99): p95 at 94.05, between two 10 ms samples (indices 94 and 95); p99
    # at 98.01, between two 100 ms samples (indices 98 and 99).
    summary = latency_summary([0.010] * 97 + [0.100] * 3)
    assert summary["p50"] == pytest.approx(10.0)
    assert summary["p90"] == pytest.approx(10.0)
    assert summary["p95"] == pytest.approx(10.0)
    assert summary["p99"] == pytest.approx(100.0)
    assert summary["mean"] == pytest.approx((97 * 10 + 3 * 100) / 100)  # 12.7 ms
    assert summary["p50"] <= summary["p90"] <= summary["p95"] <= summary["p99"]


def test_images_per_second_is_batch_over_mean_latency():
    # Batches of 4 taking 0.1, 0.2 and 0.3 s: 12 images in 0.6 s = 20 img/s (not the mean
    # of the per-batch rates, (40 + 20 + 13.33) / 3 = 24.4).
    assert images_per_second(4, [0.1, 0.2, 0.3]) == pytest.approx(20.0)
    with pytest.raises(ValueError):
        images_per_second(4, [])


def test_epoch_iterations_come_from_seconds_over_iteration_time():
    assert epoch_iterations({"seconds": 2.5, "iter_ms": 250.0}) == 10


def test_epochs_are_weighted_by_their_iterations_after_warmup():
    records = [
        {"seconds": 10.0, "iter_ms": 1000.0, "data_wait_ms": 50.0},  # warm-up: dropped
        {"seconds": 1.0, "iter_ms": 100.0, "data_wait_ms": 2.0},     # 10 iterations
        {"seconds": 6.0, "iter_ms": 200.0, "data_wait_ms": 4.0},     # 30 iterations
    ]
    result = combine_epochs(records, warmup=1, global_batch=8)
    # 40 iterations in 7 s: 175 ms each; 8 / 0.175 = 45.714 img/s. The unweighted mean of
    # the two epochs' rates (80 and 40 img/s) would say 60.
    assert result["iterations"] == 40 and result["epochs"] == 2
    assert result["iter_ms"] == pytest.approx(175.0)
    assert result["img_per_s"] == pytest.approx(8 / 0.175)
    assert result["data_wait_ms"] == pytest.approx((10 * 2.0 + 30 * 4.0) / 40)  # 3.5 ms


def test_nothing_left_after_warmup_is_an_error():
    with pytest.raises(ValueError, match="none is left after 2 warm-up"):
        combine_epochs([{"seconds": 1.0, "iter_ms": 100.0, "data_wait_ms": 0.0}] * 2, 2, 8)


def test_scaling_is_against_one_worker_at_the_same_batch():
    rows = [{"mode": "training", "workers": 1, "batch_size": 32, "status": "ok",
             "img_per_s": 100.0},
            {"mode": "training", "workers": 4, "batch_size": 32, "status": "ok",
             "img_per_s": 360.0},
            {"mode": "training", "workers": 4, "batch_size": 64, "status": "ok",
             "img_per_s": 400.0},  # no 1-worker run at batch 64
            {"mode": "training", "workers": 8, "batch_size": 32, "status": "failed"},
            # inference rows have one worker too, and must not serve as the baseline
            {"mode": "inference", "workers": 1, "batch_size": 32, "status": "ok",
             "img_per_s": 500.0}]
    assert add_scaling(rows) is rows
    assert rows[0]["speedup"] == 1.0 and rows[0]["scaling_efficiency"] == 1.0
    assert rows[1]["speedup"] == pytest.approx(3.6)
    assert rows[1]["scaling_efficiency"] == pytest.approx(0.9)
    assert "speedup" not in rows[2] and "speedup" not in rows[3] and "speedup" not in rows[4]


def test_ratio_handles_missing_values():
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(None, 2.0) is None and ratio(3.0, None) is None and ratio(3.0, 0) is None


def test_cpu_share_is_cpu_time_over_the_cores_time():
    # 3 CPU seconds in 2 wall seconds on 2 cores: 3 of the 4 core-seconds available.
    assert cpu_share(3.0, 2.0, 2) == pytest.approx(0.75)
    assert cpu_share(1.0, 0.0, 2) is None
