#!/usr/bin/env python3
"""Training and inference throughput/latency sweeps, and a side-by-side data-loader comparison.

    python benchmark.py -n 1,2 -b 16,32 -o runs/rn50.json                   # train + infer
    python benchmark.py --only-inference -b 1,8,32                           # inference only
    python benchmark.py -n 1,4,8 -b 208 --dtype float16 --data-backend dali-gpu \\
        --data-root /data/imagenet/train-val-recordio-passthrough -e 8 -w 4
    python benchmark.py --make-data demo_data/photos --num-images 1024      # photo-like .rec
    python benchmark.py --loaders --data-root demo_data/photos -b 64         # loaders alone
    python benchmark.py --compare runs/old.json runs/new.json                # ratios b/a
    python benchmark.py --arch ssd320_resnet50_fpn --data-root /data/coco2017 -b 8  # SSD
    python benchmark.py --loaders --arch ssd320_resnet50_fpn --data-root DIR -b 8  # vs gluoncv
    python benchmark.py --only-inference --runtime onnxruntime --onnx rn50-fp16.onnx \\
        -b 1,32,208 --data-backend dali-gpu --data-root DIR                  # ONNX Runtime
    python benchmark.py --arch maskrcnn_r50_fpn --data-root DIR --min-size 320 --max-size 320
    python benchmark.py --loaders --arch maskrcnn_r50_fpn --data-root DIR --min-size 320 \\
        --max-size 320                                                       # vs gluoncv
    python benchmark.py --peer gluoncv --arch maskrcnn_r50_fpn --data-root DIR \\
        --min-size 320 --max-size 320                    # train + infer beside gluoncv's

Training runs the real training path, ./runner (horovodrun + train.py), once per (workers,
batch) for WARMUP + EPOCHS epochs of ITERATIONS iterations, and reports images/s = global
batch / mean iteration time of the counted epochs (data wait included), with scaling against
one worker. Inference runs in this process on one device (the first GPU, else the CPU), with
the network hybridized as deployed, and reports images/s and per-batch latency percentiles.
Without --only-inference/--only-training both run, at the same batch sizes when -b is given.

--arch may name a classifier or a detector (`python train.py -h` lists them); the model's
task sets the defaults of the data root, input shape, classes and batch sizes (a detector:
a COCO-layout data root, its own input size, 80 classes for inference, train.py's step-based
recipe for training). A detector's inference latency includes its post-processing
(`SSDFPN.detect`: box decoding, class-wise NMS, the best detections), and its synthetic
training data is one random batch of images with a few boxes each (the classes and epoch
length come from the data root's COCO json).

Mask R-CNN (maskrcnn_r50_fpn, maskrcnn_r18_fpn) resizes as its recipe does: shorter side
--min-size, longer side at most --max-size (800 and 1333; train.py's flags, passed on). It
trains on real data only (dali-cpu, the default on CPU, or dali-gpu), batch 1 on CPU, 2 per
GPU, at --lr 0 unless --lr or --backbone-weights is given: from random weights its losses
become NaN within a few steps, and a step at 0 does the same work. Its inference latency
includes what a user's inference does: the network's detection and mask head, then every
detection's mask pasted into the image (`paste_masks`, through ops/), timed at a score threshold of 0 so
that a randomly initialised network gives the full 100 detections
(`benchmarking.mask_rcnn_inference` says why). Its synthetic inference input is a 640x480
image (COCO's common shape) resized that way and padded to a multiple of 32 (320/320: 240x320
in 256x320), or exactly --image-shape. --peer gluoncv trains and runs gluoncv's own
mask_rcnn_fpn_resnet50_v1b_coco beside it, as gluoncv's train_mask_rcnn.py does, on the same
images, sizes, batch (1) and cores, and reports the ratios (`benchmarking.mask_rcnn_peer`).

--runtime onnxruntime times inference through ONNX Runtime instead of MXNet: the CUDA
provider where ONNX Runtime has one (onnxruntime-gpu), else the CPU provider, with IO binding
(`benchmarking.onnx_inference`). It runs the file of --onnx (`python -m deploy.onnx_export`
writes one; MXNet is then not needed, as on Hopper GPUs), or exports --arch (random weights,
--dtype) into the logs folder first. Data: synthetic, dali-gpu (decoded on the GPU, handed
over in place) or dali-cpu.

Note on -e: here it counts the measured epochs, and -w epochs run before them; NVIDIA's
tables used `-e 12 -w 4` meaning 12 epochs of which 4 warm-up, which is `-e 8 -w 4` here.

Results go to a JSON report (-o), a plot next to it (.png), per-run logs (-logs/), and a
table printed at the end. Flags not listed here go to ./runner and through it to train.py
(`./runner -h`, `python train.py -h`), e.g. --lr or --data-threads, for the training sweep;
where nothing would use them (--only-inference, --loaders, --compare, --make-data) they are
an error. Exit status: 0 when every case ran, 1 when some failed (each failure is named, the
others are still measured), 2 for usage errors.
"""
import argparse
import functools
import os
import shlex
import sys

