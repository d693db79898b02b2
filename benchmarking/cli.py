"""What benchmark.py's commands share: the `Settings` and the usage problems of a sweep from
the parsed flags, the COCO data checks, the frame of a detector's ``--loaders`` comparison,
the progress lines and the report.

These take the argparse namespace (the command line's layer, translating for the modules that
measure); like those, they import MXNet only when called.
"""
import os
import sys

from benchmarking.settings import Settings


def usage_error(problem):
    """Say `problem` as argparse says its errors; returns the exit status of a usage error."""
    print(f"benchmark.py: error: {problem}", file=sys.stderr)
    return 2


def default_backend(task, gpus):
    """Synthetic data, except for Mask R-CNN, which trains on real data only."""
    if task != "instance_segmentation":
        return "synthetic"
    return "dali-gpu" if gpus else "dali-cpu"


def sweep_problem(args, runner_args, real_inference=True):
    """What makes the sweep of `args` impossible (a usage error), or None; `real_inference`:
    whether inference reads the data backend's data (--peer's does not)."""
    if args.task == "classification":
        return None
    if args.runtime == "onnxruntime":
        return ("--runtime onnxruntime times classifiers; a detector exports its raw outputs "
                "(python -m deploy.onnx_export) but its post-processing is MXNet's")
    if args.task == "instance_segmentation" and not args.only_inference and (
            args.data_backend not in ("dali-cpu", "dali-gpu")):
        return (f"Mask R-CNN trains on real data only: --data-backend dali-cpu or dali-gpu "
                f"(or --only-inference for {args.data_backend} inference)")
    if args.task == "instance_segmentation" and args.data_backend == "mxnet":
        return "Mask R-CNN reads COCO data through DALI: --data-backend dali-cpu or dali-gpu"
    return check_coco_data(args, runner_args, real_inference)


def sweep_settings(args, runner_args, gpus):
    """The `Settings` of a sweep (or of --peer) from the resolved flags."""
    return Settings(model=args.model, task=args.task,
                    dtype=args.dtype or ("float16" if gpus else "float32"),
                    data_backend=args.data_backend, data_root=args.data_root,
                    image_shape=args.image_shape, iterations=args.iterations,
                    epochs=args.epochs, warmup=args.warmup, num_examples=args.num_examples,
                    layout=args.layout, num_classes=args.num_classes,
                    runner_args=tuple(runner_args), detect_options=detect_options(args.task),
                    runtime=args.runtime, min_size=getattr(args, "min_size", None),
                    max_size=getattr(args, "max_size", None),
                    image_hw=getattr(args, "image_hw", None))


def detect_options(task):
    """The post-processing options of `task`'s inference: train.py's defaults (the recipe's),
    except Mask R-CNN's score threshold, 0 (`benchmarking.mask_rcnn_inference` says why);
    none for classification."""
    from engine.options import TASK_DEFAULTS, build_parser
    if task == "classification":
        return {}
    parser = build_parser(add_help=False)
    score = 0.0 if task == "instance_segmentation" else parser.get_default("score_threshold")
    return {"score_thresh": score, "nms_thresh": TASK_DEFAULTS[task]["nms_threshold"],
            "max_detections": parser.get_default("max_detections")}


def inference_includes(settings):
    """What a detector's inference latency includes, for the report."""
    options = ", ".join(f"{k} {v}" for k, v in settings.detect_options.items())
    if settings.instance_segmentation:
        height, width = settings.image_hw
        return (f"post-processing included: MaskRCNN.forward (proposals, box head, "
                f"class-wise NMS, mask head on the detections; {options}), then paste_masks of "
                f"every detection into its image (one ops/ call per image); synthetic input {height}x{width} in "
                f"{settings.image_shape[1]}x{settings.image_shape[2]}")
    return f"post-processing included: SSDFPN.detect (box decoding, class-wise NMS; {options})"


def check_coco_data(args, runner_args, real_inference=True):
    """What a detection or Mask R-CNN sweep lacks in its COCO data root, or None. Training
    reads the training split (SSD's synthetic data too: its classes and epoch length),
    inference on real data (unless not `real_inference`) val2017."""
    if not args.only_inference:
        problem = missing_coco(args.data_root, [flag_value(runner_args, "--train-split",
                                                           "train2017")])
        if problem:
            return (f"training reads a COCO-layout --data-root (SSD's synthetic data too: "
                    f"the classes and epoch length come from its json): {problem}")
    if real_inference and not args.only_training and args.data_backend != "synthetic":
        problem = missing_coco(args.data_root, ["val2017"])
        if problem:
            return f"detection inference on real data reads val2017: {problem}"
    return None


