"""The SSD training pipeline on a GPU machine with DALI but no MXNet: checked against its CPU
variant, and timed against a bare DALI pipeline of the same operators.

    python -m device.ssd_pipeline --out DIR [--data DIR] [--images 2048] [--batch-size 32]
                                  [--hw-loads 0.99 0.65] [--threads N]

`ssd_train_pipeline` of data/coco_pipelines.py is built as `data.coco_loaders` builds it for
training (float16 NCHW, 320 x 320, 100 box rows, checkpointing on), on photo-like COCO-style
JPEGs made here (640 x 480, about 75 KB, a few boxes each, a crowd region in one image of
ten) and normalised by `data.coco.prepare_coco`. Its outputs are (images, boxes, labels):
objects then crowd regions (label C+1) in one set of rows, cut and padded with -1 to 100.

1. GPU matches CPU: the pipeline with ``decoder_device="mixed"`` (nvJPEG and the hardware
   JPEG decoder) against the same pipeline on the CPU, same seed: boxes and labels equal,
   images within decoding differences (normalised units).
2. Same work: a bare pipeline (`bare_ssd_pipeline`: readers.coco, random_bbox_crop with the
   SSD thresholds, decoders.image_slice, resize, color_twist, flip, crop_mirror_normalize,
   boxes and labels padded with fn.pad, nothing else) draws the same crops, colours and flips
   from the same seed, so its boxes and labels equal the project's (no sample here has more
   rows than the project keeps) and its images match the project's.
3. Throughput per hardware-decoder share: the project's pipeline and the bare one, each with
   DALI checkpointing on (as the loader builds the project's) and off (DALI's default),
   taking turns in one process (`device.dali_common.time_in_turns`); the project's pipeline
   passes at >= --min-ratio (0.9) of the bare one without checkpointing.

Prints a CHECK line per check, a THROUGHPUT line per turn and a table; writes results.json to
--out; exits 1 when a check fails. ``--decoder-device cpu`` runs everything on the CPU (the
harness's own test).
"""
import argparse
import gc
import json
import multiprocessing
import os
import sys

import numpy as np
from nvidia.dali import fn, pipeline_def, types

from benchmarking.machine import describe, machine_info
from benchmarking.photos import encode_jpeg, photo
from data.coco import prepare_coco
from data.coco_pipelines import (READER_NAME, SSD_BRIGHTNESS, SSD_CONTRAST, SSD_CROP_ASPECT_RATIO,
                                 SSD_CROP_SCALING, SSD_CROP_THRESHOLDS, SSD_HUE, SSD_SATURATION,
                                 ssd_train_pipeline)
from data.pipelines import IMAGENET_MEAN, IMAGENET_STD
from device.dali_common import (host_array, image_diff, images_close, record_check,
                                 time_in_turns, write_results)

SPLIT = "train2017"
# COCO-like category ids, with gaps (the normaliser maps them to 1..C).
CATEGORIES = [dict(id=i, name=name) for i, name in
              ((1, "person"), (3, "car"), (18, "dog"), (44, "bottle"), (62, "chair"))]
CROWD_SHARE = 0.1
# The bare pipeline without and with DALI checkpointing.
VARIANTS = {"bare": {}, "bare, checkpointing": dict(checkpointing=True)}
# What data.coco_loaders builds for training (CocoLoaderConfig and train.py's defaults).
LOADER_SETTINGS = dict(dtype="float16", layout="NCHW", max_boxes=100)


# ---------------------------------------------------------------------------- data
def _image_and_annotations(args):
    """JPEG file of image `index` and its annotations (COCO json entries)."""
    folder, index, size, seed = args
    width, height = size
    rng = np.random.default_rng([seed, index])
    file_name = f"{index + 1:012d}.jpg"
    with open(os.path.join(folder, file_name), "wb") as f:
        f.write(encode_jpeg(photo(rng, width, height)))
    annotations = []
    for crowd in [0] * int(rng.integers(1, 7)) + [1] * int(rng.random() < CROWD_SHARE):
        w, h = rng.uniform(0.05, 0.6, 2) * (width, height)
        x, y = rng.uniform(0, 1, 2) * (width - w, height - h)
        category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]["id"]
        annotation = dict(image_id=index + 1, category_id=category, iscrowd=crowd,
                          bbox=[round(float(v), 2) for v in (x, y, w, h)], area=float(w * h))
        if not crowd:  # (crowd regions' RLE masks are dropped by the normaliser anyway)
            annotation["segmentation"] = [octagon(x, y, w, h)]
        annotations.append(annotation)
    return dict(id=index + 1, file_name=file_name, width=width, height=height), annotations