# Passive OpenMP threads, as train.py has them (why: there), before anything imports MXNet.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from benchmarking import mask_rcnn_cli  # noqa: E402
from benchmarking.cli import (default_backend, inference_includes, run_coco_loaders,  # noqa: E402
                              say_loader, say_round, sweep_problem, sweep_settings,
                              usage_error, warn_if_busy)
from benchmarking.settings import DEFAULT_DATA_ROOT, Settings  # noqa: E402
from engine.cli import image_shape, int_list, non_negative_int, positive_int  # noqa: E402

_HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL = "resnet50_v1.5"
INFERENCE_BATCHES_CPU = [1, 2, 4, 8, 16, 32, 64]
INFERENCE_BATCHES_GPU = [1, 2, 4, 8, 16, 32, 64, 96, 128, 192, 208]
TRAINING_BATCHES_CPU = [16, 32]
TRAINING_BATCHES_GPU = {"float16": [208], "float32": [96]}  # NVIDIA's V100 runs
# Detection (SSD320 v1.2: batch 32 per GPU); CPU batches stay small, an SSD step being slow.
DETECTION_INFERENCE_BATCHES_CPU = [1, 2, 4, 8]
DETECTION_INFERENCE_BATCHES_GPU = [1, 2, 4, 8, 16, 32, 64]
DETECTION_TRAINING_BATCHES_CPU = [8]
DETECTION_TRAINING_BATCHES_GPU = {"float16": [32], "float32": [32]}
DETECTION_LOADER_BATCH = 8
DETECTION_CLASSES = 80  # COCO's, for inference (training takes the json's)
# Mask R-CNN's batch sizes: benchmarking.mask_rcnn_cli.


