#!/usr/bin/env python3
"""Train and evaluate ResNet v1.5 classifiers, SSD-FPN detectors and Mask R-CNN with DALI data
and Horovod.

One process per worker; `./runner -n N` starts N of them (a single process also works on its
own); the task follows from `--arch`. Modes: `train`, `val` (evaluate a checkpoint) and
`train_val` (evaluate after every epoch). Everything a run writes goes to `--workspace`:
`config.json`, `log.jsonl` and `train.log`, `checkpoints/epoch-NNNN/`, `bbox.json`
(detection; Mask R-CNN also `segm.json`), and `<model-prefix>-symbol.json` / `-NNNN.params`
for deployment (Mask R-CNN: one pair per exported part).

A record that fails to decode is left out and counted (`--bad-data skip`, the default: one
bad image in a million must not end a run hours in) or stops every worker with a message
naming it (`--bad-data stop`); `--check-data` decodes a sample of each split first.

Exit status: 0 done; 2 a usage, data or checkpoint error (the message says what to change);
3 training diverged (the loss became NaN or infinite); 75 a worker waited on the others for
longer than --stall-timeout.
"""
import logging
import os
import sys
from dataclasses import dataclass
from typing import Callable

# MXNet sizes its CPU thread pool once, at import, and by default takes half the cores. Each
# worker gets its share of all cores instead (horovodrun says how many workers share a host).
_WORKERS_HERE = int(os.environ.get("HOROVOD_LOCAL_SIZE", "1"))
os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS_HERE)))
# GNU OpenMP's threads spin at every barrier by default, taking the cores DALI's threads need:
# measured on 2 cores, SSD training on real data ran at 0.24x of synthetic data with spinning
# threads and at 1.02x with passive ones (benchmarking/notes/ssd.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import mxnet as mx  # noqa: E402

import models
from data.coco import CocoError, prepare_coco
from data.check_data import check_data
from data.coco_loaders import CocoLoaderConfig, MaskRCNNLoaderConfig, build_coco_loader
from data.loaders import DataError, LoaderConfig, build_loader
from engine.checkpoint import CheckpointError, latest_checkpoint
from engine.distributed import HOROVOD_SHUT_DOWN, init_distributed, peer_left
from engine.files import write_json
from engine.hooks import CheckpointHook, EvalHook, SyncBatchNormStatsHook, TargetStopHook
from engine.logger import LoggerHook
from engine.options import (apply_task_defaults, build_parser, check_target_flags, data_splits,
                            mask_rcnn_settings, metric_targets, reads_coco)
from engine.loop import EXIT_DIVERGED, TrainingDiverged, TrainLoop
from engine.loss_scaler import LossScaler
from engine.optimization import (exclude_from_weight_decay, make_step_schedule,
                                 scaled_learning_rate, sgd_params)
from engine.tasks.classification import ClassificationTask
from engine.tasks.mask_rcnn import MaskRCNNTask
from engine.tasks.ssd import SSDTask
from engine.weights import (load_weights, read_trainer_states, restore_trainer_states,
                            weights_file)

log = logging.getLogger("train")


class UsageError(Exception):
    """A combination of arguments that cannot run; the message says what to change."""


def _usage_checked(check, *args):
    """``check(*args)``, its ValueError (whose message says what to change) raised as a
    UsageError."""
    try:
        return check(*args)
    except ValueError as error:
        raise UsageError(str(error)) from None


def parse_args(argv=None):
    return apply_task_defaults(build_parser(description=__doc__).parse_args(argv))


def select_device(args, dist):
    """The worker's context and GPU id, and the resolved dtype and data backend."""
    gpus = mx.context.num_gpus()
    dtype = args.dtype or ("float16" if gpus else "float32")
    _usage_checked(models.check_device_support, dtype, args.layout, gpus)
    if gpus and dist.local_rank >= gpus:
        raise UsageError(f"worker {dist.local_rank} on this host has no GPU: {gpus} visible; "
                         f"start at most {gpus} workers per host")
    backend = args.data_backend or ("dali-gpu" if gpus else "dali-cpu")
    device_id = dist.local_rank if gpus else None
    ctx = mx.gpu(device_id) if gpus else mx.cpu()
    return ctx, device_id, dtype, backend