def octagon(x, y, w, h):
    """A COCO polygon [x1, y1, x2, y2, ...] of 8 vertices inside the box (x, y, w, h): the
    objects' masks, made without random draws so that the boxes are those of a split made
    without them."""
    corners = [(0.3, 0), (0.7, 0), (1, 0.3), (1, 0.7), (0.7, 1), (0.3, 1), (0, 0.7), (0, 0.3)]
    return [round(float(v), 2) for a, b in corners for v in (x + a * w, y + b * h)]


def make_coco(root, count, size=(640, 480), seed=0, processes=None):
    """A COCO split ROOT/train2017 + ROOT/annotations/instances_train2017.json of `count`
    photo-like JPEGs of `size` (width, height), 1-6 objects each (with an octagon polygon
    mask) and a crowd region in about one image of ten. Returns the JPEG bytes written."""
    folder = os.path.join(root, SPLIT)
    os.makedirs(folder, exist_ok=True)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    jobs = [(folder, i, tuple(size), seed) for i in range(count)]
    processes = processes or min(os.cpu_count() or 1, 16)
    if processes > 1 and count >= 64:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            made = pool.map(_image_and_annotations, jobs, chunksize=16)
    else:
        made = [_image_and_annotations(job) for job in jobs]
    images = [image for image, _ in made]
    annotations = [dict(ann, id=i + 1) for i, ann in
                   enumerate(a for _, anns in made for a in anns)]
    with open(os.path.join(root, "annotations", f"instances_{SPLIT}.json"), "w") as f:
        json.dump(dict(images=images, annotations=annotations, categories=CATEGORIES), f)
    return sum(os.path.getsize(os.path.join(folder, im["file_name"])) for im in images)


# ---------------------------------------------------------------------------- pipelines
@pipeline_def
def bare_ssd_pipeline(file_root, annotations_file, image_size, max_boxes, decoder_device,
                      hw_decoder_load):
    """The SSD training operators as DALI's documentation strings them together, nothing
    more: the yardstick for `ssd_train_pipeline`'s own cost.

    Its operators are created in the order of `ssd_train_pipeline`'s, so that the same seed
    gives the same draws (crop, colour factors, flip).

    Returns
    -------
    (images, boxes, labels)
        float16 NCHW images; boxes (B, max_boxes, 4) and labels (B, max_boxes), -1 padded
        (fn.pad pads, but does not cut: a sample with more rows makes the batch ragged).
    """
    encoded, boxes, labels = fn.readers.coco(
        file_root=file_root, annotations_file=annotations_file, random_shuffle=True,
        skip_empty=True, ltrb=True, ratio=True, avoid_class_remapping=True, name=READER_NAME)
    anchor, shape, boxes, labels = fn.random_bbox_crop(
        boxes, labels, thresholds=list(SSD_CROP_THRESHOLDS), scaling=list(SSD_CROP_SCALING),
        aspect_ratio=list(SSD_CROP_ASPECT_RATIO), bbox_layout="xyXY", allow_no_crop=True,
        num_attempts=1)
    options = {"hw_decoder_load": hw_decoder_load} if decoder_device == "mixed" else {}
    images = fn.decoders.image_slice(encoded, anchor, shape, device=decoder_device,
                                     output_type=types.RGB, **options)
    images = fn.resize(images, resize_x=image_size, resize_y=image_size)
    images = fn.color_twist(images, brightness=fn.random.uniform(range=list(SSD_BRIGHTNESS)),
                            contrast=fn.random.uniform(range=list(SSD_CONTRAST)),
                            saturation=fn.random.uniform(range=list(SSD_SATURATION)),
                            hue=fn.random.uniform(range=list(SSD_HUE)))
    flip = fn.random.coin_flip(probability=0.5)
    images = fn.crop_mirror_normalize(images, dtype=types.FLOAT16, output_layout="CHW",
                                      mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD),
                                      mirror=flip)
    boxes = fn.bb_flip(boxes, ltrb=True, horizontal=flip)
    return (images, fn.pad(boxes, fill_value=-1, axes=[0], shape=[max_boxes]),
            fn.pad(labels, fill_value=-1, axes=[0], shape=[max_boxes]))


def project_pipeline(dataset, decoder_device, hw_load, batch_size, threads, image_size, seed,
                     checkpointing=True):
    """`ssd_train_pipeline` with the arguments `data.coco_loaders` gives it, built."""
    gpu = decoder_device == "mixed"
    pipe = ssd_train_pipeline(
        file_root=dataset.image_dir, annotations_file=dataset.annotation_file, shard_id=0,
        num_shards=1, image_size=image_size, decoder_device=decoder_device,
        hw_decoder_load=hw_load, batch_size=batch_size, num_threads=threads,
        device_id=0 if gpu else None, seed=seed,
        enable_checkpointing=checkpointing, **LOADER_SETTINGS)
    pipe.build()
    return pipe