def parse_args(argv):
    p = argparse.ArgumentParser(prog="benchmark.py", description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("what to measure (default: training, then inference)")
    g.add_argument("--only-inference", action="store_true",
                   help="inference sweep only (one device; -n is not used)")
    g.add_argument("--only-training", action="store_true", help="training sweep only")
    g.add_argument("--loaders", action="store_true",
                   help="time the data loaders alone (dali-cpu, dali-gpu where there is a GPU, "
                        "mxnet ImageRecordIter, Gluon DataLoader) on DATA_ROOT/train.rec, and "
                        "the JPEG decode ceiling: E rounds in which each loader in turn is "
                        "started, warmed up (W x I batches in the first round, 4 later) and "
                        "timed over I batches; batch = the first of -b (default 64). With a "
                        "detection --arch: the project's DALI SSD training pipeline with the "
                        "training step's anchor targets against gluoncv's SSD data path "
                        "(SSDDefaultTrainTransform with the same anchors and its target "
                        "generator, in a Gluon DataLoader with one worker per core) on "
                        "DATA_ROOT's train2017, at the input size of --image-shape (default "
                        f"batch {DETECTION_LOADER_BATCH}). With a Mask R-CNN --arch: the "
                        "project's DALI Mask R-CNN pipeline with the polygon rows and RPN "
                        "targets (models.rpn.rpn_targets) against gluoncv's "
                        "MaskRCNNDefaultTrainTransform in its DataLoader (and in this process, "
                        "without workers), at --min-size / --max-size (default batch "
                        f"{mask_rcnn_cli.LOADER_BATCH})")
    g.add_argument("--peer", choices=("gluoncv",),
                   help="with a Mask R-CNN --arch: train and run gluoncv's "
                        "mask_rcnn_fpn_resnet50_v1b_coco (random init, as its "
                        "train_mask_rcnn.py) beside the project's on the same DATA_ROOT "
                        "images, sizes, batch 1 and cores: training img/s and data-wait share "
                        "(W + E epochs of I steps each), inference latency with mask pasting; "
                        "one report with the ratios (--only-training / --only-inference pick "
                        "one half)")
    g.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"),
                   help="print the ratios B/A of images/s and latency of two reports, per "
                        "case, and exit")
    g.add_argument("--make-data", metavar="DIR",
                   help="write photo-like 500x375 JPEGs to DIR/train.rec/.idx (--num-images) "
                        "and DIR/val.rec/.idx (a quarter as many), and exit")
    g.add_argument("--num-images", type=positive_int, default=1024,
                   help="images for --make-data (default 1024)")
    g = p.add_argument_group("sweep")
    g.add_argument("-n", "--num-workers", type=int_list, default=[1], metavar="N1,N2,...",
                   help="training worker counts: GPUs, or CPU processes (default 1)")
    g.add_argument("-b", "--batch-sizes", type=int_list, metavar="B1,B2,...",
                   help="batch sizes per worker (default: training 16,32 on CPU, 208 "
                        "float16 / 96 float32 on GPU; inference 1,2,4,8,16,32,64 on CPU, up "
                        "to 208 on GPU; --loaders 64)")
    g.add_argument("-i", "--iterations", type=positive_int, default=100,
                   help="iterations (batches) per epoch (default 100)")
    g.add_argument("-e", "--epochs", type=positive_int, default=3,
                   help="epochs measured (default 3)")
    g.add_argument("-w", "--warmup", type=non_negative_int, default=1,
                   help="warm-up epochs run first and not counted (default 1)")
    g.add_argument("--num-examples", type=positive_int,
                   help="cap on the samples of an epoch (all workers together); an epoch "
                        "then has min(I, NUM_EXAMPLES // global batch) iterations")
    g = p.add_argument_group("model and data")
    g.add_argument("--arch", "--model", dest="model", metavar="NAME",
                   help="a name of the models registry (`python train.py -h` lists them): a "
                        "classifier, resnet18_v1.5 ... resnet152_v1.5, a detector, e.g. "
                        "ssd320_resnet50_fpn, ssd128_resnet18_fpn64, or Mask R-CNN, "
                        "maskrcnn_r50_fpn, maskrcnn_r18_fpn; its task sets the by-task "
                        f"defaults (default {DEFAULT_MODEL})")
    g.add_argument("--dtype", choices=("float32", "float16"),
                   help="float16 (default where MXNet sees a GPU) or float32 (default "
                        "otherwise; float16 needs a GPU)")
    g.add_argument("--data-backend", choices=("synthetic", "dali-cpu", "dali-gpu", "mxnet"),
                   help="synthetic (default: one fixed batch on the device, compute alone) or "
                        "real data from DATA_ROOT: training reads train.rec, inference "
                        "val.rec, and the data time counts (detection: train2017 and "
                        "val2017; its synthetic training batch still takes the classes and "
                        "epoch length from DATA_ROOT's json; Mask R-CNN: default dali-cpu, "
                        "or dali-gpu on a GPU, synthetic for inference only)")
    g.add_argument("--data-root",
                   help=f"classification: folder with train.rec/.idx and val.rec/.idx "
                        f"(default {DEFAULT_DATA_ROOT}); detection: a COCO-layout folder, "
                        f"annotations/instances_{{train,val}}2017.json with train2017/ and "
                        f"val2017/ (default: train.py's, `./runner -h`)")
    g.add_argument("--image-shape", type=image_shape,
                   help="network input C,H,W (default 3,224,224; a detector's own input "
                        "size, e.g. 3,320,320 for ssd320_*; Mask R-CNN: its synthetic "
                        "inference input, sides multiples of 32, default from --min-size / "
                        "--max-size); --loaders crops H,W")
    g.add_argument("--runtime", choices=("mxnet", "onnxruntime"), default="mxnet",
                   help="what runs inference: MXNet (default) or ONNX Runtime (with "
                        "--only-inference; CUDA provider where there is one)")
    g.add_argument("--onnx", metavar="FILE",
                   help="--runtime onnxruntime: the exported file to run (its input sets "
                        "the shape and dtype); default: export --arch with random weights")
    g.add_argument("--layout", choices=("NCHW", "NHWC"), default="NCHW",
                   help="NHWC is faster with float16 on Tensor Core GPUs (default NCHW)")
    g.add_argument("--min-size", type=positive_int,
                   help="Mask R-CNN: shorter image side (default 800, the recipe's)")
    g.add_argument("--max-size", type=positive_int,
                   help="Mask R-CNN: longest allowed longer side (default 1333)")
    g.add_argument("--num-classes", type=positive_int,
                   help=f"default 1000; a detector's or Mask R-CNN's inference: "
                        f"{DETECTION_CLASSES} (COCO's), its training takes the classes of the "
                        f"COCO json")
    g = p.add_argument_group("output")
    g.add_argument("-o", "--output",
                   help="JSON report; the plot goes next to it as .png and the runs' logs "
                        "into <name>-logs/ (default runs/benchmark.json, runs/loaders.json "
                        "for --loaders, runs/detection_loaders.json for --loaders with a "
                        "detector, runs/mask_rcnn_loaders.json with Mask R-CNN, "
                        "runs/mask_rcnn_vs_gluoncv.json for --peer)")
    g.add_argument("--verbose", action="store_true",
                   help="echo all output of the training runs, not only epoch summaries")
    g.add_argument("--runner", default=os.path.join(_HERE, "runner"), help=argparse.SUPPRESS)
    args, runner_args = p.parse_known_args(argv)
    problem = _conflicting_flags(args, runner_args)
    if problem:
        p.error(problem)
    return args, runner_args


