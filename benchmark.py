#!/usr/bin/env python3
"""Training and inference throughput/latency sweeps, and a side-by-side data-loader comparison.

    python benchmark.py -n 1,2 -b 16,32 -o runs/rn50.json                   # train + infer
    python benchmark.py --only-inference -b 1,8,32                           # inference only
    python benchmark.py -n 1,4,8 -b 208 --dtype float16 --data-backend dali-gpu \\
        --data-root /data/imagenet/train-val-recordio-passthrough -e 8 -w 4
    python benchmark.py --make-data demo_data/photos --num-images 1024      # photo-like .rec
    python benchmark.py --loaders --data-root demo_data/photos -b 64         # loaders alone
    python benchmark.py --compare runs/old.json runs/new.json                # ratios b/a

Training runs the real training path, ./runner (horovodrun + train.py), once per (workers,
batch) for WARMUP + EPOCHS epochs of ITERATIONS iterations, and reports images/s = global
batch / mean iteration time of the counted epochs (data wait included), with scaling against
one worker. Inference runs in this process on one device (the first GPU, else the CPU), with
the network hybridized as deployed, and reports images/s and per-batch latency percentiles.
Without --only-inference/--only-training both run, at the same batch sizes when -b is given.

Note on -e: here it counts the measured epochs, and -w epochs run before them; NVIDIA's
tables used `-e 12 -w 4` meaning 12 epochs of which 4 warm-up, which is `-e 8 -w 4` here.

Results go to a JSON report (-o), a plot next to it (.png), per-run logs (-logs/), and a
table printed at the end. Flags not listed here go to ./runner and through it to train.py
(`./runner -h`, `python train.py -h`), e.g. --lr or --data-threads. Exit status: 0 when every
case ran, 1 when some failed (each failure is named, the others are still measured), 2 for
usage errors.
"""
import argparse
import os
import shlex
import sys

from benchmarking.settings import DEFAULT_DATA_ROOT, Settings
from engine.cli import image_shape, int_list, non_negative_int, positive_int

_HERE = os.path.dirname(os.path.abspath(__file__))
INFERENCE_BATCHES_CPU = [1, 2, 4, 8, 16, 32, 64]
INFERENCE_BATCHES_GPU = [1, 2, 4, 8, 16, 32, 64, 96, 128, 192, 208]
TRAINING_BATCHES_CPU = [16, 32]
TRAINING_BATCHES_GPU = {"float16": [208], "float32": [96]}  # NVIDIA's V100 runs


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
                        "timed over I batches; batch = the first of -b (default 64)")
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
    g.add_argument("--model", default="resnet50_v1.5",
                   help="a name of the models registry: resnet18_v1.5 ... resnet152_v1.5 "
                        "(default resnet50_v1.5)")
    g.add_argument("--dtype", choices=("float32", "float16"),
                   help="float16 (default where MXNet sees a GPU) or float32 (default "
                        "otherwise; float16 needs a GPU)")
    g.add_argument("--data-backend", choices=("synthetic", "dali-cpu", "dali-gpu", "mxnet"),
                   default="synthetic",
                   help="synthetic (default: one fixed batch on the device, compute alone) or "
                        "real data from DATA_ROOT: training reads train.rec, inference "
                        "val.rec, and the data time counts")
    g.add_argument("--data-root", default=DEFAULT_DATA_ROOT,
                   help=f"folder with train.rec/.idx and val.rec/.idx (default "
                        f"{DEFAULT_DATA_ROOT})")
    g.add_argument("--image-shape", type=image_shape, default=(3, 224, 224),
                   help="network input C,H,W (default 3,224,224); --loaders crops H,W")
    g.add_argument("--layout", choices=("NCHW", "NHWC"), default="NCHW",
                   help="NHWC is faster with float16 on Tensor Core GPUs (default NCHW)")
    g.add_argument("--num-classes", type=positive_int, default=1000, help="default 1000")
    g = p.add_argument_group("output")
    g.add_argument("-o", "--output",
                   help="JSON report; the plot goes next to it as .png and the runs' logs "
                        "into <name>-logs/ (default runs/benchmark.json, runs/loaders.json "
                        "for --loaders)")
    g.add_argument("--verbose", action="store_true",
                   help="echo all output of the training runs, not only epoch summaries")
    g.add_argument("--runner", default=os.path.join(_HERE, "runner"), help=argparse.SUPPRESS)
    args, runner_args = p.parse_known_args(argv)
    if args.only_inference and args.only_training:
        p.error("--only-inference and --only-training exclude each other")
    return args, runner_args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args, runner_args = parse_args(argv)
    command = shlex.join(["python", "benchmark.py", *argv])
    if runner_args and (args.compare or args.make_data or args.loaders):
        print(f"benchmark.py: error: unrecognized arguments: {' '.join(runner_args)}",
              file=sys.stderr)
        return 2
    if args.compare:
        return compare_reports(*args.compare)
    if args.make_data:
        return make_data(args.make_data, args.num_images, args.num_classes)
    if args.loaders:
        return run_loaders(args, command)
    return run_sweeps(args, runner_args, command)


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