def find_resume_checkpoint(args, dist):
    """The newest valid checkpoint of the workspace (for --resume, or --mode val without
    --load), chosen by rank 0 and sent to every worker; None when there is none."""
    checkpoint, error = None, None
    if dist.is_main:
        checkpoint = latest_checkpoint(os.path.join(args.workspace, "checkpoints"))
        if checkpoint is None and args.mode == "val":
            error = (f"--mode val: no valid checkpoint in {args.workspace}/checkpoints; "
                     f"pass --load CHECKPOINT_DIR or the right --workspace")
        elif checkpoint is None:
            log.warning("--resume: no valid checkpoint in %s/checkpoints; starting from "
                        "scratch", args.workspace)
        else:
            log.info("using checkpoint %s (%d epochs done)", checkpoint.path,
                     checkpoint.state["epoch"])
    # Every worker must learn of an error, or the others would wait for rank 0 forever.
    checkpoint, error = dist.broadcast_object((checkpoint, error), "resume.checkpoint")
    if error:
        raise UsageError(error)
    return checkpoint


@dataclass
class Setup:
    """What differs by task: the network's class count, builder arguments and input shape
    (of the pass that sizes its layers), the loaders (``make_loader(split, state=None)``)
    and the task, made once the network exists."""
    num_classes: int
    net_kwargs: dict
    image_shape: tuple
    make_loader: Callable
    make_task: Callable


def classification_setup(args, dist, ctx, device_id, dtype, backend):
    cfg = loader_config(args, dist, device_id, dtype, backend)
    return Setup(args.num_classes, {"zero_init_residual": args.zero_init_residual},
                 args.image_shape,
                 lambda split, state=None: build_loader(cfg, split, checkpoint=state),
                 lambda net: ClassificationTask(args.num_classes, ctx, args.label_smoothing,
                                                args.mixup, seed=args.seed + dist.rank))


def detection_setup(args, dist, ctx, device_id, dtype, backend):
    _, height, width = args.image_shape
    if height != width:
        raise UsageError(f"SSD takes a square input; got --image-shape "
                         f"{','.join(map(str, args.image_shape))} (e.g. 3,320,320)")
    datasets = prepare_coco_splits(args, dist)
    # Load the ops/ library (targets, decoding) now: mx.library.load once training has
    # started dies of SIGFPE (seen: from encode_targets in the first step).
    import ops  # noqa: F401
    cfg = CocoLoaderConfig(image_size=height, max_boxes=args.max_boxes,
                           **worker_data(args, dist, device_id, dtype, backend))
    any_split = next(iter(datasets.values()))
    return Setup(any_split.num_classes, {"image_size": height}, args.image_shape,
                 coco_loaders(cfg, datasets),
                 lambda net: SSDTask(ctx, height, net.anchors(height, ctx),
                                     any_split.crowd_label, datasets.get("val"),
                                     args.workspace if dist.is_main else None,
                                     args.score_threshold, args.nms_threshold,
                                     args.max_detections, dist))


def instance_segmentation_setup(args, dist, ctx, device_id, dtype, backend):
    if args.layout != "NCHW":
        raise UsageError("Mask R-CNN takes --layout NCHW (MXNet's RoIAlign is NCHW only)")
    datasets = prepare_coco_splits(args, dist, keep_segmentation=True)
    import ops  # noqa: F401  (before training starts: see detection_setup)
    cfg = MaskRCNNLoaderConfig(min_sizes=tuple(args.min_size), max_size=args.max_size,
                               max_boxes=args.max_boxes, max_polygons=args.max_polygons,
                               max_vertices=args.max_vertices,
                               **worker_data(args, dist, device_id, dtype, backend))
    any_split = next(iter(datasets.values()))
    # The smallest input with every pyramid level (P6 has stride 64) sizes the layers.
    return Setup(any_split.num_classes,
                 dict(crowd_label=any_split.crowd_label, **mask_rcnn_settings(args)),
                 (3, 64, 64), coco_loaders(cfg, datasets),
                 lambda net: MaskRCNNTask(ctx, datasets.get("val"),
                                          args.workspace if dist.is_main else None,
                                          seed=args.seed + dist.rank))


SETUPS = {"classification": classification_setup, "detection": detection_setup,
          "instance_segmentation": instance_segmentation_setup}


def coco_loaders(cfg, datasets):
    """``make_loader(split, state=None)`` over prepared COCO `datasets` by split."""
    return lambda split, state=None: build_coco_loader(cfg, datasets[split], split, state)