def _conflicting_flags(args, runner_args):
    """What makes this command line one that would ignore a flag it was given, or None."""
    if args.only_inference and args.only_training:
        return "--only-inference and --only-training exclude each other"
    if runner_args and (args.only_inference or args.compare or args.make_data or args.loaders):
        # Only training runs ./runner; silently dropping a flag would measure something else.
        return (f"unrecognized arguments: {' '.join(runner_args)} (flags not listed in "
                f"--help go to ./runner for the training sweep, and none runs here)")
    if args.only_inference and args.num_workers != [1]:
        return "-n is the training sweep's; inference runs in this process on one device"
    if args.peer and (args.loaders or args.compare or args.make_data or
                      args.runtime != "mxnet"):
        return "--peer runs its own training and inference cases; drop --loaders, " \
               "--compare, --make-data and --runtime"
    if args.peer and (args.num_workers != [1] or args.batch_sizes):
        return "--peer compares one worker at batch 1 (gluoncv's script's per-device batch); " \
               "drop -n and -b"
    if args.onnx and args.runtime != "onnxruntime":
        return "--onnx is the file --runtime onnxruntime runs; add --runtime onnxruntime"
    if args.runtime == "onnxruntime":
        if not args.only_inference:
            return "--runtime onnxruntime measures inference only; add --only-inference"
        if args.data_backend == "mxnet":
            return ("--data-backend mxnet reads through MXNet; with --runtime onnxruntime "
                    "choose synthetic, dali-cpu or dali-gpu")
        if args.layout != "NCHW":
            return ("an exported file takes NCHW; ONNX Runtime's CUDA provider picks its NHWC "
                    "kernels itself (drop --layout)")
        if args.onnx and (args.dtype or args.image_shape or args.num_classes):
            return "--onnx sets the input shape, dtype and classes; drop --dtype, " \
                   "--image-shape and --num-classes"
    return None


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args, runner_args = parse_args(argv)
    command = shlex.join(["python", "benchmark.py", *argv])
    if args.compare:
        return compare_reports(*args.compare)
    if args.make_data:
        return make_data(args.make_data, args.num_images, args.num_classes or 1000)
    # Looking --arch up imports MXNet, which sizes its thread pool then; the classifier's
    # loader comparison (no --arch) leaves MXNet's threads and its import alone.
    runner_env, threads = (_mxnet_threads(_cores()) if not args.loaders or args.model
                           else (None, None))
    if args.onnx:
        return run_onnx_file_sweep(args, command, threads)
    try:
        resolve_task_defaults(args)
    except ValueError as error:  # an unknown --arch: the message lists the valid names
        return usage_error(f"--arch: {error}")
    problem = mask_rcnn_cli.flag_problem(args)
    if problem:
        return usage_error(problem)
    runner_args = mask_rcnn_cli.runner_flags(args, runner_args)
    if args.peer:
        return mask_rcnn_cli.run_peer(args, runner_args, command, runner_env, threads)
    if args.loaders:
        if args.task == "detection":
            return run_detection_loaders(args, command, threads)
        if args.task == "instance_segmentation":
            return mask_rcnn_cli.run_loaders(args, command, threads)
        return run_loaders(args, command)
    return run_sweeps(args, runner_args, command, runner_env, threads)