def bare_pipeline(dataset, decoder_device, hw_load, batch_size, threads, image_size, seed,
                  checkpointing=False):
    """`bare_ssd_pipeline` built, with the project's row count."""
    pipe = bare_ssd_pipeline(
        file_root=dataset.image_dir, annotations_file=dataset.annotation_file,
        image_size=image_size, max_boxes=LOADER_SETTINGS["max_boxes"],
        decoder_device=decoder_device, hw_decoder_load=hw_load, batch_size=batch_size,
        num_threads=threads, device_id=0 if decoder_device == "mixed" else None, seed=seed,
        enable_checkpointing=checkpointing)
    pipe.build()
    return pipe


# ---------------------------------------------------------------------------- checks
def _batches(pipe, count):
    """`count` batches of `pipe`, each a list of host arrays."""
    return [[host_array(out) for out in pipe.run()] for _ in range(count)]


def _boxes_and_labels_equal(runs_a, runs_b):
    """Whether two runs' batches have equal boxes and equal labels, each."""
    return {name: all(np.array_equal(a[k], b[k]) for a, b in zip(runs_a, runs_b))
            for k, name in ((1, "boxes"), (2, "labels"))}


def check_gpu_matches_cpu(dataset, decoder_device, hw_load, batch_size, threads, image_size,
                          batches, seed=7):
    """The project's pipeline on `decoder_device` against the CPU one, same seed."""
    runs = {device: _batches(project_pipeline(dataset, device, hw_load, batch_size, threads,
                                              image_size, seed), batches)
            for device in ("cpu", decoder_device)}
    cpu, other = runs["cpu"], runs[decoder_device]
    equal = _boxes_and_labels_equal(cpu, other)
    stats = image_diff([b[0] for b in other], [b[0] for b in cpu])
    labels = np.concatenate([b[2] for b in cpu])
    objects = int(((labels >= 1) & (labels != dataset.crowd_label)).sum())
    crowd = int((labels == dataset.crowd_label).sum())
    detail = {**{f"{k}_equal": v for k, v in equal.items()}, **stats,
              "images": batches * batch_size, "objects": objects, "crowd_regions": crowd}
    return bool(all(equal.values()) and images_close(stats) and objects), detail


def check_bare_does_same_work(dataset, decoder_device, hw_load, batch_size, threads,
                              image_size, batches, seed=11):
    """Bare and project pipelines from the same seed draw the same crops, colours and flips."""
    project = _batches(project_pipeline(dataset, decoder_device, hw_load, batch_size, threads,
                                        image_size, seed), batches)
    bare = _batches(bare_pipeline(dataset, decoder_device, hw_load, batch_size, threads,
                                  image_size, seed), batches)
    equal = _boxes_and_labels_equal(project, bare)
    stats = image_diff([b[0] for b in bare], [p[0] for p in project])
    labels = np.concatenate([p[2] for p in project])
    return bool(all(equal.values()) and images_close(stats)), {
        **{f"{k}_equal": v for k, v in equal.items()}, **stats,
        "rows": int((labels != -1).sum()),
        "crowd_regions": int((labels == dataset.crowd_label).sum())}


# ---------------------------------------------------------------------------- throughput
def measure_throughput(dataset, decoder_device, hw_load, batch_size, threads, image_size,
                       warmup, rewarm, rounds, round_batches, on_turn=None):
    """Images/s of the project's pipeline and the bare one, and ratios to the bare one.

    Each with checkpointing on (as the loader builds the project's) and off (DALI's default).
    """
    common = (dataset, decoder_device, hw_load, batch_size, threads, image_size, 1)
    pipes = {"project": project_pipeline(*common),
             "project, no checkpointing": project_pipeline(*common, checkpointing=False),
             **{name: bare_pipeline(*common, **options) for name, options in VARIANTS.items()}}
    rates = time_in_turns(pipes, batch_size, warmup, rewarm, rounds, round_batches,
                          on_turn=on_turn)
    del pipes
    gc.collect()  # the pipelines' threads and device memory go before the next setting
    for name in rates:
        rates[name]["ratio_to_bare"] = rates[name]["img_per_s"] / rates["bare"]["img_per_s"]
        rates[name]["round_ratios_to_bare"] = [
            mine / bare for mine, bare in zip(rates[name]["round_img_per_s"],
                                              rates["bare"]["round_img_per_s"])]
    return rates


