"""The project's Mask R-CNN against gluoncv's, side by side: the same images, image size,
batch (1) and cores.

=========  ==================================================================================
case       what runs
=========  ==================================================================================
training   project: ``./runner`` and train.py, as users train (`benchmarking.training`: W
           warm-up and E timed epochs of I steps on DALI data, images/s and data wait from
           its ``log.jsonl``); gluoncv: ``mask_rcnn_fpn_resnet50_v1b_coco`` trained as its
           ``train_mask_rcnn.py`` trains it (`benchmarking.gluoncv_mask_rcnn`: its transform,
           targets, DataLoader with one worker per core, losses, SGD), W x I uncounted and
           E x I timed iterations, in this process. Both from random weights.
inference  one fixed image of the resized size, both networks hybridized as deployed:
           project `benchmarking.mask_rcnn_inference` (up to 100 detections, their masks
           pasted); gluoncv its ``validate`` (1,000 detections through the mask head, the best
           100 pasted with its ``mask.fill``), timed by `benchmarking.timing.measure_epochs`.
=========  ==================================================================================

The report's ``ratios`` divide the project's images/s by gluoncv's (above 1: the project is
faster); ``data_wait_share`` is the share of the iteration time spent waiting for the batch.
"""
import dataclasses
import os
import sys
import time

from benchmarking.stats import ratio
from benchmarking.sweep import one_line, report_case, run_echo, say
from benchmarking.training import RUNNER, CaseFailed, run_training_case

MAX_DETECTIONS = 100


def compare_with_gluoncv(settings, log_dir, cores, runner=RUNNER, env=None, training=True,
                         inference=True, gluoncv_lr=None, out=sys.stderr):
    """Measure the cases (training, inference) of both implementations, in turn.

    Parameters
    ----------
    settings : benchmarking.settings.Settings
        A Mask R-CNN arch, its data (DALI backend, COCO-layout root), sizes and epochs.
    log_dir : str
        The project's training log goes to ``train-project.log`` here.
    cores : int
        gluoncv's DataLoader workers (train.py takes as many DALI threads).
    env : dict, optional
        The runner's environment.
    gluoncv_lr : float, optional
        gluoncv's learning rate (default: its script's, 0.00125 x batch); benchmark.py
        gives 0 where the project trains at 0 (random weights).

    Returns
    -------
    list of dict
        Rows ``{"mode", "implementation", "workers": 1, "batch_size": 1, "status", ...}``
        with `benchmarking.sweep`'s measurements, training rows also ``data_wait_share``.
    """
    cases = []
    if training:
        cases += [("training", "project",
                   lambda echo: _project_training(settings, log_dir, runner, env, out)),
                  ("training", "gluoncv",
                   lambda echo: _gluoncv_training(settings, cores, gluoncv_lr, echo))]
    if inference:
        synthetic = dataclasses.replace(settings, data_backend="synthetic")
        cases += [("inference", "project", lambda echo: _project_inference(synthetic, echo)),
                  ("inference", "gluoncv", lambda echo: _gluoncv_inference(synthetic, echo))]
    return [_run_case(number, len(cases), case, settings, out)
            for number, case in enumerate(cases, 1)]


def _run_case(number, count, case, settings, out):
    mode, implementation, measure = case
    row = {"mode": mode, "implementation": implementation, "workers": 1, "batch_size": 1}
    say(out, f"[{number}/{count}] {mode} {implementation}: batch 1, {settings.dtype}, "
             f"shorter side {settings.min_size}, longer at most {settings.max_size}")

    def echo(epoch, epochs, rate, warmup):
        say(out, f"    {'warm-up' if warmup else 'epoch'} {epoch + 1}/{epochs}: {rate:.2f} "
                 f"img/s")
    start = time.perf_counter()
    try:
        row.update(status="ok", **measure(echo))
    except CaseFailed as error:
        row.update(status="failed", error=str(error))
    except Exception as error:  # one implementation failing must not lose the other's
        row.update(status="failed", error=one_line(error))
    report_case(out, row, time.perf_counter() - start)
    return row


def _project_training(settings, log_dir, runner, env, out):
    result = run_training_case(settings, 1, 1, os.path.join(log_dir, "train-project.log"),
                               runner, run_echo(out), env)
    result["data_wait_share"] = ratio(result["data_wait_ms"], result["iter_ms"])
    return result


def _gluoncv_training(settings, cores, learning_rate, echo):
    from benchmarking.gluoncv_mask_rcnn import measure_training
    return measure_training(settings.data_root, settings.min_size, settings.max_size, 1, cores,
                            settings.warmup * settings.iterations, settings.iterations,
                            settings.epochs, echo, learning_rate)


def _project_inference(settings, echo):
    from benchmarking.mask_rcnn_inference import run_inference_case
    return run_inference_case(settings, 1, echo)


def _gluoncv_inference(settings, echo):
    import mxnet as mx

    from benchmarking.gluoncv_mask_rcnn import class_names, inference_net, predict_and_paste
    from benchmarking.mask_rcnn_inference import synthetic_inputs
    from benchmarking.timing import check_epoch_length, measure_epochs
    iterations = check_epoch_length(settings, 1)
    _check_gluoncv_input(settings.image_hw)
    net = inference_net(class_names(settings.num_classes), settings.min_size,
                        settings.max_size)
    height, width = settings.image_hw
    image = next(synthetic_inputs(settings, 1, mx.cpu()))[0][:, :, :height, :width]
    pasted = []

    def inputs():
        while True:
            yield image
    result = measure_epochs(lambda x: pasted.append(predict_and_paste(net, x, MAX_DETECTIONS)),
                            inputs(), settings, 1, iterations, echo)
    result["detections_per_image"] = sum(pasted[1:]) / max(1, len(pasted) - 1)
    return result


def _check_gluoncv_input(image_hw):
    """gluoncv's RPN slices its 1,000 test proposals out of the anchors: fewer fail deep in
    MXNet, so say it here (P2-P6 of 3 anchors a cell; training needs 2,000)."""
    from benchmarking.mask_rcnn_loaders import level_shapes
    from benchmarking.timing import InferenceError
    anchors = 3 * sum(h * w for h, w in level_shapes(*image_hw, (4, 8, 16, 32, 64)))
    if anchors < 1000:
        raise InferenceError(f"gluoncv's Mask R-CNN needs at least 1,000 anchors (2,000 to "
                             f"train); a {image_hw[0]}x{image_hw[1]} image has {anchors}: "
                             f"raise --min-size / --max-size")


def peer_ratios(rows):
    """The project's images/s over gluoncv's per mode, and gluoncv's p50 latency over the
    project's (both above 1 where the project is faster); None where a side is missing."""
    rate = {(r["mode"], r["implementation"]): r for r in rows if r.get("status") == "ok"}

    def value(mode, implementation, key):
        row = rate.get((mode, implementation), {})
        return row.get("latency_ms", {}).get("p50") if key == "p50" else row.get(key)
    return {"training_img_per_s": ratio(value("training", "project", "img_per_s"),
                                        value("training", "gluoncv", "img_per_s")),
            "inference_img_per_s": ratio(value("inference", "project", "img_per_s"),
                                         value("inference", "gluoncv", "img_per_s")),
            "inference_p50_latency": ratio(value("inference", "gluoncv", "p50"),
                                           value("inference", "project", "p50"))}