def compare_reports(old_path, new_path):
    from benchmarking.report import format_comparison, read_json
    print(format_comparison(read_json(old_path), read_json(new_path), old_path, new_path))
    return 0


def make_data(folder, num_images, num_classes):
    from benchmarking.photos import make_dataset
    written = make_dataset(folder, num_images, num_classes)
    for split, (count, size) in written.items():
        print(f"{os.path.join(folder, split)}.rec: {count} photo-like 500x375 JPEGs, "
              f"{size / 2 ** 20:.1f} MiB ({size / count / 1024:.0f} KiB each)")
    return 0


def _cores():
    from benchmarking.machine import cpu_cores
    return cpu_cores()


def _mxnet_threads(cores):
    """Let this process's MXNet (inference, the detection loaders' targets) compute on every
    core.

    Without OMP_NUM_THREADS, MXNet takes half the cores on x86, assuming the other half are
    hyper-threads (on a 2-vCPU machine that halves inference speed). The variable must be set
    before MXNet is imported; the runner gets the environment without it, so that it can
    share the cores among its workers. A value the user set is left alone.

    Returns
    -------
    (dict, int)
        The runner's environment and MXNet's thread count here.
    """
    runner_env = dict(os.environ)
    if "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(cores)
    return runner_env, int(os.environ["OMP_NUM_THREADS"])


def run_onnx_file_sweep(args, command, threads):
    """--onnx FILE: ONNX Runtime inference of an exported file, whose input gives the shape
    and dtype. Imports no MXNet."""
    import numpy as np

    from deploy.onnx_runtime import OnnxModel, cuda_provider_available
    try:
        model = OnnxModel(args.onnx, device="cpu")
    except Exception as error:  # not a file, not ONNX, or an input ONNX Runtime cannot take
        return usage_error(f"--onnx {args.onnx}: {error}")
    output_shape = model.session.get_outputs()[0].shape
    settings = Settings(
        model=args.model or os.path.splitext(os.path.basename(args.onnx))[0],
        dtype=np.dtype(model.input_dtype).name, data_backend=args.data_backend or "synthetic",
        data_root=args.data_root or DEFAULT_DATA_ROOT, image_shape=model.input_shape,
        iterations=args.iterations, epochs=args.epochs, warmup=args.warmup,
        num_examples=args.num_examples, num_classes=output_shape[-1], runtime="onnxruntime",
        onnx_path=os.path.abspath(args.onnx))
    del model
    return measure_and_report(args, settings, int(cuda_provider_available()), command, None,
                              threads)


