"""Side-by-side CPU benchmark of the ops against MXNet's contrib operators and gluoncv.

    python -m ops.bench [-o results.json] [--repeat 20]

Every row times one call (median of --repeat runs after a warm-up, waiting for MXNet's
asynchronous engine) of our operator and of the reference that does the same job, on the
same inputs, in one process. OMP_NUM_THREADS and the CPU count are printed with the table.
"""
import argparse
import json
import math
import os
import platform
import sys
import time

import mxnet as mx
import numpy as np

import ops

STRIDES, SIZES = (4, 8, 16, 32, 64), (32, 64, 128, 256, 512)


def timeit(fn, repeat):
    """Median wall time of fn() in ms; fn must block until its result exists."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def wait(*arrays):
    for a in arrays:
        a.wait_to_read()


def image_boxes(rng, n, h=800, w=1333):
    """n boxes inside an h x w image, log-uniform sides 16..512: RPN-like proposals."""
    wh = np.exp(rng.uniform(np.log(16), np.log(512), (n, 2)))
    xy = rng.uniform(0, 1, (n, 2)) * np.maximum([w, h] - wh, 1)
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


def naive_iou(a, b):
    """A plain single-threaded Python-free baseline: numpy broadcasting."""
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter)


# ---------------------------------------------------------------------------- cases
def bench_box_iou(rng, repeat):
    a, b = image_boxes(rng, 20000), image_boxes(rng, 100)
    na, nb = mx.nd.array(a), mx.nd.array(b)
    contrib = timeit(lambda: wait(mx.nd.contrib.box_iou(na, nb, format="corner")), repeat)
    numpy_t = timeit(lambda: naive_iou(a, b), repeat)
    ours = timeit(lambda: wait(ops.box_iou(na, nb)), repeat)
    return [dict(case="box_iou 20000x100", ours_ms=ours, ref="mx.nd.contrib.box_iou",
                 ref_ms=contrib, goal=">= 3x"),
            dict(case="box_iou 20000x100", ours_ms=ours, ref="numpy broadcasting",
                 ref_ms=numpy_t, goal="")]


def box_nms_input(boxes, scores):
    return mx.nd.array(np.concatenate([scores[:, None], boxes], 1)[None])


def clustered_boxes(rng, n, objects=50):
    """Boxes jittered around a few objects, as decoded RPN proposals are."""
    centres = image_boxes(rng, objects)
    pick = centres[rng.integers(0, objects, n)]
    wh = pick[:, 2:] - pick[:, :2]
    return (pick + rng.normal(0, 0.1, (n, 4)) * np.concatenate([wh, wh], 1)).astype(np.float32)


def bench_proposals(rng, repeat):
    rows = []
    n = 20000
    for kind, gen in (("uniform", image_boxes), ("clustered", clustered_boxes)):
        boxes, scores = gen(rng, n), rng.uniform(size=n).astype(np.float32)
        nb, ns = mx.nd.array(boxes[None]), mx.nd.array(scores[None])
        data = box_nms_input(boxes, scores)
        ref = timeit(lambda: wait(mx.nd.contrib.box_nms(
            data, overlap_thresh=0.7, topk=12000, coord_start=1, score_index=0, id_index=-1,
            force_suppress=True)), max(3, repeat // 4))
        ours = timeit(lambda: wait(*ops.select_proposals(nb, ns, (n,), 12000, 2000, 0.7)),
                      repeat)
        rows.append(dict(case="proposals {} boxes ({}), pre 12000, NMS 0.7, post 2000".format(
            n, kind), ours_ms=ours, ref="contrib.box_nms topk=12000", ref_ms=ref,
            goal=">= 1x"))
    # one 800x1333 image through an FPN: 5 levels, pre 2000 per level, post 1000
    feats = [(math.ceil(800 / s), math.ceil(1333 / s)) for s in STRIDES]
    sizes = [h * w * 3 for h, w in feats]
    total = sum(sizes)
    boxes, scores = image_boxes(rng, total), rng.uniform(size=total).astype(np.float32)
    nb, ns = mx.nd.array(boxes[None]), mx.nd.array(scores[None])
    data = box_nms_input(boxes, scores)
    ref = timeit(lambda: wait(mx.nd.contrib.box_nms(
        data, overlap_thresh=0.7, topk=10000, coord_start=1, score_index=0, id_index=-1,
        force_suppress=True)), max(3, repeat // 4))
    ours = timeit(lambda: wait(*ops.select_proposals(nb, ns, sizes, 2000, 1000, 0.7)), repeat)
    rows.append(dict(case="proposals FPN {} boxes, 5 levels, pre 2000, post 1000".format(total),
                     ours_ms=ours, ref="contrib.box_nms topk=10000 (levels merged)",
                     ref_ms=ref, goal=""))
    return rows


def bench_rpn_targets(rng, repeat):
    from gluoncv.model_zoo.rcnn.rpn.rpn_target import RPNTargetGenerator
    h, w = 800, 1333
    feats = [(math.ceil(h / s), math.ceil(w / s)) for s in STRIDES]
    anchors = ops.generate_anchors(feats, STRIDES, SIZES)
    wh = np.exp(rng.uniform(np.log(16), np.log(500), (12, 2)))
    xy = rng.uniform(0, 1, (12, 2)) * ([w, h] - wh)
    gt = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    gen = RPNTargetGenerator(num_sample=256, pos_iou_thresh=0.7, neg_iou_thresh=0.3,
                             pos_ratio=0.5, stds=(1., 1., 1., 1.))
    ngt, im_hw = mx.nd.array(gt), mx.nd.array([[h, w]])
    gluon_t = timeit(lambda: gen(ngt, anchors, w, h), max(3, repeat // 4))
    ngt_b = ngt.expand_dims(0)
    ours = timeit(lambda: wait(*ops.rpn_targets(anchors, ngt_b, im_hw, low_quality="between")),
                  repeat)
    return [dict(case="RPN targets, 1 image 800x1333, {} anchors, 12 gt".format(
        anchors.shape[0]), ours_ms=ours, ref="gluoncv RPNTargetGenerator (numpy)",
        ref_ms=gluon_t, goal=">= 5x")]


def bench_masks(rng, repeat):
    import cv2
    from pycocotools import mask as coco_mask
    h, w, rois_n = 800, 1333, 128
    objects, rois, matches = [], [], []
    for g in range(16):
        r = rng.uniform(20, 200)
        cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
        ang = np.sort(rng.uniform(0, 2 * np.pi, 24))
        rad = r * rng.uniform(0.5, 1, 24)
        objects.append([np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)
                        .reshape(-1).tolist()])
    for i in range(rois_n):
        g = i % 16
        xy = np.reshape(objects[g][0], (-1, 2))
        box = np.concatenate([xy.min(0), xy.max(0)]) + rng.normal(0, 8, 4)
        rois.append(np.clip(box, 0, [w - 1, h - 1, w - 1, h - 1]))
        matches.append(g)
    rois = np.array(rois, np.float32)
    verts, polys = ops.pack_polygons([objects])
    args = (mx.nd.array(rois[None]), mx.nd.array([matches], dtype="int32"),
            mx.nd.array(verts), mx.nd.array(polys, dtype="int32"))
    ours = timeit(lambda: wait(ops.polygon_masks(*args, mask_size=28)), repeat)

    def reference():
        out = []
        for roi, g in zip(rois, matches):
            full = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(objects[g], h, w)))
            x1, y1, x2, y2 = [int(round(v)) for v in roi]
            out.append(cv2.resize(full[y1:y2 + 1, x1:x2 + 1].astype(np.float32), (28, 28)))
        return out
    ref = timeit(reference, max(3, repeat // 4))
    return [dict(case="mask targets, 128 RoIs, 28x28", ours_ms=ours,
                 ref="pycocotools full mask + crop + resize", ref_ms=ref, goal="")]


CASES = [bench_box_iou, bench_proposals, bench_rpn_targets, bench_masks]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-o", "--output", help="write the results as JSON here")
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    ops.load()
    rng = np.random.default_rng(args.seed)
    rows = []
    for case in CASES:
        rows += case(rng, args.repeat)
    env = dict(cpus=os.cpu_count(), omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
               machine=platform.processor() or platform.machine(), mxnet=mx.__version__,
               repeat=args.repeat, command=" ".join(["python -m ops.bench"] + sys.argv[1:]))
    print("CPU benchmark ({cpus} CPUs, OMP_NUM_THREADS={omp_num_threads}, mxnet {mxnet}), "
          "median of {repeat}".format(**env))
    print("| case | ops (ms) | reference | reference (ms) | speed-up | goal |")
    print("| --- | ---: | --- | ---: | ---: | --- |")
    for r in rows:
        r["speedup"] = r["ref_ms"] / r["ours_ms"]
        print("| {case} | {ours_ms:.2f} | {ref} | {ref_ms:.2f} | {speedup:.1f}x | {goal} |"
              .format(**r))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(dict(env=env, rows=rows), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
