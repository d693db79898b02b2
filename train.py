#!/usr/bin/env python3
"""Train and evaluate ResNet v1.5 image classifiers with DALI data and Horovod.

One process per worker; `./runner -n N` starts N of them through horovodrun (a single process
also works on its own). Modes: `train`, `val` (evaluate a checkpoint) and `train_val`
(evaluate after every epoch). Everything a run writes goes to `--workspace`: `config.json`,
`log.jsonl` and `train.log`, `checkpoints/epoch-NNNN/`, and `<model-prefix>-symbol.json` /
`-NNNN.params` for deployment.
"""
import argparse
import logging
import os
import sys

# MXNet sizes its CPU thread pool once, at import, and by default takes half the cores. Each
# worker gets its share of all cores instead (horovodrun says how many workers share a host).
_WORKERS_HERE = int(os.environ.get("HOROVOD_LOCAL_SIZE", "1"))
os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS_HERE)))

import mxnet as mx  # noqa: E402

import models
from data.loaders import BACKENDS, DataError, LoaderConfig, build_loader
from engine.checkpoint import CheckpointError, latest_checkpoint
from engine.cli import image_shape, positive_int
from engine.distributed import init_distributed
from engine.files import write_json
from engine.hooks import CheckpointHook, EvalHook, SyncBatchNormStatsHook
from engine.logger import LoggerHook
from engine.loop import TrainLoop
from engine.loss_scaler import LossScaler
from engine.optimization import (exclude_from_weight_decay, make_lr_schedule,
                                 scaled_learning_rate, sgd_params)
from engine.tasks.classification import ClassificationTask
from engine.weights import load_weights, read_trainer_states, restore_trainer_states

log = logging.getLogger("train")


class UsageError(Exception):
    """A combination of arguments that cannot run; the message says what to change."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
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
    g.add_argument("--arch", default="resnet50_v1.5", choices=models.list_models())
    g.add_argument("--num-classes", type=positive_int, default=1000)
    g.add_argument("--dtype", choices=("float32", "float16"), default=None,
                   help="float16 on GPUs (default there), float32 otherwise")
    g.add_argument("--layout", choices=("NCHW", "NHWC"), default="NCHW",
                   help="NHWC is faster with float16 on Tensor Core GPUs")
    g.add_argument("--zero-init-residual", action="store_true",
                   help="start every residual branch's last BatchNorm gamma at zero")
    g = p.add_argument_group("data")
    g.add_argument("--data-root", default="/data/imagenet/train-val-recordio-passthrough",
                   help="folder with train.rec/.idx and val.rec/.idx")
    g.add_argument("--data-backend", choices=BACKENDS, default=None,
                   help="dali-gpu where there is a GPU, dali-cpu otherwise")
    g.add_argument("--batch-size", type=positive_int, default=208, help="per worker")
    g.add_argument("--image-shape", type=image_shape, default=(3, 224, 224),
                   help="network input C,H,W")
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
    g.add_argument("--hw-decoder-load", type=float, default=0.65,
                   help="dali-gpu: share of JPEGs for the hardware decoder")
    g = p.add_argument_group("optimisation")
    g.add_argument("--num-epochs", type=positive_int, default=90)
    g.add_argument("--lr", type=float, default=0.256,
                   help="learning rate for a global batch of 256, scaled linearly")
    g.add_argument("--lr-schedule", choices=("cosine", "step"), default="cosine")
    g.add_argument("--lr-steps", default="30,60,80", help="epochs of the step schedule")
    g.add_argument("--lr-factor", type=float, default=0.1, help="step schedule decay")
    g.add_argument("--warmup-epochs", type=float, default=5)
    g.add_argument("--momentum", type=float, default=0.875)
    g.add_argument("--wd", type=float, default=3.0517578125e-05,
                   help="weight decay (not on BatchNorm and biases)")
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
    return p.parse_args(argv)


def select_device(args, dist):
    """The worker's context and GPU id, and the resolved dtype and data backend."""
    gpus = mx.context.num_gpus()
    dtype = args.dtype or ("float16" if gpus else "float32")
    try:
        models.check_device_support(dtype, args.layout, gpus)
    except ValueError as error:
        raise UsageError(str(error)) from None
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


