"""The flags of a training run, in one place: train.py parses them, and the runner parses
the same ones (to check a request before starting workers) and passes them on as given.

Flags whose default differs by task (the recipe of each, as NVIDIA gives it) default to the
task of `--arch`: `./runner -n 8 -b 32 --arch ssd320_resnet50_fpn --dtype float16` is the SSD320
v1.2 recipe, `./runner -n 8 -b 208 --dtype float16` the ResNet-50 v1.5 one, `./runner -n 8 -b 2
--arch maskrcnn_r50_fpn` the Mask R-CNN R-50-FPN one."""
import argparse
from dataclasses import fields, replace

import models
from data.loaders import BACKENDS
from data.pipelines import HW_DECODER_LOAD
from data.bad_records import POLICIES
from data.check_data import CHECK_SAMPLE, check_count
from engine.cli import (fraction, image_shape, int_list, percentage, positive_float_list,
                        positive_int)

# The defaults that differ by task; every other default is the same for all tasks.
TASK_DEFAULTS = {
    "classification": {
        "data_root": "/data/imagenet/train-val-recordio-passthrough", "batch_size": 208,
        "image_shape": (3, 224, 224), "lr": 0.256, "lr_batch": 256, "momentum": 0.875,
        "wd": 3.0517578125e-05, "num_steps": None, "epoch_steps": None, "warmup_steps": None,
        "warmup_begin_factor": 0.0, "lr_schedule": "cosine", "lr_decay_steps": None,
        "nms_threshold": 0.6},
    # SSD320 v1.2: 12,500 steps of 32 images per GPU on 8 GPUs, 1,000 warm-up steps from
    # 0.0693312 (a factor 0.43332 of the peak 0.16), cosine decay; weight decay 4e-4 is the L2
    # weight of TensorFlow's configuration of this model family.
    "detection": {
        "data_root": "/data/coco2017", "batch_size": 32, "image_shape": (3, 320, 320),
        "lr": 0.16, "lr_batch": 256, "momentum": 0.9, "wd": 4e-4, "num_steps": 12500,
        "epoch_steps": 1250, "warmup_steps": 1000, "warmup_begin_factor": 0.0693312 / 0.16,
        "lr_schedule": "cosine", "lr_decay_steps": None, "nms_threshold": 0.6},
    # Mask R-CNN R-50-FPN (maskrcnn-benchmark's e2e_mask_rcnn_R_50_FPN_1x): 90,000 steps of 16
    # images (2 per GPU on 8 GPUs) at 0.02, x0.1 at 60,000 and 80,000, 500 warm-up steps from a
    # third; epochs are passes over the data.
    "instance_segmentation": {
        "data_root": "/data/coco2017", "batch_size": 2, "image_shape": None, "lr": 0.02,
        "lr_batch": 16, "momentum": 0.9, "wd": 1e-4, "num_steps": 90000, "epoch_steps": None,
        "warmup_steps": 500, "warmup_begin_factor": 1 / 3, "lr_schedule": "step",
        "lr_decay_steps": "60000,80000", "nms_threshold": 0.5},
}


def _by_task(name):
    """Help text of a by-task default, e.g. "default: 208 (classification), 32 (detection)"."""
    values = ", ".join(f"{_shown(TASK_DEFAULTS[task][name])} ({task})" for task in TASK_DEFAULTS)
    return f"default by task: {values}"


def _shown(value):
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)


def data_splits(mode):
    """The data splits a `--mode` reads: "train", "val" or both."""
    return {"train": ["train"], "val": ["val"], "train_val": ["train", "val"]}[mode]


def reads_coco(arch):
    """True when the task of model `arch` reads COCO-layout data (detection and instance
    segmentation; classification reads RecordIO)."""
    return models.model_task(arch) != "classification"


def apply_task_defaults(args):
    """Fill the by-task flags the command line left out with the defaults of the task of
    `args.arch`; returns `args`."""
    for name, value in TASK_DEFAULTS[models.model_task(args.arch)].items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    return args


def trainable_models():
    """The registered models of the tasks train.py trains (those with TASK_DEFAULTS)."""
    return [name for name in models.list_models() if models.model_task(name) in TASK_DEFAULTS]