# ---------------------------------------------------------------------------- main
def _size(text):
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for results.json")
    p.add_argument("--data", help="folder for the COCO split (default: OUT/coco)")
    p.add_argument("--images", type=int, default=2048, help="JPEGs to make")
    p.add_argument("--photo-size", type=_size, default=(640, 480), help="WIDTHxHEIGHT")
    p.add_argument("--image-size", type=int, default=320, help="output side")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="DALI CPU threads per pipeline (train.py: the CPU cores per GPU)")
    p.add_argument("--decoder-device", choices=("mixed", "cpu"), default="mixed")
    p.add_argument("--hw-loads", type=float, nargs="+", default=[0.99, 0.65],
                   help="hardware JPEG decoder shares to measure")
    p.add_argument("--check-batches", type=int, default=8)
    p.add_argument("--warmup", type=int, default=30, help="batches before the first round")
    p.add_argument("--rewarm", type=int, default=4, help="untimed batches before each turn")
    p.add_argument("--rounds", type=int, default=8,
                   help="rounds of turns (a multiple of the 4 pipelines balances the order)")
    p.add_argument("--round-batches", type=int, default=120)
    p.add_argument("--min-ratio", type=float, default=0.9,
                   help="least project / bare throughput that passes")
    return p.parse_args(argv)


def print_table(results, args):
    """img/s and ratios to the bare pipeline (checkpointing off), per setting."""
    print(f"\nbatch {args.batch_size}, {args.threads} threads, {args.image_size}x"
          f"{args.image_size} float16 NCHW; img/s over {args.rounds} rounds of "
          f"{args.round_batches} batches, the pipelines taking turns")
    print(f"{'setting':<16}{'pipeline':<28}{'img/s':>9}{'/ bare':>8}{'rounds (min-max)':>18}")
    for key, rates in results["throughput"].items():
        for name, rate in rates.items():
            ratio, rounds = rate.get("ratio_to_bare"), rate.get("round_ratios_to_bare")
            print(f"{key:<16}{name:<28}{rate['img_per_s']:>9,.0f}"
                  + (f"{ratio:>8.3f}{min(rounds):>11.3f}-{max(rounds):.3f}" if ratio else ""))


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    root = args.data or os.path.join(args.out, "coco")
    info = machine_info()
    print(describe(info), flush=True)
    jpeg_bytes = make_coco(root, args.images, args.photo_size)
    dataset = prepare_coco(root, SPLIT, os.path.join(root, "cache"))
    print(f"data: {args.images} JPEGs of {args.photo_size[0]}x{args.photo_size[1]}, "
          f"{jpeg_bytes / args.images / 1000:.1f} KB each; {dataset.stats['objects']} objects, "
          f"{dataset.stats['crowd']} crowd regions", flush=True)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "data")}
    results = {"machine": info, "settings": {**settings, **LOADER_SETTINGS},
               "data": {"images": args.images, "jpeg_kb": jpeg_bytes / args.images / 1000,
                        "stats": {k: dataset.stats[k] for k in ("objects", "crowd")}},
               "checks": {}, "throughput": {}}
    shape = (args.batch_size, args.threads, args.image_size)

    def check(name, passed, detail):
        record_check(results, name, passed, detail)

    for load in args.hw_loads:
        check(f"{args.decoder_device} matches cpu (hw {load})",
              *check_gpu_matches_cpu(dataset, args.decoder_device, load, *shape,
                                     args.check_batches))
    check("bare pipeline does the same work",
          *check_bare_does_same_work(dataset, args.decoder_device, args.hw_loads[0], *shape,
                                     args.check_batches))
    for load in args.hw_loads:
        key = f"{args.decoder_device} hw {load}"
        rates = measure_throughput(
            dataset, args.decoder_device, load, *shape, args.warmup, args.rewarm, args.rounds,
            args.round_batches, on_turn=lambda name, r, rate, key=key: print(
                f"THROUGHPUT {key} round {r + 1}/{args.rounds} {name}: {rate:,.0f} img/s",
                flush=True))
        results["throughput"][key] = rates
        ratio = rates["project"]["ratio_to_bare"]
        check(f"project >= {args.min_ratio} x bare ({key})", bool(ratio >= args.min_ratio),
              {"ratio": ratio, "project_img_per_s": rates["project"]["img_per_s"],
               "bare_img_per_s": rates["bare"]["img_per_s"]})
    print_table(results, args)
    return write_results(results, args.out)


if __name__ == "__main__":
    sys.exit(main())