def prepare_coco_splits(args, dist, keep_segmentation=False):
    """The COCO splits the mode needs, checked and normalised (data/coco.py) by rank 0 into
    the workspace's cache, then reused by the other workers."""
    splits = data_splits(args.mode)
    names = {"train": args.train_split, "val": args.val_split}
    cache = os.path.join(args.workspace, "coco_cache")

    def prepare():
        return {split: prepare_coco(args.data_root, names[split], cache,
                                    missing_images=args.missing_images,
                                    keep_segmentation=keep_segmentation)
                for split in splits}
    error = None
    if dist.is_main:
        try:
            prepare()
        except CocoError as failure:
            error = str(failure)
    # Every worker learns of rank 0's error, or waits for its files to exist.
    error = dist.broadcast_object(error, "data.coco_prepared")
    if error:
        raise UsageError(error)
    datasets = prepare()
    if len({tuple(d.categories.category_ids) for d in datasets.values()}) > 1:
        raise UsageError(f"the categories of {args.train_split} and {args.val_split} differ; "
                         f"both annotation files must list the same categories")
    return datasets


def check_data_first(args, dist):
    """--check-data: rank 0 decodes a sample of each split the mode reads; every worker
    learns of a bad one (or they would wait for rank 0)."""
    error = None
    if dist.is_main:
        coco = reads_coco(args.arch)
        names = {"train": args.train_split, "val": args.val_split}
        splits = [names[s] if coco else s for s in data_splits(args.mode)]
        try:
            for line in check_data(args.data_root, splits, args.check_data, coco,
                                   _data_threads(args, dist)):
                log.info("--check-data: %s", line)
        except DataError as failure:
            error = str(failure)
    error = dist.broadcast_object(error, "data.checked")
    if error:
        raise DataError(error)