def loader_config(args, dist, device_id, dtype, backend):
    threads = args.data_threads or max(1, (os.cpu_count() or 1) // dist.local_size)
    return LoaderConfig(
        backend=backend, data_root=args.data_root, batch_size=args.batch_size,
        image_shape=args.image_shape, dtype=dtype, layout=args.layout, rank=dist.rank,
        world_size=dist.size, device_id=device_id, num_threads=threads, seed=args.seed,
        random_area=(args.min_random_area, args.max_random_area),
        random_aspect_ratio=(args.min_random_aspect_ratio, args.max_random_aspect_ratio),
        resize_shorter=args.resize_shorter, hw_decoder_load=args.hw_decoder_load,
        pad_channels=args.pad_channels, num_classes=args.num_classes,
        num_examples=args.num_examples)


def steps_per_epoch(args, dist, train_loader):
    steps = len(train_loader)
    if args.num_examples:
        steps = min(steps, args.num_examples // (args.batch_size * dist.size))
    if steps < 1:
        raise UsageError(f"--num-examples {args.num_examples} is less than one global batch "
                         f"({args.batch_size} x {dist.size} workers)")
    return steps


def make_loss_scaler(args, dtype):
    text = args.loss_scale or ("dynamic" if dtype == "float16" else "1")
    if text == "dynamic":
        return LossScaler(init_scale=2.0 ** 15, dynamic=True)
    try:
        return LossScaler(init_scale=float(text))
    except ValueError:
        raise UsageError(f"--loss-scale must be 'dynamic' or a number, got {text!r}") from None


def train(args, dist, net, task, cfg, checkpoint, config):
    worker_state = _worker_state(checkpoint, dist)
    train_loader = build_loader(cfg, "train", checkpoint=worker_state.get("loader"))
    val_loader = build_loader(cfg, "val") if args.mode == "train_val" else None
    steps = steps_per_epoch(args, dist, train_loader)
    global_batch = args.batch_size * dist.size
    lr = scaled_learning_rate(args.lr, global_batch)
    schedule = make_lr_schedule(args.lr_schedule, lr, steps, args.num_epochs,
                                args.warmup_epochs, [int(e) for e in args.lr_steps.split(",")],
                                args.lr_factor)
    params = net.collect_params()
    exclude_from_weight_decay(params)
    trainer = dist.make_trainer(params, "sgd", sgd_params(schedule, args.momentum, args.wd,
                                                          config["dtype"] == "float16"))
    if checkpoint:
        states = read_trainer_states(checkpoint) if dist.is_main else None
        restore_trainer_states(trainer, dist.broadcast_object(states, "resume.trainer_states"))
    task.load_state_dict(worker_state.get("task", {}))
    hooks = [SyncBatchNormStatsHook(dist)]
    if val_loader is not None:
        hooks.append(EvalHook(val_loader, dist, every=args.eval_every))
    hooks.append(LoggerHook(dist, os.path.join(args.workspace, "log.jsonl"),
                            args.log_interval,
                            progress={"auto": None, "on": True, "off": False}[args.progress]))
    if args.save_frequency > 0:
        hooks.append(CheckpointHook(os.path.join(args.workspace, "checkpoints"), dist,
                                    train_loader, config, args.save_frequency,
                                    args.keep_checkpoints,
                                    os.path.join(args.workspace, args.model_prefix)))
    loop = TrainLoop(net, trainer, task, train_loader, steps, args.batch_size,
                     make_loss_scaler(args, config["dtype"]), hooks, dist=dist)
    start_epoch = 0
    if checkpoint:
        loop.load_state_dict(checkpoint.state["loop"])
        start_epoch = checkpoint.state["loop"]["epoch"]
    log.info("training %s: %d workers x batch %d, %d steps/epoch, lr %.4f (%s), %s, epochs "
             "%d-%d", args.arch, dist.size, args.batch_size, steps, lr, args.lr_schedule,
             config["dtype"], start_epoch, args.num_epochs - 1)
    loop.run(start_epoch, args.num_epochs)
    return loop.metrics


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
        ctx, device_id, dtype, backend = select_device(args, dist)
        config = dict(vars(args), dtype=dtype, data_backend=backend, workers=dist.size,
                      mxnet=mx.__version__, context=str(ctx))
        if dist.is_main:
            write_json(os.path.join(args.workspace, "config.json"), config)
        wants_checkpoint = args.resume or (args.mode == "val" and not args.load)
        checkpoint = find_resume_checkpoint(args, dist) if wants_checkpoint else None
        net = models.build_network(args.arch, args.num_classes, args.layout, args.image_shape,
                                   dtype, ctx, seed=args.seed,
                                   zero_init_residual=args.zero_init_residual)
        weights = args.load or (checkpoint.params_path if checkpoint else None)
        if weights:
            load_weights(net, weights, ctx)
        dist.broadcast_parameters(net.collect_params())
        task = ClassificationTask(args.num_classes, ctx, args.label_smoothing, args.mixup,
                                  seed=args.seed + dist.rank)
        cfg = loader_config(args, dist, device_id, dtype, backend)
        if args.mode == "val":
            metrics = task.evaluate(net, build_loader(cfg, "val"), dist)
        else:
            metrics = train(args, dist, net, task, cfg, checkpoint, config)
    except (UsageError, DataError, CheckpointError) as error:
        log.error("%s", error)
        return 2
    if dist.is_main:
        _report(args, metrics)
    return 0


def _report(args, metrics):
    if metrics:
        log.info("validation: top-1 %.2f%%  top-5 %.2f%%  (%d images)", metrics["top1"],
                 metrics["top5"], metrics["samples"])
    log.info("workspace: %s (checkpoints in %s, logs in %s)", os.path.abspath(args.workspace),
             os.path.join(args.workspace, "checkpoints"), os.path.join(args.workspace, "log.jsonl"))
    if args.report:
        write_json(args.report, {"config": vars(args), "metrics": metrics,
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
