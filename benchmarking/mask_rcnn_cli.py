"""benchmark.py's Mask R-CNN commands (``--arch maskrcnn_r50_fpn``, ``maskrcnn_r18_fpn``): the
by-task defaults and flag checks, ``--lr 0`` for training from random weights, ``--loaders``
(`benchmarking.mask_rcnn_loaders`) and ``--peer gluoncv`` (`benchmarking.mask_rcnn_peer`).

Like `benchmarking.cli`, these take the argparse namespace and import MXNet only when called.
"""
import functools
import os
import sys

from benchmarking.cli import (default_backend, flag_value, inference_includes, run_coco_loaders,
                              sweep_problem, sweep_settings, usage_error, warn_if_busy,
                              write_report)

# The recipe's 2 images per GPU; on CPU, and in gluoncv's script, 1.
INFERENCE_BATCHES_CPU = [1]
INFERENCE_BATCHES_GPU = [1, 2, 4, 8]
TRAINING_BATCHES_CPU = [1]
TRAINING_BATCHES_GPU = {"float16": [2], "float32": [2]}
LOADER_BATCH = 1


def task_defaults(args):
    """Mask R-CNN's by-task defaults: the recipe's sizes, and its synthetic inference input
    (`image_hw` inside `image_shape`): a 640x480 image resized by them, padded to 32."""
    from benchmarking.mask_rcnn_inference import padded_shape, resized_image_hw
    from data.mask_rcnn_pipelines import MAX_SIZE, MIN_SIZE
    from engine.options import TASK_DEFAULTS
    args.min_size = args.min_size or MIN_SIZE
    args.max_size = args.max_size or MAX_SIZE
    if args.image_shape:
        args.image_hw = tuple(args.image_shape[1:])
    else:
        args.image_hw = resized_image_hw(args.min_size, args.max_size)
    return dict(data_root=TASK_DEFAULTS["instance_segmentation"]["data_root"],
                image_shape=padded_shape(args.image_hw))


def default_batches(mode, dtype, gpus):
    """The batch sizes swept when -b is not given, by mode ("training", "inference")."""
    if mode == "training":
        return TRAINING_BATCHES_GPU[dtype] if gpus else TRAINING_BATCHES_CPU
    return INFERENCE_BATCHES_GPU if gpus else INFERENCE_BATCHES_CPU


def flag_problem(args):
    """What makes the Mask R-CNN flags unusable with this --arch, or None."""
    mask_rcnn = args.task == "instance_segmentation"
    if not mask_rcnn and (args.min_size or args.max_size or args.peer):
        given = [f for f, v in (("--min-size", args.min_size), ("--max-size", args.max_size),
                                ("--peer", args.peer)) if v]
        return (f"{' '.join(given)}: Mask R-CNN's (--arch maskrcnn_r50_fpn or "
                f"maskrcnn_r18_fpn), not {args.model}'s ({args.task})")
    if mask_rcnn and args.image_shape and (args.image_shape[0] != 3 or any(
            side % 32 for side in args.image_shape[1:])):
        return (f"Mask R-CNN's input is 3 channels with sides that are multiples of 32 (the "
                f"pipeline pads to them); got --image-shape "
                f"{','.join(map(str, args.image_shape))}")
    if mask_rcnn and args.layout != "NCHW":
        return "Mask R-CNN takes --layout NCHW (MXNet's RoIAlign is NCHW only)"
    return None


def runner_flags(args, runner_args):
    """The runner's flags, with ``--lr 0`` for Mask R-CNN training from random weights.

    Without a classifier checkpoint (--backbone-weights) its frozen BatchNorms are identities
    and the R-50 losses become NaN within a few steps (train.py then stops, status 3). With
    a learning rate of 0 every step still does all of a real step's work (forward, targets,
    backward, the SGD update) on finite numbers. A --lr or --backbone-weights given is kept.
    """
    given = {arg.split("=", 1)[0] for arg in runner_args}
    if (args.task != "instance_segmentation" or args.only_inference or args.loaders
            or given & {"--lr", "--backbone-weights"}):
        return runner_args
    print("benchmark.py: Mask R-CNN trains from random weights here: --lr 0 (the steps' work "
          "is the same; give --lr or --backbone-weights to change it)", file=sys.stderr)
    return ["--lr", "0", *runner_args]


def run_loaders(args, command, threads):
    """--loaders: Mask R-CNN's training data path against gluoncv's; returns the exit
    status."""
    from benchmarking import mask_rcnn_loaders
    compare = functools.partial(mask_rcnn_loaders.compare_mask_rcnn_loaders,
                                min_size=args.min_size, max_size=args.max_size)
    return run_coco_loaders(
        args, command, threads, name="Mask R-CNN", kind="mask-rcnn-loaders",
        output="mask_rcnn_loaders.json", default_batch=LOADER_BATCH, compare=compare,
        sizes=lambda: (f"shorter side {args.min_size}, longer at most {args.max_size}",
                       dict(min_size=args.min_size, max_size=args.max_size)))


def run_peer(args, runner_args, command, runner_env, threads):
    """--peer gluoncv: the project's Mask R-CNN and gluoncv's, side by side; returns the exit
    status."""
    import mxnet as mx

    from benchmarking import machine, mask_rcnn_peer
    from benchmarking.gluoncv_mask_rcnn import MODEL
    if mx.context.num_gpus():
        return usage_error("--peer compares on CPU (gluoncv's side runs there); hide the GPUs "
                           "with CUDA_VISIBLE_DEVICES=")
    args.data_backend = args.data_backend or default_backend(args.task, 0)
    problem = sweep_problem(args, runner_args, real_inference=False)
    if problem:
        return usage_error(f"--peer: {problem}")
    settings = sweep_settings(args, runner_args, 0)
    load_at_start = warn_if_busy(machine)
    output = args.output or os.path.join("runs", "mask_rcnn_vs_gluoncv.json")
    # gluoncv takes the project's learning rate where it is 0, else its script's own.
    zero_lr = float(flag_value(runner_args, "--lr", "nan")) == 0
    rows = mask_rcnn_peer.compare_with_gluoncv(
        settings, f"{os.path.splitext(output)[0]}-logs", machine.cpu_cores(), args.runner,
        runner_env, training=not args.only_inference, inference=not args.only_training,
        gluoncv_lr=0.0 if zero_lr else None)
    return write_report("mask-rcnn-peer", rows, command, output, model=settings.model,
                        peer=f"gluoncv {MODEL}", task=settings.task,
                        dtype=settings.dtype, data_backend=settings.data_backend,
                        settings=settings.as_dict(), inference_threads=threads,
                        ratios=mask_rcnn_peer.peer_ratios(rows),
                        inference_includes=inference_includes(settings),
                        load_average_at_start=load_at_start)
