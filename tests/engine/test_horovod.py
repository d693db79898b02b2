"""Horovod (Gloo, CPU processes): two workers with batch b end where one worker with batch 2b
ends, which proves that gradients are averaged and losses normalised over the global batch:
per sample for the classifier, per positive anchor of the whole global batch for SSD, per
worker's sampled anchors and RoIs for Mask R-CNN (equal counts on every worker); and two
workers accumulating 2 batches of b per step end where one worker with batch 4b ends."""
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "hvd_equivalence_worker.py")
HOROVODRUN = os.path.join(os.path.dirname(sys.executable), "horovodrun")


def _run(command, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _train_one_and_two_workers(task, batch, steps, tmp_path, accumulate=1):
    """One worker with batch 2 x accumulate x `batch`, and two workers accumulating
    `accumulate` batches of `batch` per step."""
    _run([sys.executable, WORKER, task, str(2 * accumulate * batch), str(steps),
          "single.params"], tmp_path)
    _run([HOROVODRUN, "-np", "2", "-H", "localhost:2", "--gloo", "--gloo-timeout-seconds",
          "300", sys.executable, WORKER, task, str(batch), str(steps), "two.params",
          str(accumulate)], tmp_path)
    single = mx.nd.load(str(tmp_path / "single.params"))
    two = mx.nd.load(str(tmp_path / "two.params"))
    assert single.keys() == two.keys()
    return single, two


def _initial_weights(task):
    sys.path.insert(0, HERE)
    from hvd_equivalence_worker import small_detector, small_network, small_segmenter
    net = {"classification": small_network, "ssd": small_detector,
           "mask_rcnn": small_segmenter}[task]()
    return {name: p.data().asnumpy() for name, p in net._collect_params_with_prefix().items()}


@pytest.mark.parametrize("accumulate", [1, 2])
def test_two_workers_equal_one_worker_with_double_batch(tmp_path, accumulate):
    """accumulate 1: 2 workers x batch 4 equal 1 worker x batch 8 after 6 steps; accumulate 2:
    2 workers x 2 accumulated batches of 4 equal 1 worker x batch 16 after 3 optimizer steps
    (one allreduce per step, of the summed gradients)."""
    steps = 6 if accumulate == 1 else 3
    single, two = _train_one_and_two_workers("classification", 4, steps, tmp_path, accumulate)
    assert len(single) == 4
    initial = _initial_weights("classification")
    for name in single:
        a, b = single[name].asnumpy(), two[name].asnumpy()
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7, err_msg=name)
        # ...and training really moved the weights, so the comparison means something.
        assert np.abs(a - initial[name]).max() > 1e-3, name


def test_two_ssd_workers_equal_one_worker_with_double_batch(tmp_path):
    single, two = _train_one_and_two_workers("ssd", 2, 4, tmp_path)
    initial = _initial_weights("ssd")
    moved = {}
    for name in single:
        a, b = single[name].asnumpy(), two[name].asnumpy()
        assert np.isfinite(a).all(), name
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6, err_msg=name)
        moved[name] = np.abs(a - initial[name]).max()
    # Training moved the weights, so the comparison means something (the top pyramid levels
    # barely: at 64x64 no object matches their anchors).
    for name in ("backbone.features.0.weight", "fpn.lateral.0.weight",
                 "class_head.tower.0.weight", "class_head.predict.weight",
                 "box_head.tower.0.weight", "box_head.predict.weight"):
        assert moved[name] > 1e-4, (name, moved[name])


def test_two_mask_rcnn_workers_equal_one_worker_with_double_batch(tmp_path):
    """2 workers x 2 images equal 1 worker x 4 images after 3 steps, every trained part moved
    and the frozen stem and first stage did not (see small_segmenter for the counts)."""
    single, two = _train_one_and_two_workers("mask_rcnn", 2, 3, tmp_path)
    sys.path.insert(0, HERE)
    from hvd_equivalence_worker import small_segmenter
    params = small_segmenter()._collect_params_with_prefix()
    moved, differ = {}, {}
    for name in single:
        a, b = single[name].asnumpy(), two[name].asnumpy()
        assert np.isfinite(a).all(), name
        moved[name] = np.abs(a - params[name].data().asnumpy()).max()
        differ[name] = np.abs(b - a).max()
    # The two runs differ by float rounding only (summation orders of batch 2 and 4), far
    # below how far training moved each weight: a gradient off by a factor (summed instead
    # of averaged, or normalised by other counts) would differ by about the move itself.
    worst = max(differ, key=lambda n: differ[n] / (moved[n] + 1e-6))
    assert differ[worst] <= 1e-2 * moved[worst] + 1e-7, (worst, differ[worst], moved[worst])
    trained = [n for n, p in params.items() if p.grad_req != "null"]
    frozen = [n for n in params if n.startswith(("backbone.features.0.", "backbone.features.4."))]
    assert len(trained) > 40 and frozen and not set(frozen) & set(trained)
    weights = [n for n in trained if n.endswith("weight")]
    # Every trained weight moved, but P3-P5's output convolutions: at 64x64 every RoI pools
    # from P2, and every anchor of P3 and up crosses the image's border (ignored), so no loss
    # reaches them (P6 is pooled from P5's output, not a convolution of its own).
    still = sorted(n for n in weights if moved[n] <= 1e-6)
    assert still == [f"fpn.output.{k}.weight" for k in (1, 2, 3)], still
    assert all(moved[n] == 0 for n in frozen), frozen