def resolve_task_defaults(args):
    """Fill in the model and the flags whose defaults follow its task (``args.task``).

    Without --arch this imports nothing (the loader comparison runs where MXNet does not);
    a name given is looked up in the registry.

    Raises
    ------
    ValueError
        For a name the registry does not know; the message lists the valid names.
    """
    if args.model is None:
        args.model, args.task = DEFAULT_MODEL, "classification"
    else:
        import models
        args.task = models.model_task(args.model)
    if args.task == "instance_segmentation":
        defaults = dict(mask_rcnn_cli.task_defaults(args), num_classes=DETECTION_CLASSES)
    elif args.task == "detection":
        from engine.options import TASK_DEFAULTS
        defaults = dict(data_root=TASK_DEFAULTS["detection"]["data_root"],
                        image_shape=(3,) + _input_size(args.model),
                        num_classes=DETECTION_CLASSES)
    else:
        defaults = dict(data_root=DEFAULT_DATA_ROOT, image_shape=(3, 224, 224),
                        num_classes=1000)
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def _input_size(model):
    """(height, width) a detector of the registry is built for."""
    import models
    return tuple(models.get_model(model, classes=1).image_size)


def run_loaders(args, command):
    from benchmarking import loaders, machine
    from benchmarking.report import build_report, format_report
    from engine.files import write_json
    from benchmarking.sweep import say
    for name in ("train.rec", "train.idx"):
        if not os.path.isfile(os.path.join(args.data_root, name)):
            return usage_error(f"{os.path.join(args.data_root, name)} does not exist; pass "
                               f"--data-root, or write photo-like data with --make-data DIR")
    load_at_start = warn_if_busy(machine)
    batch = (args.batch_sizes or [64])[0]
    crop = tuple(args.image_shape[1:])
    cores = machine.cpu_cores()
    warmup = args.warmup * args.iterations
    say(sys.stderr, f"loaders on {args.data_root}/train.rec: batch {batch}, crop {crop}, "
                    f"{cores} threads each; {args.epochs} rounds of {args.iterations} timed "
                    f"batches, loaders taking turns ({warmup} warm-up batches first)")

    rows = loaders.compare_loaders(args.data_root, batch, crop, cores, warmup, args.iterations,
                                   args.epochs, on_result=say_loader, on_round=say_round)
    info = machine.machine_info()
    report = build_report("loaders", rows, info, command,
                          device=machine.device_description(info, 0),
                          data_root=os.path.abspath(args.data_root), batch_size=batch,
                          crop=list(crop), threads=cores, warmup_batches=warmup,
                          rounds=args.epochs, round_batches=args.iterations,
                          load_average_at_start=load_at_start)
    output = args.output or os.path.join("runs", "loaders.json")
    write_json(output, report)
    print(format_report(report))
    print(f"\nreport: {output}")
    return 1 if report["failed"] else 0


def run_detection_loaders(args, command, threads):
    """--loaders with a detector: the SSD training data path against gluoncv's; returns the
    exit status."""
    from benchmarking import detection_loaders
    from models.ssd import retinanet_anchors
    _, height, width = args.image_shape

    def sizes():
        anchors = len(retinanet_anchors(height))
        return f"{height}x{width}, {anchors} anchors", dict(image_size=height, anchors=anchors)
    return run_coco_loaders(
        args, command, threads, name="SSD", kind="detection-loaders",
        output="detection_loaders.json", default_batch=DETECTION_LOADER_BATCH,
        compare=functools.partial(detection_loaders.compare_detection_loaders,
                                  image_size=height), sizes=sizes,
        problem=None if height == width else (f"SSD takes a square input; got --image-shape "
                                              f"{','.join(map(str, args.image_shape))}"))


def run_sweeps(args, runner_args, command, runner_env, threads):
    import mxnet as mx
    gpus = mx.context.num_gpus()
    args.data_backend = args.data_backend or default_backend(args.task, gpus)
    problem = sweep_problem(args, runner_args)
    if problem:
        return usage_error(problem)
    if args.runtime == "onnxruntime":
        from deploy.onnx_runtime import cuda_provider_available
        gpus = int(cuda_provider_available())
    settings = sweep_settings(args, runner_args, gpus)
    if args.runtime == "onnxruntime":
        settings.onnx_path = _export_for_benchmark(settings, _output(args))
    return measure_and_report(args, settings, gpus, command, runner_env, threads)