# The --target-* flags (by dest) and the factor from each flag's unit to the percent the tasks
# report: NVIDIA's Mask R-CNN recipe gives its targets as COCO mAP fractions (0.377 box, 0.342
# mask), the tasks report AP in percent like top-1. This is the one place that converts. Each
# task lists the flags it accepts and the metric each is checked against
# (`Task.target_metrics`).
TARGET_UNITS = {"target_top1": 1.0, "target_bbox_map": 100.0, "target_mask_map": 100.0}


def _flag(dest):
    return "--" + dest.replace("_", "-")


def given_targets(args):
    """{dest: value} of the --target-* flags given."""
    return {dest: getattr(args, dest) for dest in TARGET_UNITS
            if getattr(args, dest, None) is not None}


def check_target_flags(args):
    """Raise ValueError when --target-* flags are given without the evaluations they need."""
    given = given_targets(args)
    if not given:
        return
    flags = " ".join(_flag(dest) for dest in given)
    if args.mode != "train_val":
        raise ValueError(f"{flags}: a target is checked at each evaluation during training; "
                         f"use --mode train_val instead of --mode {args.mode}")
    if args.eval_every < 1:
        raise ValueError(f"{flags}: a target is checked at each evaluation during training; "
                         f"give --eval-every 1 (or every N epochs) instead of "
                         f"--eval-every {args.eval_every}")


def metric_targets(args, accepted):
    """{metric: threshold, in the task's percent} of the --target-* flags given.

    Parameters
    ----------
    accepted : dict
        The task's `target_metrics`: {flag dest: metric name}.

    Raises
    ------
    ValueError
        For a target of a metric the task does not report.
    """
    given = given_targets(args)
    refused = [_flag(dest) for dest in given if dest not in accepted]
    if refused:
        takes = ", ".join(_flag(dest) for dest in accepted) or "no target"
        raise ValueError(f"{' '.join(refused)}: --arch {args.arch} does not report that "
                         f"metric; its task takes {takes}")
    return {accepted[dest]: value * TARGET_UNITS[dest] for dest, value in given.items()}