def _data_threads(args, dist):
    return args.data_threads or max(1, (os.cpu_count() or 1) // dist.local_size)


def worker_data(args, dist, device_id, dtype, backend):
    """The `data.loaders.WorkerDataConfig` fields of this worker, as keyword arguments."""
    return dict(backend=backend, batch_size=args.batch_size, dtype=dtype, layout=args.layout,
                rank=dist.rank, world_size=dist.size, device_id=device_id,
                num_threads=_data_threads(args, dist), seed=args.seed,
                hw_decoder_load=args.hw_decoder_load, bad_data=args.bad_data)


def loader_config(args, dist, device_id, dtype, backend):
    return LoaderConfig(
        data_root=args.data_root, image_shape=args.image_shape,
        random_area=(args.min_random_area, args.max_random_area),
        random_aspect_ratio=(args.min_random_aspect_ratio, args.max_random_aspect_ratio),
        resize_shorter=args.resize_shorter, pad_channels=args.pad_channels,
        num_classes=args.num_classes, num_examples=args.num_examples,
        **worker_data(args, dist, device_id, dtype, backend))


def steps_per_epoch(args, dist, train_loader):
    """Optimizer steps per epoch: --epoch-steps, or one pass over the training data (capped
    by --num-examples) in steps of --accumulate batches; batches left over by the last step
    roll over into the next epoch (the loader is an endless stream)."""
    if args.epoch_steps:
        return args.epoch_steps
    batches = len(train_loader)
    if args.num_examples:
        batches = min(batches, args.num_examples // (args.batch_size * dist.size))
    steps = batches // args.accumulate
    if steps < 1:
        raise UsageError(_too_few_batches(args, dist, batches))
    return steps


def _too_few_batches(args, dist, batches):
    step = f"{args.batch_size} x {dist.size} workers"
    if args.accumulate > 1:
        step += f" x --accumulate {args.accumulate}"
    if args.num_examples:
        return f"--num-examples {args.num_examples} is less than one global batch ({step})"
    return (f"a pass over the training data gives each worker {batches} batch(es), fewer than "
            f"--accumulate {args.accumulate}; lower --accumulate or -b")


def training_length(args, steps):
    """(epochs, total optimizer steps) of the run, epochs being `steps` long."""
    if args.num_steps:
        return -(-args.num_steps // steps), args.num_steps
    return args.num_epochs, args.num_epochs * steps


def lr_schedule(args, lr, steps):
    """The learning-rate schedule in optimizer steps, from the epoch- or step-based flags;
    `lr` is the scaled peak learning rate."""
    if not 0 <= args.warmup_begin_factor < 1:
        raise UsageError(f"--warmup-begin-factor {args.warmup_begin_factor} must be at least "
                         f"0 and below 1 (a fraction of the peak learning rate)")
    _, total = training_length(args, steps)
    warmup = (args.warmup_steps if args.warmup_steps is not None
              else int(args.warmup_epochs * steps))
    try:
        decay = ([int(s) for s in args.lr_decay_steps.split(",")] if args.lr_decay_steps
                 else [int(float(e) * steps) for e in args.lr_steps.split(",")])
    except ValueError:
        raise UsageError("--lr-steps / --lr-decay-steps take comma-separated numbers, e.g. "
                         "30,60,80") from None
    return make_step_schedule(args.lr_schedule, lr, total, warmup, decay, args.lr_factor,
                              lr * args.warmup_begin_factor)


def make_loss_scaler(args, dtype):
    text = args.loss_scale or ("dynamic" if dtype == "float16" else "1")
    if text == "dynamic":
        return LossScaler(init_scale=2.0 ** 15, dynamic=True)
    try:
        return LossScaler(init_scale=float(text))
    except ValueError:
        raise UsageError(f"--loss-scale must be 'dynamic' or a number, got {text!r}") from None


def train(args, dist, net, task, setup, checkpoint, config):
    """Train (and evaluate, with --mode train_val); returns the last metrics and whether the
    targets were reached (None without targets)."""
    # {metric: threshold} of the --target-* flags, checked against what the task reports.
    targets = _usage_checked(metric_targets, args, task.target_metrics)
    if checkpoint:
        check_same_accumulation(args, checkpoint)
    worker_state = _worker_state(checkpoint, dist)
    train_loader = setup.make_loader("train", worker_state.get("loader"))
    val_loader = setup.make_loader("val") if args.mode == "train_val" else None
    steps = steps_per_epoch(args, dist, train_loader)
    global_batch = args.batch_size * dist.size * args.accumulate  # of one optimizer step
    lr = scaled_learning_rate(args.lr, global_batch, args.lr_batch)
    schedule = lr_schedule(args, lr, steps)
    params = net.collect_params()
    exclude_from_weight_decay(params)
    trainer = dist.make_trainer(params, "sgd", sgd_params(schedule, args.momentum, args.wd,
                                                          config["dtype"] == "float16"))
    if checkpoint:
        states = read_trainer_states(checkpoint) if dist.is_main else None
        restore_trainer_states(trainer, dist.broadcast_object(states, "resume.trainer_states"),
                               schedule)
    task.load_state_dict(worker_state.get("task", {}))
    hooks = [SyncBatchNormStatsHook(dist)]
    if val_loader is not None:
        hooks.append(EvalHook(val_loader, dist, every=args.eval_every))
    if targets:
        hooks.append(TargetStopHook(targets))
    hooks.append(LoggerHook(dist, os.path.join(args.workspace, "log.jsonl"),
                            args.log_interval,
                            progress={"auto": None, "on": True, "off": False}[args.progress]))
    if args.save_frequency > 0:
        hooks.append(CheckpointHook(os.path.join(args.workspace, "checkpoints"), dist,
                                    train_loader, config, args.save_frequency,
                                    args.keep_checkpoints,
                                    os.path.join(args.workspace, args.model_prefix)))
    loop = TrainLoop(net, trainer, task, train_loader, steps, args.batch_size,
                     make_loss_scaler(args, config["dtype"]), hooks, dist=dist,
                     accumulate=args.accumulate)
    start_epoch = 0
    if checkpoint:
        loop.load_state_dict(checkpoint.state["loop"])
        start_epoch = checkpoint.state["loop"]["epoch"]
    num_epochs, total_steps = training_length(args, steps)
    log.info("training %s: %d workers x batch %d x accumulate %d (effective batch %d), %d "
             "steps/epoch, lr %.4f (%s), %s, epochs %d-%d (%d steps)", args.arch, dist.size,
             args.batch_size, args.accumulate, global_batch, steps, lr, args.lr_schedule,
             config["dtype"], start_epoch, num_epochs - 1, total_steps)
    loop.run(start_epoch, num_epochs, max_steps=total_steps)
    return loop.metrics, loop.target_reached


def check_same_accumulation(args, checkpoint):
    """A resumed run takes the checkpoint's --accumulate: another would change the steps per
    epoch and the learning rate's scaling under the restored schedule position."""
    trained = (checkpoint.state.get("config") or {}).get("accumulate", 1)
    if trained != args.accumulate:
        raise UsageError(f"--resume: {checkpoint.path} was trained with --accumulate {trained}; "
                         f"resume with --accumulate {trained}")


def _worker_state(checkpoint, dist):
    """This worker's loader/task state from a resumed checkpoint, when the worker count
    matches."""
    if checkpoint is None:
        return {}
    workers = checkpoint.state.get("workers") or []
    if len(workers) != dist.size:
        log.warning("checkpoint was written by %d workers, this run has %d: the data order "
                    "restarts instead of resuming exactly", len(workers), dist.size)
        return {}
    return workers[dist.rank]


def main(argv=None):
    args = parse_args(argv)
    dist = init_distributed(args.stall_timeout)
    _setup_logging(args.workspace, dist)
    try:
        _usage_checked(check_target_flags, args)
        ctx, device_id, dtype, backend = select_device(args, dist)
        config = dict(vars(args), dtype=dtype, data_backend=backend, workers=dist.size,
                      mxnet=mx.__version__, context=str(ctx))
        if dist.is_main:
            write_json(os.path.join(args.workspace, "config.json"), config)
        wants_checkpoint = args.resume or (args.mode == "val" and not args.load)
        checkpoint = find_resume_checkpoint(args, dist) if wants_checkpoint else None
        if args.check_data is not None and args.data_backend != "synthetic":
            check_data_first(args, dist)
        task_name = models.model_task(args.arch)
        setup = SETUPS[task_name](args, dist, ctx, device_id, dtype, backend)
        net = models.build_network(args.arch, setup.num_classes, args.layout, setup.image_shape,
                                   dtype, ctx, seed=args.seed, **setup.net_kwargs)
        start_backbone(args, net, task_name, ctx)
        weights = args.load or (checkpoint.params_path if checkpoint else None)
        if weights:
            load_weights(net, weights, ctx)
        dist.broadcast_parameters(net.collect_params())
        task = setup.make_task(net)
        if args.mode == "val":
            metrics, target_reached = task.evaluate(net, setup.make_loader("val"), dist), None
        else:
            metrics, target_reached = train(args, dist, net, task, setup, checkpoint, config)
    except (UsageError, DataError, CheckpointError) as error:
        log.error("%s", error)
        return 2
    except TrainingDiverged as error:
        log.error("%s", error)
        return EXIT_DIVERGED
    except mx.base.MXNetError as error:
        if not peer_left(error):
            raise
        # Another worker failed first and its message names the cause; a traceback here would
        # only bury it. The line keeps Horovod's words: the launcher recognises followers by them.
        log.error("stopping too: another worker stopped first (%s)", HOROVOD_SHUT_DOWN)
        return 1
    if dist.is_main:
        _report(args, task, metrics, target_reached)
    dist.finish()
    return 0


def start_backbone(args, net, task_name, ctx):
    """--backbone-weights: a detector's backbone from a classifier checkpoint."""
    if not args.backbone_weights:
        return
    if task_name == "classification":
        raise UsageError("--backbone-weights starts a detector's backbone; a classifier "
                         "starts from a checkpoint with --load")
    try:
        models.load_backbone_weights(net.backbone, weights_file(args.backbone_weights), ctx)
    except ValueError as error:
        raise UsageError(f"--backbone-weights {args.backbone_weights}: {error}") from None
    log.info("backbone initialised from %s", args.backbone_weights)


def _report(args, task, metrics, target_reached):
    if metrics:
        log.info("validation: %s", task.summary(metrics))
    log.info("workspace: %s (checkpoints in %s, logs in %s)", os.path.abspath(args.workspace),
             os.path.join(args.workspace, "checkpoints"), os.path.join(args.workspace, "log.jsonl"))
    if args.report:
        write_json(args.report, {"config": vars(args), "metrics": metrics,
                                  "target_reached": target_reached,
                                  "log": os.path.join(args.workspace, "log.jsonl")})


def _setup_logging(workspace, dist):
    handlers = [logging.StreamHandler(sys.stdout)]
    if dist.is_main:
        os.makedirs(workspace, exist_ok=True)
        handlers.append(logging.FileHandler(os.path.join(workspace, "train.log")))
    logging.basicConfig(level=logging.INFO if dist.is_main else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S",
                        handlers=handlers, force=True)


def _exit(status):
    """Exit with `status`. A worker of several that failed skips the interpreter's exit
    handlers: Horovod's and MXNet's raise ("Horovod has been shut down") when another worker
    has already left, which would turn a usage error's status 2 into 1."""
    if status != 0 and int(os.environ.get("HOROVOD_SIZE", "1")) > 1:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


if __name__ == "__main__":
    _exit(main())