def _export_for_benchmark(settings, output):
    """Export the registry's `settings.model` (random weights, `settings.dtype`) to ONNX
    next to the report; returns the file's path."""
    import mxnet as mx

    import models
    from deploy.onnx_export import export_onnx
    from benchmarking.sweep import say
    path = os.path.join(f"{os.path.splitext(output)[0]}-logs",
                        f"{settings.model}-{settings.dtype}.onnx")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    say(sys.stderr, f"exporting {settings.model} ({settings.dtype}, random weights) to {path}")
    net = models.build_network(settings.model, settings.num_classes, "NCHW",
                               settings.image_shape, "float32", mx.cpu())
    return export_onnx(net, settings.image_shape, path, settings.dtype)


def _output(args):
    return args.output or os.path.join("runs", "benchmark.json")


def measure_and_report(args, settings, gpus, command, runner_env, threads):
    """Run the sweeps of `settings`, then write the JSON report and its plot and print the
    table; returns the exit status."""
    from benchmarking import machine
    from benchmarking.report import build_report, format_report, plot
    from engine.files import write_json
    from benchmarking.stats import add_scaling
    load_at_start = warn_if_busy(machine)
    output = _output(args)
    stem = os.path.splitext(output)[0]
    rows, interrupted = [], False
    try:
        for row in _sweep_cases(args, settings, gpus, f"{stem}-logs", runner_env):
            rows.append(row)
    except KeyboardInterrupt:
        interrupted = True
        print("benchmark.py: interrupted; reporting the cases measured so far", file=sys.stderr)
    kind = [m for m, skip in (("training", args.only_inference),
                              ("inference", args.only_training)) if not skip]
    info = machine.machine_info()
    extra = {}
    if settings.task != "classification" and not args.only_training:
        extra["inference_includes"] = inference_includes(settings)
    if settings.runtime == "onnxruntime":
        import onnxruntime
        extra["inference_runtime"] = (
            f"ONNX Runtime {onnxruntime.__version__}, "
            f"{'CUDA' if gpus else 'CPU'} provider, IO binding")
    report = build_report("+".join(kind), add_scaling(rows), info, command,
                          model=settings.model, task=settings.task, dtype=settings.dtype,
                          device=machine.device_description(info, gpus),
                          data_backend=settings.data_backend, settings=settings.as_dict(),
                          inference_threads=threads, load_average_at_start=load_at_start,
                          interrupted=interrupted, **extra)
    write_json(output, report)
    print(format_report(report))
    print(f"\nreport: {output}")
    try:
        plot(report, f"{stem}.png")
        print(f"plot:   {stem}.png")
    except Exception as error:  # a missing matplotlib must not lose the measurements
        print(f"no plot: {error}", file=sys.stderr)
    return 130 if interrupted else 1 if report["failed"] else 0


def _sweep_cases(args, settings, gpus, log_dir, runner_env):
    """Result rows of the training sweep, then of the inference sweep, as they come."""
    from benchmarking.sweep import inference_sweep, training_sweep
    if not args.only_inference:
        batches = args.batch_sizes or _default_batches("training", settings, gpus)
        yield from training_sweep(settings, args.num_workers, batches, log_dir, args.runner,
                                  verbose=args.verbose, env=runner_env)
    if not args.only_training:
        ignored = (["-n"] if args.num_workers != [1] else []) + list(settings.runner_args)
        if ignored:
            print(f"benchmark.py: inference runs in this process on one device; "
                  f"{' '.join(ignored)} only apply to training", file=sys.stderr)
        batches = args.batch_sizes or _default_batches("inference", settings, gpus)
        yield from inference_sweep(settings, batches)


def _default_batches(mode, settings, gpus):
    """The batch sizes swept when -b is not given, by mode, task and device."""
    if settings.instance_segmentation:
        return mask_rcnn_cli.default_batches(mode, settings.dtype, gpus)
    detection = settings.detection
    if mode == "training":
        if gpus:
            table = DETECTION_TRAINING_BATCHES_GPU if detection else TRAINING_BATCHES_GPU
            return table[settings.dtype]
        return DETECTION_TRAINING_BATCHES_CPU if detection else TRAINING_BATCHES_CPU
    if gpus:
        return DETECTION_INFERENCE_BATCHES_GPU if detection else INFERENCE_BATCHES_GPU
    return DETECTION_INFERENCE_BATCHES_CPU if detection else INFERENCE_BATCHES_CPU


if __name__ == "__main__":
    sys.exit(main())