def build_parser(description=None, add_help=True):
    """The parser of train.py's flags (the runner takes them too, and checks them first)."""
    p = argparse.ArgumentParser(description=description, add_help=add_help, allow_abbrev=False,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("run")
    g.add_argument("--mode", choices=("train", "val", "train_val"), default="train_val",
                   help="train only; evaluate --load / the newest checkpoint; or both")
    g.add_argument("--workspace", default="workspace",
                   help="folder for logs, checkpoints and exported models")
    g.add_argument("--model-prefix", default="model",
                   help="name of the exported symbol/params files inside the workspace")
    g.add_argument("--resume", action="store_true",
                   help="continue from the newest valid checkpoint in the workspace")
    g.add_argument("--load", help="weights to start from or, with --mode val, to evaluate: a "
                                  "checkpoint directory or a .params file (also exported ones)")
    g.add_argument("--report", help="write a JSON summary of the run here")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--stall-timeout", type=float, default=300,
                   help="seconds a worker may wait on the others in one collective (a step's "
                        "gradient allreduce included) before the run stops with an error "
                        "naming it; raise it for very slow steps; 0: wait forever")
    g = p.add_argument_group("model")
    g.add_argument("--arch", default="resnet50_v1.5", choices=trainable_models(),
                   help="the network; its task (classification, detection or "
                        "instance_segmentation) follows from it")
    g.add_argument("--num-classes", type=positive_int, default=1000,
                   help="classification; detection takes the classes of the COCO json")
    g.add_argument("--backbone-weights",
                   help="detection: start the ResNet backbone from a classifier checkpoint of "
                        "this project (its model.params; same depth and layout)")
    g.add_argument("--dtype", choices=("float32", "float16"), default=None,
                   help="float16 on GPUs (default there), float32 otherwise")
    g.add_argument("--layout", choices=("NCHW", "NHWC"), default="NCHW",
                   help="NHWC is faster with float16 on Tensor Core GPUs")
    g.add_argument("--zero-init-residual", action="store_true",
                   help="start every residual branch's last BatchNorm gamma at zero")
    g = p.add_argument_group("data")
    g.add_argument("--data-root", default=argparse.SUPPRESS,
                   help="classification: folder with train.rec/.idx and val.rec/.idx; "
                        "detection: a COCO-layout folder; " + _by_task("data_root"))
    g.add_argument("--data-backend", choices=BACKENDS, default=None,
                   help="dali-gpu where there is a GPU, dali-cpu otherwise")
    g.add_argument("-b", "--batch-size", type=positive_int, default=argparse.SUPPRESS,
                   help="per worker; " + _by_task("batch_size"))
    g.add_argument("--image-shape", type=image_shape, default=argparse.SUPPRESS,
                   help="network input C,H,W; " + _by_task("image_shape"))
    g.add_argument("--num-examples", type=positive_int, default=None,
                   help="cap each training epoch at this many samples (all workers together)")
    g.add_argument("--data-threads", type=positive_int, default=None,
                   help="DALI / ImageRecordIter threads per worker (default: CPU cores per "
                        "worker)")
    g.add_argument("--min-random-area", type=float, default=0.08)
    g.add_argument("--max-random-area", type=float, default=1.0)
    g.add_argument("--min-random-aspect-ratio", type=float, default=3 / 4)
    g.add_argument("--max-random-aspect-ratio", type=float, default=4 / 3)
    g.add_argument("--resize-shorter", type=positive_int, default=None,
                   help="validation resize (default: crop * 256 / 224)")
    g.add_argument("--pad-channels", action="store_true", help="pad images to 4 channels")
    g.add_argument("--hw-decoder-load", type=float, default=HW_DECODER_LOAD,
                   help="dali-gpu: share of JPEGs for the hardware decoder")
    g.add_argument("--bad-data", choices=POLICIES, default="skip",
                   help="a training or validation record that fails to decode (DALI "
                        "backends, .rec data): skip: find the bad records of that worker's "
                        "shard, leave them out and go on (logged, with the repair command; "
                        "epochs keep their length); stop: every worker stops at once, the "
                        "message names each record and the repair command")
    g.add_argument("--check-data", nargs="?", const=CHECK_SAMPLE, default=None,
                   type=check_count, metavar="N",
                   help="before training, decode N records (images) of each split the mode "
                        f"reads, spread over the file (N alone: {CHECK_SAMPLE}; 'all': every "
                        "one), and stop naming the bad ones")
    g = p.add_argument_group("detection data (COCO layout under --data-root)")
    g.add_argument("--train-split", default="train2017",
                   help="annotations/instances_SPLIT.json and SPLIT/ of training")
    g.add_argument("--val-split", default="val2017", help="the same, of evaluation")
    g.add_argument("--max-boxes", type=positive_int, default=100,
                   help="objects and crowd regions per training image (more are cut, crowd "
                        "regions first, with a count logged)")
    g.add_argument("--score-threshold", type=float, default=0.05,
                   help="detection: class score below which a box is dropped at inference")
    g.add_argument("--nms-threshold", type=float, default=argparse.SUPPRESS,
                   help="detection: IoU above which a lower-scored box of a class is dropped; "
                        + _by_task("nms_threshold"))
    g.add_argument("--max-detections", type=positive_int, default=100,
                   help="detection: boxes kept per image")
    g.add_argument("--missing-images", choices=("error", "skip"), default="error",
                   help="images the json lists but the folder lacks: stop, or leave them out")
    _add_mask_rcnn_flags(p)
    g = p.add_argument_group("optimisation")
    g.add_argument("--num-epochs", type=positive_int, default=90)
    g.add_argument("--num-steps", type=positive_int, default=argparse.SUPPRESS,
                   help="train for this many optimizer steps instead of --num-epochs "
                        "(step-based recipes); epochs are then --epoch-steps long; "
                        + _by_task("num_steps"))
    g.add_argument("--epoch-steps", type=positive_int, default=argparse.SUPPRESS,
                   help="steps per epoch, the interval of evaluation, checkpoints and epoch "
                        "logs (none: one pass over the training data); "
                        + _by_task("epoch_steps"))
    g.add_argument("--lr", type=float, default=argparse.SUPPRESS,
                   help="learning rate for a global batch of --lr-batch, scaled linearly; "
                        + _by_task("lr"))
    g.add_argument("--lr-batch", type=positive_int, default=argparse.SUPPRESS,
                   help="the global batch --lr is given for (the recipe's); "
                        + _by_task("lr_batch"))
    g.add_argument("--lr-schedule", choices=("cosine", "step"), default=argparse.SUPPRESS,
                   help=_by_task("lr_schedule"))
    g.add_argument("--lr-steps", default="30,60,80", help="epochs of the step schedule")
    g.add_argument("--lr-factor", type=float, default=0.1, help="step schedule decay")
    g.add_argument("--warmup-epochs", type=float, default=5)
    g.add_argument("--warmup-steps", type=int, default=argparse.SUPPRESS,
                   help="warm-up length in steps (overrides --warmup-epochs); "
                        + _by_task("warmup_steps"))
    g.add_argument("--warmup-begin-factor", type=float, default=argparse.SUPPRESS,
                   help="the linear warm-up starts from this fraction of the peak learning "
                        "rate (0 <= f < 1), so that it follows --lr; "
                        + _by_task("warmup_begin_factor"))
    g.add_argument("--lr-decay-steps", default=argparse.SUPPRESS,
                   help="steps of the step schedule (overrides --lr-steps), e.g. 60000,80000; "
                        + _by_task("lr_decay_steps"))
    g.add_argument("--momentum", type=float, default=argparse.SUPPRESS,
                   help=_by_task("momentum"))
    g.add_argument("--wd", type=float, default=argparse.SUPPRESS,
                   help="weight decay (not on BatchNorm and biases); " + _by_task("wd"))
    g.add_argument("--label-smoothing", type=float, default=0.1)
    g.add_argument("--mixup", type=float, default=0.0, help="mixup alpha; 0 disables it")
    g.add_argument("--loss-scale", default=None,
                   help="'dynamic' or a number (default: dynamic for float16, 1 otherwise)")
    g.add_argument("--accumulate", type=positive_int, default=1, metavar="N",
                   help="gradient accumulation: each optimizer step sums the gradients of N "
                        "batches of -b per worker before one allreduce and one update of "
                        "their mean, an effective batch of b x workers x N in the memory of "
                        "b. Steps stay optimizer steps (--num-steps, --epoch-steps, "
                        "--log-interval, the schedule); --lr is scaled to the effective "
                        "batch; a pass of P batches gives epochs of P // N steps (the rest "
                        "roll over). Losses stay normalised per batch and are averaged: "
                        "exact for classification (means over the batch); SSD's, divided by "
                        "each batch's positive anchors, become the mean of the batches' "
                        "normalised losses, as NVIDIA's implementations accumulate")
    g = p.add_argument_group("output")
    g.add_argument("--log-interval", type=positive_int, default=20, help="iterations")
    g.add_argument("--eval-every", type=int, default=1, help="epochs; 0: only at the end")
    g.add_argument("--save-frequency", type=int, default=1,
                   help="checkpoint every N epochs (and after the last); 0: never")
    g.add_argument("--keep-checkpoints", type=int, default=5, help="0 keeps all")
    g.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                   help="progress bar; auto: when stderr is a terminal")
    _add_target_flags(p)
    return p


