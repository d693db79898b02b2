"""The flags of a training run, in one place: train.py parses them, and the runner parses
the same ones (to check a request before starting workers) and passes them on as given.

Flags whose default differs by task (the recipe of each, as NVIDIA gives it) default to the
task of `--arch`: `./runner -n 8 -b 32 --arch ssd320_resnet50_fpn --dtype float16` is the SSD320
v1.2 recipe, `./runner -n 8 -b 208 --dtype float16` the ResNet-50 v1.5 one."""
import argparse

import models
from data.loaders import BACKENDS
from data.pipelines import HW_DECODER_LOAD
from data.bad_records import POLICIES
from data.check_data import CHECK_SAMPLE, check_count
from engine.cli import image_shape, positive_int

# The defaults that differ by task; every other default is the same for all tasks.
TASK_DEFAULTS = {
    "classification": {
        "data_root": "/data/imagenet/train-val-recordio-passthrough", "batch_size": 208,
        "image_shape": (3, 224, 224), "lr": 0.256, "momentum": 0.875,
        "wd": 3.0517578125e-05, "num_steps": None, "epoch_steps": None, "warmup_steps": None,
        "warmup_begin_factor": 0.0},
    # SSD320 v1.2: 12,500 steps of 32 images per GPU on 8 GPUs, 1,000 warm-up steps from
    # 0.0693312 (a factor 0.43332 of the peak 0.16), cosine decay; weight decay 4e-4 is the L2
    # weight of TensorFlow's configuration of this model family.
    "detection": {
        "data_root": "/data/coco2017", "batch_size": 32, "image_shape": (3, 320, 320),
        "lr": 0.16, "momentum": 0.9, "wd": 4e-4, "num_steps": 12500, "epoch_steps": 1250,
        "warmup_steps": 1000, "warmup_begin_factor": 0.0693312 / 0.16},
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


def apply_task_defaults(args):
    """Fill the by-task flags the command line left out with the defaults of the task of
    `args.arch`; returns `args`."""
    for name, value in TASK_DEFAULTS[models.model_task(args.arch)].items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    return args


def trainable_models():
    """The registered models of the tasks train.py trains (those with TASK_DEFAULTS): Mask
    R-CNN (instance_segmentation) is in the registry before its engine task exists."""
    return [name for name in models.list_models() if models.model_task(name) in TASK_DEFAULTS]


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
                   help="the network; its task (classification or detection) follows from it")
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
    g.add_argument("--nms-threshold", type=float, default=0.6,
                   help="detection: IoU above which a lower-scored box of a class is dropped")
    g.add_argument("--max-detections", type=positive_int, default=100,
                   help="detection: boxes kept per image")
    g.add_argument("--missing-images", choices=("error", "skip"), default="error",
                   help="images the json lists but the folder lacks: stop, or leave them out")
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
                   help="learning rate for a global batch of 256, scaled linearly; "
                        + _by_task("lr"))
    g.add_argument("--lr-schedule", choices=("cosine", "step"), default="cosine")
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
    g.add_argument("--lr-decay-steps", default=None,
                   help="steps of the step schedule (overrides --lr-steps), e.g. 60000,80000")
    g.add_argument("--momentum", type=float, default=argparse.SUPPRESS,
                   help=_by_task("momentum"))
    g.add_argument("--wd", type=float, default=argparse.SUPPRESS,
                   help="weight decay (not on BatchNorm and biases); " + _by_task("wd"))
    g.add_argument("--label-smoothing", type=float, default=0.1)
    g.add_argument("--mixup", type=float, default=0.0, help="mixup alpha; 0 disables it")
    g.add_argument("--loss-scale", default=None,
                   help="'dynamic' or a number (default: dynamic for float16, 1 otherwise)")
    g = p.add_argument_group("output")
    g.add_argument("--log-interval", type=positive_int, default=20, help="iterations")
    g.add_argument("--eval-every", type=int, default=1, help="epochs; 0: only at the end")
    g.add_argument("--save-frequency", type=int, default=1,
                   help="checkpoint every N epochs (and after the last); 0: never")
    g.add_argument("--keep-checkpoints", type=int, default=5, help="0 keeps all")
    g.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                   help="progress bar; auto: when stderr is a terminal")
    return p