def missing_coco(data_root, splits):
    """What `data_root` lacks of the COCO splits `splits` (and how to make a set), or None."""
    from data.coco import CocoError, coco_split_paths
    try:
        for split in splits:
            coco_split_paths(data_root, split)
    except CocoError as error:
        return f"{error}; make a demo set with `python -m data.demo detection --out DIR`"
    return None


def flag_value(argv, flag, default):
    """The value of `flag` in the pass-through flags `argv` ("--flag V" or "--flag=V")."""
    value = default
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
    return value


def run_coco_loaders(args, command, threads, *, name, kind, output, default_batch, compare,
                     sizes, problem=None):
    """--loaders with a detector: a task's DALI training data path against gluoncv's, on the
    training split of DATA_ROOT, in the rounds of -e, -w and -i; returns the exit status.

    Parameters
    ----------
    args : argparse.Namespace
        benchmark.py's resolved flags.
    command : str
        The command line, for the report.
    threads : int
        MXNet's threads in this process (the targets' computation).
    name : str
        The task as the messages name it ("SSD", "Mask R-CNN").
    kind, output : str
        The report's kind, and its file unless -o gives one.
    default_batch : int
        The batch without -b.
    compare : callable
        The comparison, ``compare(data_root, batch_size=, threads=, warmup_batches=,
        round_batches=, rounds=, on_result=, on_round=)``: the task's sizes bound
        (`functools.partial`), the rows returned.
    sizes : callable
        ``sizes()``: the sizes for the progress line ("128x128, 2046 anchors") and their
        report fields, called once the data root is known to be usable.
    problem : str, optional
        What else makes the flags unusable, said after a data root that is not usable.
    """
    from benchmarking import machine
    from benchmarking.detection_loaders import TRAIN_SPLIT
    from benchmarking.sweep import say
    missing = missing_coco(args.data_root, [TRAIN_SPLIT])
    if missing:
        return usage_error(f"the {name} data paths read a COCO-layout --data-root: {missing}")
    if problem:
        return usage_error(problem)
    load_at_start = warn_if_busy(machine)
    batch = (args.batch_sizes or [default_batch])[0]
    cores = machine.cpu_cores()
    warmup = args.warmup * args.iterations
    text, fields = sizes()
    say(sys.stderr, f"{name} training data on {args.data_root}: batch {batch}, {text}, "
                    f"{cores} DALI threads / gluoncv workers, {threads} MXNet threads; "
                    f"{args.epochs} rounds of {args.iterations} timed batches, loaders taking "
                    f"turns ({warmup} warm-up batches first)")
    rows = compare(args.data_root, batch_size=batch, threads=cores, warmup_batches=warmup,
                   round_batches=args.iterations, rounds=args.epochs, on_result=say_loader,
                   on_round=say_round)
    return write_report(kind, rows, command, args.output or os.path.join("runs", output),
                        data_root=os.path.abspath(args.data_root), batch_size=batch, **fields,
                        threads=cores, mxnet_threads=threads, warmup_batches=warmup,
                        rounds=args.epochs, round_batches=args.iterations,
                        load_average_at_start=load_at_start)


def warn_if_busy(machine):
    """Say when other processes load the machine; returns the load average at the start."""
    warning = machine.busy_warning()
    if warning:
        print(f"benchmark.py: {warning}", file=sys.stderr)
    return machine.load_average()


def say_loader(row):
    """The progress line of a loader's result row."""
    from benchmarking.sweep import say
    what = (f"{row['img_per_s']:.1f} img/s ({row['note']})" if row["status"] == "ok"
            else f"{row['status']}: {row.get('note') or row.get('error')}")
    say(sys.stderr, f"    {row['loader']}: {what}")


def say_round(name, round_number, rounds, img_per_s):
    """The progress line of a loader's turn in a round."""
    from benchmarking.sweep import say
    say(sys.stderr, f"    round {round_number + 1}/{rounds} {name}: {img_per_s:.1f} img/s")


def write_report(kind, rows, command, output, **fields):
    """Write the report of `rows` (with the machine's description) to `output`, print its
    table; returns the exit status."""
    from benchmarking import machine
    from benchmarking.report import build_report, format_report
    from engine.files import write_json
    info = machine.machine_info()
    fields.setdefault("device", machine.device_description(info, 0))
    report = build_report(kind, rows, info, command, **fields)
    write_json(output, report)
    print(format_report(report))
    print(f"\nreport: {output}")
    return 1 if report["failed"] else 0