def _add_target_flags(p):
    g = p.add_argument_group(
        "target accuracy: end the run after the first evaluation at which every target "
        "given is reached, saving that epoch's checkpoint (needs --mode train_val and "
        "--eval-every >= 1; log.jsonl and --report say target_reached)")
    g.add_argument("--target-top1", type=percentage, default=None, metavar="PERCENT",
                   help="classification: top-1 in percent, as logged (e.g. 75.9)")
    g.add_argument("--target-bbox-map", type=fraction, default=None, metavar="MAP",
                   help="detection and instance segmentation: COCO box mAP as a fraction 0-1, "
                        "as NVIDIA's Mask R-CNN recipe gives it (0.377); logs show AP in "
                        "percent (37.7)")
    g.add_argument("--target-mask-map", type=fraction, default=None, metavar="MAP",
                   help="instance segmentation: COCO mask mAP as a fraction 0-1 (0.342); with "
                        "--target-bbox-map, both must be reached")


# Mask R-CNN's recipe numbers, each a flag: (flag, settings group, field, help). Defaults
# and types come from the settings dataclasses of `models.rpn` and `models.roi_heads`, so
# that the recipe is written once.
MASK_RCNN_SETTINGS = (
    ("--anchor-sizes", "rpn", "anchor_sizes", "anchor side per FPN level P2..P6, pixels"),
    ("--anchor-strides", "rpn", "anchor_strides", "stride of each level"),
    ("--aspect-ratios", "rpn", "aspect_ratios", "anchor height/width ratios"),
    ("--rpn-fg-iou", "rpn", "fg_iou_thresh", "anchors of at least this IoU with an object "
                                             "are positives"),
    ("--rpn-bg-iou", "rpn", "bg_iou_thresh", "anchors below it with every object are "
                                             "negatives"),
    ("--rpn-batch-size", "rpn", "num_sample", "anchors sampled per image"),
    ("--rpn-positive-fraction", "rpn", "pos_fraction", "at most this share positives"),
    ("--rpn-pre-nms-train", "rpn", "pre_nms_top_n_train", "proposals per level before NMS, "
                                                          "training"),
    ("--rpn-post-nms-train", "rpn", "post_nms_top_n_train", "proposals per image after NMS, "
                                                            "training"),
    ("--rpn-pre-nms-test", "rpn", "pre_nms_top_n_test", "the same, inference"),
    ("--rpn-post-nms-test", "rpn", "post_nms_top_n_test", "the same, inference"),
    ("--rpn-nms", "rpn", "nms_thresh", "IoU of the proposals' NMS"),
    ("--roi-batch-size", "roi", "num_sample", "RoIs sampled per image"),
    ("--roi-positive-fraction", "roi", "pos_fraction", "at most this share positives"),
    ("--roi-fg-iou", "roi", "fg_iou_thresh", "RoIs of at least this IoU with an object are "
                                             "positives, the others background"),
)