def run_loaders(args, command):
    from benchmarking import loaders, machine
    from benchmarking.report import build_report, format_report
    from engine.files import write_json
    from benchmarking.sweep import say
    for name in ("train.rec", "train.idx"):
        if not os.path.isfile(os.path.join(args.data_root, name)):
            print(f"benchmark.py: error: {os.path.join(args.data_root, name)} does not exist; "
                  f"pass --data-root, or write photo-like data with --make-data DIR",
                  file=sys.stderr)
            return 2
    load_at_start = _warn_if_busy(machine)
    batch = (args.batch_sizes or [64])[0]
    crop = tuple(args.image_shape[1:])
    cores = machine.cpu_cores()
    warmup = args.warmup * args.iterations
    say(sys.stderr, f"loaders on {args.data_root}/train.rec: batch {batch}, crop {crop}, "
                    f"{cores} threads each; {args.epochs} rounds of {args.iterations} timed "
                    f"batches, loaders taking turns ({warmup} warm-up batches first)")

    def on_result(row):
        what = (f"{row['img_per_s']:.1f} img/s ({row['note']})" if row["status"] == "ok"
                else f"{row['status']}: {row.get('note') or row.get('error')}")
        say(sys.stderr, f"    {row['loader']}: {what}")

    def on_round(name, round_number, rounds, img_per_s):
        say(sys.stderr, f"    round {round_number + 1}/{rounds} {name}: {img_per_s:.1f} img/s")

    rows = loaders.compare_loaders(args.data_root, batch, crop, cores, warmup, args.iterations,
                                   args.epochs, on_result=on_result, on_round=on_round)
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


def run_sweeps(args, runner_args, command):
    from benchmarking import machine
    runner_env, threads = _mxnet_threads(machine.cpu_cores())
    import mxnet as mx
    import models
    from benchmarking.report import build_report, format_report, plot
    from engine.files import write_json
    from benchmarking.stats import add_scaling
    if args.model not in models.list_models("classification"):
        print(f"benchmark.py: error: unknown --model {args.model!r}; valid names: "
              f"{', '.join(models.list_models('classification'))}", file=sys.stderr)
        return 2
    gpus = mx.context.num_gpus()
    load_at_start = _warn_if_busy(machine)
    settings = Settings(model=args.model, dtype=args.dtype or ("float16" if gpus else "float32"),
                        data_backend=args.data_backend, data_root=args.data_root,
                        image_shape=args.image_shape, iterations=args.iterations,
                        epochs=args.epochs, warmup=args.warmup, num_examples=args.num_examples,
                        layout=args.layout, num_classes=args.num_classes,
                        runner_args=tuple(runner_args))
    output = args.output or os.path.join("runs", "benchmark.json")
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
    report = build_report("+".join(kind), add_scaling(rows), info, command,
                          model=settings.model, dtype=settings.dtype,
                          device=machine.device_description(info, gpus),
                          data_backend=settings.data_backend, settings=settings.as_dict(),
                          inference_threads=threads, load_average_at_start=load_at_start,
                          interrupted=interrupted)
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
        batches = args.batch_sizes or (TRAINING_BATCHES_GPU[settings.dtype] if gpus
                                       else TRAINING_BATCHES_CPU)
        yield from training_sweep(settings, args.num_workers, batches, log_dir, args.runner,
                                  verbose=args.verbose, env=runner_env)
    if not args.only_training:
        ignored = (["-n"] if args.num_workers != [1] else []) + list(settings.runner_args)
        if ignored:
            print(f"benchmark.py: inference runs in this process on one device; "
                  f"{' '.join(ignored)} only apply to training", file=sys.stderr)
        batches = args.batch_sizes or (INFERENCE_BATCHES_GPU if gpus else
                                       INFERENCE_BATCHES_CPU)
        yield from inference_sweep(settings, batches)


def _mxnet_threads(cores):
    """Let this process's MXNet (inference) compute on every core.

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


def _warn_if_busy(machine):
    warning = machine.busy_warning()
    if warning:
        print(f"benchmark.py: {warning}", file=sys.stderr)
    return machine.load_average()


if __name__ == "__main__":
    sys.exit(main())