def _settings_classes():
    from models.roi_heads import DetectSettings, RoISettings
    from models.rpn import RPNSettings
    return {"rpn": RPNSettings, "roi": RoISettings, "detect": DetectSettings}


def _add_mask_rcnn_flags(p):
    from data.mask_rcnn_pipelines import MAX_POLYGONS, MAX_SIZE, MAX_VERTICES, MIN_SIZE
    g = p.add_argument_group("Mask R-CNN (instance_segmentation; defaults: the recipe)")
    g.add_argument("--min-size", type=int_list, default=[MIN_SIZE],
                   help="shorter image side; several (e.g. 640,672,704,736,768,800): one "
                        "drawn per training image (multi-scale training), evaluation takes "
                        "the last")
    g.add_argument("--max-size", type=positive_int, default=MAX_SIZE,
                   help="longest allowed longer side")
    g.add_argument("--max-polygons", type=positive_int, default=MAX_POLYGONS,
                   help="polygons per training image (more are left out of the mask "
                        "targets, with a count logged)")
    g.add_argument("--max-vertices", type=positive_int, default=MAX_VERTICES,
                   help="polygon vertices per training image (the same)")
    classes = _settings_classes()
    for flag, group, name, text in MASK_RCNN_SETTINGS:
        default = {f.name: f.default for f in fields(classes[group])}[name]
        if isinstance(default, tuple):
            kind = int_list if all(isinstance(v, int) for v in default) else positive_float_list
        else:
            kind = type(default)
        g.add_argument(flag, type=kind, default=default, help=text)


def mask_rcnn_settings(args):
    """The `models.mask_rcnn.MaskRCNN` keyword arguments ``rpn``, ``roi`` and ``detect`` from
    the flags (the detection flags --score-threshold, --nms-threshold and --max-detections
    included)."""
    classes = _settings_classes()
    values = {group: {} for group in classes}
    for flag, group, name, _ in MASK_RCNN_SETTINGS:
        value = getattr(args, flag[2:].replace("-", "_"))
        values[group][name] = tuple(value) if isinstance(value, list) else value
    values["detect"] = dict(score_thresh=args.score_threshold, nms_thresh=args.nms_threshold,
                            max_detections=args.max_detections)
    return {group: replace(classes[group](), **values[group]) for group in classes}
