#!/usr/bin/env python3
"""GPU check of the ops kernels, without MXNet: build, compare, time.

    python3 device/ops_kernels.py [--arch 90] [--out DIR] [--skip-timing] [--lib PATH]

1. Builds ``libmxops_kernels.so`` with nvcc and g++ (``ops/build.py --kernels-only``).
2. Runs every CUDA kernel on random inputs and compares it with the CPU kernel of the same
   library (bit for bit where the arithmetic is shared; expf/logf within a few ulps) and,
   for box_iou and nms, with torchvision.ops, for paste_masks with torch's grid_sample.
   Outputs are poisoned before each run, so an unwritten element fails the comparison.
3. Times the kernels against torchvision.ops and torch (triton's do_bench medians, CUDA
   events).

Prints ``CHECK <name>: PASS|FAIL`` lines, a timing table, and a final ``SUMMARY`` line;
exits non-zero if any check failed. Needs torch (for device memory and the references;
``--help`` works without it); torchvision and triton are optional.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np

try:
    import torch
except ImportError:  # --help works without it; main() says that it is needed
    torch = None

# The kernels' sources and build script live in ops/; this harness only drives them.
HERE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ops")
sys.path.insert(0, HERE)
import abi  # noqa: E402  (ops/abi.py, importable without MXNet)
import build as ops_build  # noqa: E402

try:
    import torchvision
except ImportError:  # pragma: no cover - depends on the machine
    torchvision = None

RESULTS = {"checks": [], "timings": []}


# ---------------------------------------------------------------------------- helpers
def log(msg):
    print(msg, flush=True)


def check(name, ok, detail=""):
    RESULTS["checks"].append(dict(name=name, ok=bool(ok), detail=detail))
    log("CHECK {}: {}{}".format(name, "PASS" if ok else "FAIL",
                                " ({})".format(detail) if detail else ""))


def ptr(x):
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        return x.data_ptr()
    return x.ctypes.data


_ALIVE = []  # device copies stay referenced until the check ends: a freed temporary's
             # memory could be handed out again before the kernel reads it


def cuda(a):
    t = torch.from_numpy(np.ascontiguousarray(a)).cuda()
    _ALIVE.append(t)
    return t


def poisoned(shape, dtype):
    """A device array full of garbage (NaN / -7, 7 for unsigned), so unwritten outputs
    show."""
    t = torch.empty(shape, dtype=dtype, device="cuda")
    t.fill_(float("nan") if dtype.is_floating_point else -7 if dtype.is_signed else 7)
    return t


def workspace(nbytes):
    return torch.empty(max(int(nbytes), 1), dtype=torch.uint8, device="cuda")


class Lib:
    """The kernels with status checks; CUDA calls go on torch's current stream."""

    def __init__(self, path):
        self.k = abi.load_kernels(path)
        if not self.k.has_cuda:
            raise SystemExit("{} was built without CUDA".format(path))

    def cpu(self, name, *args):
        self.k.check(getattr(self.k, "mxops_%s_cpu" % name)(*args), name + "_cpu")

    def gpu(self, name, *args, ws=None, sync=True):
        fn = getattr(self.k, "mxops_%s_cuda" % name)
        extra = [] if ws is None else [ptr(ws), ws.numel()]
        stream = torch.cuda.current_stream().cuda_stream
        self.k.check(fn(*args, *extra, stream), name + "_cuda")
        if sync:
            torch.cuda.synchronize()

    def ws(self, name, *sizes):
        return workspace(getattr(self.k, "mxops_%s_cuda_workspace" % name)(*sizes))


def random_boxes(rng, n, size=1000.0, min_wh=1.0, max_wh=300.0):
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(min_wh, max_wh, (n, 2))
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


def image_boxes(rng, n, h=800, w=1333):
    """RPN-like proposals: log-uniform sides 16..512 inside an h x w image."""
    wh = np.exp(rng.uniform(np.log(16), np.log(512), (n, 2)))
    xy = rng.uniform(0, 1, (n, 2)) * np.maximum([w, h] - wh, 1)
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


def distinct_scores(rng, batch, n):
    """Scores without ties, so that torchvision's order (its sort need not be stable)
    is defined."""
    return np.stack([(rng.permutation(n) + 0.5) / n for _ in range(batch)]).astype(np.float32)


def clustered_boxes(rng, n, objects=50):
    centres = image_boxes(rng, objects)
    pick = centres[rng.integers(0, objects, n)]
    wh = pick[:, 2:] - pick[:, :2]
    return (pick + rng.normal(0, 0.1, (n, 4)) * np.concatenate([wh, wh], 1)).astype(np.float32)


def same(name, gpu, cpu, detail=""):
    """Exact equality (NaN equals NaN), naming the first mismatch."""
    g = gpu.cpu().numpy() if isinstance(gpu, torch.Tensor) else gpu
    ok = g.shape == cpu.shape and np.array_equal(g, cpu, equal_nan=g.dtype.kind == "f")
    if not ok and g.shape == cpu.shape:
        differ = g != cpu
        if g.dtype.kind == "f":
            differ &= ~(np.isnan(g) & np.isnan(cpu))
        bad = np.argwhere(differ)
        detail = (detail + "; " if detail else "") + "{} mismatches, first at {}".format(
            len(bad), bad[0].tolist())
    elif not ok:
        detail = "shape {} != {}".format(g.shape, cpu.shape)
    check(name, ok, detail)


def close(name, gpu, cpu, rtol, atol, detail=""):
    g = gpu.cpu().numpy()
    err = np.abs(g.astype(np.float64) - cpu) / (atol + rtol * np.abs(cpu))
    check(name, np.isfinite(g).all() and err.max() <= 1.0,
          (detail + " " if detail else "") + "max err/tol {:.3g}".format(err.max()))


# ---------------------------------------------------------------------------- checks
def check_box_iou(lib, rng):
    for batch, n, m in [(1, 1, 1), (1, 1000, 100), (1, 777, 13), (3, 500, 64), (1, 20000, 2000)]:
        a = np.stack([random_boxes(rng, n) for _ in range(batch)])
        b = np.stack([random_boxes(rng, m) for _ in range(batch)])
        a[:, ::17, 2:] = a[:, ::17, :2]  # zero-area boxes
        out_cpu = np.empty((batch, n, m), np.float32)
        lib.cpu("box_iou", ptr(a), ptr(b), ptr(out_cpu), batch, n, m, 0.0)
        da, db, out = cuda(a), cuda(b), poisoned((batch, n, m), torch.float32)
        lib.gpu("box_iou", ptr(da), ptr(db), ptr(out), batch, n, m, 0.0)
        same("box_iou gpu==cpu B={} N={} M={}".format(batch, n, m), out, out_cpu)
        if torchvision is not None and batch == 1:
            tv = torchvision.ops.box_iou(da[0], db[0])
            diff = (tv - out[0]).abs()
            diff = diff[torch.isfinite(tv)].max().item() if n * m else 0.0
            check("box_iou vs torchvision N={} M={}".format(n, m), diff <= 1e-6,
                  "max abs diff {:.2e}".format(diff))


def check_match(lib, rng):
    n = 30000
    anchors = image_boxes(rng, n, 600, 800)
    for batch, m, lq, use_hw in [(2, 8, 1, False), (2, 8, 2, True), (1, 300, 1, False),
                                 (3, 5, 0, True)]:
        gt = -np.ones((batch, m, 4), np.float32)
        for b in range(batch - 1):  # the last image has no gt: all rows -1
            k = int(rng.integers(1, m + 1))
            gt[b, :k] = image_boxes(rng, k, 600, 800)
        im_hw = np.tile(np.array([[600, 800]], np.float32), (batch, 1)) if use_hw else None
        mt_cpu, best_cpu = np.empty((batch, n), np.int32), np.empty((batch, n), np.float32)
        lib.cpu("match", ptr(anchors), 1, ptr(gt), ptr(im_hw), ptr(mt_cpu), ptr(best_cpu),
                batch, n, m, 0.7, 0.3, lq, 0.0, 0.0)
        mt, best = poisoned((batch, n), torch.int32), poisoned((batch, n), torch.float32)
        dhw = None if im_hw is None else cuda(im_hw)
        lib.gpu("match", ptr(cuda(anchors)), 1, ptr(cuda(gt)), ptr(dhw), ptr(mt), ptr(best),
                batch, n, m, 0.7, 0.3, lq, 0.0, 0.0, ws=lib.ws("match", batch, n, m))
        tag = "B={} M={} low_quality={} im_hw={}".format(batch, m, lq, use_hw)
        same("match gpu==cpu matches " + tag, mt, mt_cpu,
             "{} foreground".format(int((mt_cpu >= 0).sum())))
        same("match gpu==cpu max_iou " + tag, best, best_cpu)


def check_sample(lib, rng):
    for batch, n, num, frac, seed in [(1, 267069, 256, 0.5, 1), (4, 20000, 512, 0.25, 7),
                                      (2, 100, 64, 0.5, 2 ** 63 + 5)]:
        u = rng.uniform(size=(batch, n))
        m = np.where(u < 0.01, rng.integers(0, 9, (batch, n)),
                     np.where(u < 0.7, -1, -2)).astype(np.int32)
        lab_cpu, pos_cpu = np.empty((batch, n), np.float32), np.empty((batch, n), np.int32)
        lib.cpu("sample", ptr(m), ptr(lab_cpu), ptr(pos_cpu), batch, n, num, frac, seed)
        lab, pos = poisoned((batch, n), torch.float32), poisoned((batch, n), torch.int32)
        lib.gpu("sample", ptr(cuda(m)), ptr(lab), ptr(pos), batch, n, num, frac, seed,
                ws=lib.ws("sample", batch, n))
        tag = "B={} N={} seed={}".format(batch, n, seed)
        same("sample gpu==cpu labels " + tag, lab, lab_cpu)
        same("sample gpu==cpu pos_matches " + tag, pos, pos_cpu)


def check_anchors(lib, rng):
    h = np.array([200, 100, 50, 25, 13], np.int64)
    w = np.array([334, 167, 84, 42, 21], np.int64)
    strides = np.array([4, 8, 16, 32, 64], np.float64)
    sizes = np.array([[32, 40], [64, 80], [128, 160], [256, 320], [512, 640]], np.float64)
    ratios = np.array([0.5, 1, 2, 0.3], np.float64)
    n = lib.k.mxops_anchors_count(5, ptr(h), ptr(w), 2, 4)
    out_cpu = np.empty((n, 4), np.float32)
    lib.cpu("anchors", ptr(out_cpu), 5, ptr(h), ptr(w), ptr(strides), ptr(sizes), 2,
            ptr(ratios), 4)
    out = poisoned((n, 4), torch.float32)
    lib.gpu("anchors", ptr(out), 5, ptr(h), ptr(w), ptr(strides), ptr(sizes), 2, ptr(ratios), 4)
    same("anchors gpu==cpu N={}".format(n), out, out_cpu)


def check_coder(lib, rng):
    batch, n, m = 2, 50000, 20
    anchors = image_boxes(rng, n)
    gt = np.stack([image_boxes(rng, m) for _ in range(batch)])
    matches = rng.integers(-2, m, (batch, n)).astype(np.int32)
    means = np.array([0.1, -0.1, 0.05, 0.0], np.float32)
    stds = np.array([0.1, 0.1, 0.2, 0.2], np.float32)
    t_cpu, k_cpu = np.empty((batch, n, 4), np.float32), np.empty((batch, n, 4), np.float32)
    lib.cpu("box_encode", ptr(anchors), 1, ptr(gt), ptr(matches), ptr(t_cpu), ptr(k_cpu),
            batch, n, m, ptr(means), ptr(stds), 0.0)
    t, k = poisoned((batch, n, 4), torch.float32), poisoned((batch, n, 4), torch.float32)
    lib.gpu("box_encode", ptr(cuda(anchors)), 1, ptr(cuda(gt)), ptr(cuda(matches)), ptr(t),
            ptr(k), batch, n, m, ptr(means), ptr(stds), 0.0)
    close("box_encode gpu~cpu targets", t, t_cpu, 1e-5, 1e-6, "logf may differ by ulps")
    same("box_encode gpu==cpu masks", k, k_cpu)
    deltas = rng.normal(0, 2, (batch, n, 4)).astype(np.float32)
    im_hw = np.array([[800, 1333], [600, 700]], np.float32)
    d_cpu = np.empty((batch, n, 4), np.float32)
    lib.cpu("box_decode", ptr(deltas), ptr(anchors), 1, ptr(im_hw), ptr(d_cpu), batch, n,
            ptr(means), ptr(stds), 4.135, 1.0)
    d = poisoned((batch, n, 4), torch.float32)
    lib.gpu("box_decode", ptr(cuda(deltas)), ptr(cuda(anchors)), 1, ptr(cuda(im_hw)), ptr(d),
            batch, n, ptr(means), ptr(stds), 4.135, 1.0)
    close("box_decode gpu~cpu", d, d_cpu, 1e-5, 1e-3, "expf may differ by ulps")


def nms_gpu(lib, boxes, scores, thresh, max_out, sync=True, ws=None, out=None):
    batch, n = scores.shape
    if ws is None:
        ws = lib.ws("nms", batch, n, max_out)
    keep, num = out or (poisoned((batch, max_out), torch.int32), poisoned((batch,), torch.int32))
    lib.gpu("nms", ptr(boxes), ptr(scores), ptr(keep), ptr(num), batch, n, thresh, max_out, 0.0,
            ws=ws, sync=sync)
    return keep, num


def check_nms(lib, rng):
    for batch, n, thresh, max_out, kind in [(1, 2000, 0.7, 2000, "clustered"),
                                            (2, 12000, 0.7, 12000, "uniform"),
                                            (3, 5000, 0.5, 300, "ties+nan"),
                                            (1, 20000, 0.7, 20000, "clustered"),
                                            (1, 1, 0.7, 5, "single"),
                                            (1, 1000, 0.7, 1000, "chain"),
                                            (2, 3000, 0.3, 65, "clustered"),
                                            (1, 4000, 0.9, 64, "clustered"),
                                            (1, 130, 0.5, 1, "uniform")]:
        gen = clustered_boxes if kind == "clustered" else image_boxes
        boxes = np.stack([gen(rng, n) for _ in range(batch)])
        scores = distinct_scores(rng, batch, n)
        if kind == "chain":  # each box suppresses the next: every other one is kept
            x = np.arange(n, dtype=np.float32) * 1.2
            boxes = np.stack([x, np.zeros(n), x + 10, np.full(n, 10)], 1)[None].astype(np.float32)
            scores = np.linspace(1, 0.001, n, dtype=np.float32)[None]
        if kind == "ties+nan":
            scores = np.round(scores * 8) / 8
            scores[:, ::11] = np.nan
            boxes[:, ::7, 2:] = boxes[:, ::7, :2]
        keep_cpu, num_cpu = np.empty((batch, max_out), np.int32), np.empty(batch, np.int32)
        lib.cpu("nms", ptr(boxes), ptr(scores), ptr(keep_cpu), ptr(num_cpu), batch, n, thresh,
                max_out, 0.0)
        db, ds = cuda(boxes), cuda(scores)
        keep, num = nms_gpu(lib, db, ds, thresh, max_out)
        tag = "B={} N={} iou={} max_out={} {}".format(batch, n, thresh, max_out, kind)
        same("nms gpu==cpu keep " + tag, keep, keep_cpu)
        same("nms gpu==cpu count " + tag, num, num_cpu)
        if torchvision is not None and kind in ("clustered", "uniform", "chain"):
            ok = True
            for b in range(batch):
                tv = torchvision.ops.nms(db[b], ds[b], thresh).cpu().numpy()[:max_out]
                ok &= np.array_equal(tv, keep.cpu().numpy()[b, :num[b].item()])
            check("nms vs torchvision " + tag, ok, "kept {}".format(num.cpu().numpy().tolist()))


def fpn_level_sizes(h=800, w=1333):
    return [math.ceil(h / s) * math.ceil(w / s) * 3 for s in (4, 8, 16, 32, 64)]


def proposals_gpu(lib, boxes, scores, sizes, pre, post, thresh, min_size=0.0, sync=True,
                  ws=None, out=None):
    batch, n = scores.shape
    lv = np.array(sizes, np.int64)
    if ws is None:
        ws = lib.ws("proposals", batch, n, len(sizes), ptr(lv), pre, post)
    rois, rs, num = out or (poisoned((batch, post, 4), torch.float32),
                            poisoned((batch, post), torch.float32),
                            poisoned((batch,), torch.int32))
    lib.gpu("proposals", ptr(boxes), ptr(scores), ptr(lv), len(sizes), ptr(rois), ptr(rs),
            ptr(num), batch, n, pre, post, thresh, min_size, 0.0, ws=ws, sync=sync)
    return rois, rs, num


def check_proposals(lib, rng):
    for batch, sizes, pre, post, min_size in [(1, fpn_level_sizes(), 2000, 1000, 0.0),
                                              (2, [20000], 12000, 2000, 0.0),
                                              (2, [3000, 800, 200], 500, 300, 8.0)]:
        n = sum(sizes)
        boxes = np.stack([clustered_boxes(rng, n, 200) for _ in range(batch)])
        scores = np.round(rng.uniform(size=(batch, n)) * 1000).astype(np.float32) / 1000
        lv = np.array(sizes, np.int64)
        r_cpu, s_cpu = np.empty((batch, post, 4), np.float32), np.empty((batch, post), np.float32)
        n_cpu = np.empty(batch, np.int32)
        lib.cpu("proposals", ptr(boxes), ptr(scores), ptr(lv), len(sizes), ptr(r_cpu),
                ptr(s_cpu), ptr(n_cpu), batch, n, pre, post, 0.7, min_size, 0.0)
        rois, rs, num = proposals_gpu(lib, cuda(boxes), cuda(scores), sizes, pre, post, 0.7,
                                      min_size)
        tag = "B={} levels={} pre={} post={}".format(batch, len(sizes), pre, post)
        same("proposals gpu==cpu rois " + tag, rois, r_cpu)
        same("proposals gpu==cpu scores " + tag, rs, s_cpu)
        same("proposals gpu==cpu count " + tag, num, n_cpu, "kept {}".format(n_cpu.tolist()))


def star(rng, cx, cy, r, k):
    ang = np.sort(rng.uniform(0, 2 * np.pi, k))
    rad = r * rng.uniform(0.5, 1.0, k)
    return np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1).astype(np.float32)


def polygon_inputs(rng, batch, objects, rois_per_image):
    verts, polys, rois, matches = [], [], [], []
    for _ in range(batch):
        v, p, r, mt = [], [], [], []
        for g in range(objects):
            cx, cy, rad = rng.uniform(100, 1200), rng.uniform(100, 700), rng.uniform(10, 150)
            for part in range(1 + int(rng.uniform() < 0.3)):
                xy = star(rng, cx + part * rad, cy, rad / (1 + part), int(rng.integers(3, 40)))
                p.append((g, sum(len(a) for a in v), len(xy)))
                v.append(xy)
        allv = np.concatenate(v)
        for i in range(rois_per_image):
            g = i % (objects + 1) - 1  # some RoIs unmatched (-1)
            c = allv[rng.integers(0, len(allv))]
            r.append(np.concatenate([c - rng.uniform(5, 200, 2), c + rng.uniform(5, 200, 2)]))
            mt.append(g)
        verts.append(allv)
        polys.append(np.array(p, np.int32))
        rois.append(np.array(r, np.float32))
        matches.append(np.array(mt, np.int32))
    nv, nq = max(len(v) for v in verts), max(len(p) for p in polys) + 1
    V = np.zeros((batch, nv, 2), np.float32)
    Q = np.full((batch, nq, 3), -1, np.int32)
    for b in range(batch):
        V[b, :len(verts[b])] = verts[b]
        Q[b, :len(polys[b])] = polys[b]
    return np.stack(rois), np.stack(matches), V, Q


def check_polygon_masks(lib, rng):
    for batch, objects, r, size in [(2, 10, 128, 28), (1, 30, 512, 28), (1, 3, 20, 56)]:
        rois, matches, verts, polys = polygon_inputs(rng, batch, objects, r)
        out_cpu = np.empty((batch, r, size, size), np.float32)
        args = (batch, r, verts.shape[1], polys.shape[1], size)
        lib.cpu("polygon_masks", ptr(rois), ptr(matches), ptr(verts), ptr(polys), ptr(out_cpu),
                *args)
        out = poisoned((batch, r, size, size), torch.float32)
        lib.gpu("polygon_masks", ptr(cuda(rois)), ptr(cuda(matches)), ptr(cuda(verts)),
                ptr(cuda(polys)), ptr(out), *args)
        same("polygon_masks gpu==cpu B={} R={} M={}".format(batch, r, size), out, out_cpu,
             "{:.1%} pixels set".format(out_cpu.mean()))


def blob_masks(rng, n, size=28):
    """Mask-head-like probabilities: a noisy elliptical blob per mask, sharp or soft."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    centre = rng.uniform(0.2, 0.8, (n, 2, 1, 1)) * size
    axes = rng.uniform(0.15, 0.5, (n, 2, 1, 1)) * size
    r2 = ((xx - centre[:, 0]) / axes[:, 0]) ** 2 + ((yy - centre[:, 1]) / axes[:, 1]) ** 2
    logit = rng.uniform(2, 10, (n, 1, 1)) * (1 - r2) + rng.normal(0, 0.5, (n, size, size))
    return (1 / (1 + np.exp(-logit))).astype(np.float32)


def detection_boxes(rng, n, h, w, awkward=False):
    """Detections of 8-400 px in an h x w image, some reaching outside it; `awkward` adds
    boxes under a pixel, of zero width or height (some on pixel centres), inverted, larger
    than the image and non-finite."""
    xy = rng.uniform(-40, 1, (n, 2)) + rng.uniform(0, 1, (n, 2)) * [w, h]
    boxes = np.concatenate([xy, xy + np.exp(rng.uniform(np.log(8), np.log(400), (n, 2)))], 1)
    if awkward:
        kind = np.arange(n) % 8
        boxes[kind == 1, 2] = boxes[kind == 1, 0]
        boxes[kind == 2, 0] = boxes[kind == 2, 2] = np.floor(boxes[kind == 2, 0]) + 0.5
        boxes[kind == 3] = boxes[kind == 3][:, [2, 3, 0, 1]]
        boxes[kind == 4, 2:] = boxes[kind == 4, :2] + 0.3
        boxes[kind == 5] = [-30, -40, w + 50, h + 10]
        boxes[kind == 6, 0] = np.nan
    return boxes.astype(np.float32)


def torch_paste(masks, boxes, height, width, threshold=0.5):
    """detectron2's paste_masks_in_image done whole-image: torch grid_sample (bilinear,
    zeros outside, align_corners=False) maps mask pixel centres to x1 + (u + 0.5) w / S as
    paste_masks does; an independent float32 implementation, for checking and timing."""
    n = masks.shape[0]
    x1, y1, x2, y2 = boxes.unbind(1)
    bw, bh = (x2 - x1).clamp(min=1e-3), (y2 - y1).clamp(min=1e-3)
    xs = torch.arange(width, device=masks.device, dtype=torch.float32) + 0.5
    ys = torch.arange(height, device=masks.device, dtype=torch.float32) + 0.5
    gx = (xs[None, :] - x1[:, None]) / bw[:, None] * 2 - 1
    gy = (ys[None, :] - y1[:, None]) / bh[:, None] * 2 - 1
    grid = torch.stack([gx[:, None, :].expand(n, height, width),
                        gy[:, :, None].expand(n, height, width)], dim=3)
    pasted = torch.nn.functional.grid_sample(masks[:, None], grid, mode="bilinear",
                                             padding_mode="zeros", align_corners=False)
    return (pasted[:, 0] >= threshold).to(torch.uint8)


def check_paste_masks(lib, rng):
    for n, height, width, size, threshold, column_major in [
            (100, 800, 1333, 28, 0.5, 0), (100, 480, 640, 28, 0.5, 1),
            (300, 96, 128, 56, 0.3, 0), (40, 50, 70, 14, 0.5, 1), (1, 1, 1, 28, 0.5, 0)]:
        masks = blob_masks(rng, n, size)
        masks[1::3] = rng.uniform(size=masks[1::3].shape)  # values near 0.5 everywhere
        boxes = detection_boxes(rng, n, height, width, awkward=True)
        shape = (n, width, height) if column_major else (n, height, width)
        out_cpu = np.empty(shape, np.uint8)
        args = (n, size, height, width, threshold, column_major)
        lib.cpu("paste_masks", ptr(masks), ptr(boxes), ptr(out_cpu), *args)
        out = poisoned(shape, torch.uint8)
        lib.gpu("paste_masks", ptr(cuda(masks)), ptr(cuda(boxes)), ptr(out), *args)
        same("paste_masks gpu==cpu N={} {}x{} S={} threshold={} {}".format(
            n, height, width, size, threshold, "column-major" if column_major else "row-major"),
            out, out_cpu, "{} pixels set".format(int(out_cpu.sum())))
    # An independent implementation (finite boxes of realistic masks): only pixels whose
    # value float32 rounding leaves within ~1e-6 of the threshold may differ.
    masks, boxes = blob_masks(rng, 100), detection_boxes(rng, 100, 800, 1333)
    out = poisoned((100, 800, 1333), torch.uint8)
    dm, db = cuda(masks), cuda(boxes)
    lib.gpu("paste_masks", ptr(dm), ptr(db), ptr(out), 100, 28, 800, 1333, 0.5, 0)
    differ, set_ = int((out != torch_paste(dm, db, 800, 1333)).sum()), int(out.sum())
    check("paste_masks vs torch grid_sample N=100 800x1333", differ <= 1e-4 * set_,
          "{} of {} set pixels differ".format(differ, set_))


# ---------------------------------------------------------------------------- timing
def bench(fn):
    """Median ms of fn on the GPU (triton's do_bench when present, else CUDA events)."""
    try:
        from triton.testing import do_bench
        return float(do_bench(fn, warmup=25, rep=200, return_mode="median"))
    except ImportError:
        fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(50):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            e.synchronize()
            times.append(s.elapsed_time(e))
        return float(np.median(times))


def timing(case, ours, ref_name=None, ref=None, goal="", note=""):
    row = dict(case=case, ours_ms=ours, ref=ref_name, ref_ms=ref, goal=goal, note=note)
    RESULTS["timings"].append(row)
    log("TIME {}: ours {:.4f} ms{}{}".format(
        case, ours, "" if ref is None else ", {} {:.4f} ms ({:.1f}x)".format(ref_name, ref,
                                                                            ref / ours),
        " [{}]".format(note) if note else ""))


def copy_bandwidth():
    """Device copy bandwidth in bytes/s, counting bytes read plus written."""
    src = torch.empty(2 ** 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = bench(lambda: dst.copy_(src))
    return 2 * src.numel() / (ms * 1e-3)


def time_box_iou(lib, rng, bw):
    cases = [(20000, 2000, "random", "<= 0.08 ms (2x write floor)"),
             (20000, 100, "random", ""),
             (20000, 2000, "no pair overlaps", ""),      # diagnostics: cost of the division
             (20000, 2000, "every pair overlaps", "")]
    for n, m, kind, goal in cases:
        a, b = random_boxes(rng, n), random_boxes(rng, m)
        if kind == "no pair overlaps":
            b += 5000
        elif kind == "every pair overlaps":
            a = random_boxes(rng, n, 100, 400, 500)
            b = random_boxes(rng, m, 100, 400, 500)
        a, b = cuda(a), cuda(b)
        out = torch.empty((n, m), dtype=torch.float32, device="cuda")
        ours = bench(lambda: lib.gpu("box_iou", ptr(a), ptr(b), ptr(out), 1, n, m, 0.0,
                                     sync=False))
        ref = bench(lambda: torchvision.ops.box_iou(a, b)) if torchvision else None
        floor = 4.0 * n * m / bw * 1e3
        timing("box_iou {}x{} ({})".format(n, m, kind), ours, "torchvision", ref, goal,
               "write floor {:.4f} ms at {:.2f} TB/s; {:.2f}x floor".format(
                   floor, bw / 1e12, ours / floor))


def time_nms(lib, rng, bw):
    for n, kind in [(2000, "uniform"), (12000, "uniform"), (20000, "uniform"),
                    (12000, "clustered")]:
        gen = clustered_boxes if kind == "clustered" else image_boxes
        boxes, scores = cuda(gen(rng, n)[None]), cuda(distinct_scores(rng, 1, n))
        ws = lib.ws("nms", 1, n, n)
        out = (torch.empty((1, n), dtype=torch.int32, device="cuda"),
               torch.empty((1,), dtype=torch.int32, device="cuda"))
        ours = bench(lambda: nms_gpu(lib, boxes, scores, 0.7, n, sync=False, ws=ws, out=out))
        ref = bench(lambda: torchvision.ops.nms(boxes[0], scores[0], 0.7)) if torchvision else None
        timing("nms {} boxes ({}) iou 0.7".format(n, kind), ours, "torchvision", ref,
               ">= 4x faster than torchvision" if n == 12000 else "",
               "kept {}".format(out[1].item()))


def torch_proposals(boxes, scores, sizes, pre, post, thresh):
    """maskrcnn-benchmark's FPN selection in torch + torchvision, for comparison."""
    keep_b, keep_s, keep_l, start = [], [], [], 0
    for l, size in enumerate(sizes):
        s, i = scores[start:start + size].topk(min(pre, size))
        b = boxes[start:start + size][i]
        k = torchvision.ops.nms(b, s, thresh)[:post]
        keep_b.append(b[k]); keep_s.append(s[k]); start += size
    s, i = torch.cat(keep_s).topk(min(post, sum(len(x) for x in keep_s)))
    return torch.cat(keep_b)[i], s


def time_proposals(lib, rng, bw):
    sizes = fpn_level_sizes()
    n = sum(sizes)
    for kind in ("uniform", "clustered"):
        gen = clustered_boxes if kind == "clustered" else image_boxes
        boxes, scores = cuda(gen(rng, n)[None]), cuda(rng.uniform(size=(1, n)).astype(np.float32))
        lv = np.array(sizes, np.int64)
        ws = lib.ws("proposals", 1, n, 5, ptr(lv), 2000, 1000)
        out = (torch.empty((1, 1000, 4), device="cuda"), torch.empty((1, 1000), device="cuda"),
               torch.empty((1,), dtype=torch.int32, device="cuda"))
        ours = bench(lambda: proposals_gpu(lib, boxes, scores, sizes, 2000, 1000, 0.7,
                                           sync=False, ws=ws, out=out))
        ref = (bench(lambda: torch_proposals(boxes[0], scores[0], sizes, 2000, 1000, 0.7))
               if torchvision else None)
        timing("proposals 1 image, 5 FPN levels ({} boxes, {}), pre 2000, NMS 0.7, post 1000"
               .format(n, kind), ours, "torch topk + torchvision nms", ref, "< 2 ms",
               "kept {}".format(out[2].item()))


def time_targets(lib, rng, bw):
    n, m = sum(fpn_level_sizes()), 12
    anchors, gt = cuda(image_boxes(rng, n)), cuda(image_boxes(rng, m)[None])
    hw = cuda(np.array([[800, 1333]], np.float32))
    mt, best = torch.empty((1, n), dtype=torch.int32, device="cuda"), torch.empty((1, n),
                                                                                  device="cuda")
    lab, pos = torch.empty((1, n), device="cuda"), torch.empty((1, n), dtype=torch.int32,
                                                               device="cuda")
    tgt, msk = torch.empty((1, n, 4), device="cuda"), torch.empty((1, n, 4), device="cuda")
    mws, sws = lib.ws("match", 1, n, m), lib.ws("sample", 1, n)
    means, stds = np.zeros(4, np.float32), np.ones(4, np.float32)

    def run():
        lib.gpu("match", ptr(anchors), 1, ptr(gt), ptr(hw), ptr(mt), ptr(best), 1, n, m, 0.7,
                0.3, 1, 0.0, 0.0, ws=mws, sync=False)
        lib.gpu("sample", ptr(mt), ptr(lab), ptr(pos), 1, n, 256, 0.5, 1, ws=sws, sync=False)
        lib.gpu("box_encode", ptr(anchors), 1, ptr(gt), ptr(pos), ptr(tgt), ptr(msk), 1, n, m,
                ptr(means), ptr(stds), 0.0, sync=False)
    timing("RPN targets 1 image ({} anchors, {} gt): match + sample + encode".format(n, m),
           bench(run))
    rois, matches, verts, polys = (cuda(x) for x in polygon_inputs(rng, 1, 30, 512))
    out = torch.empty((1, 512, 28, 28), device="cuda")
    timing("polygon mask targets, 512 RoIs, 28x28", bench(
        lambda: lib.gpu("polygon_masks", ptr(rois), ptr(matches), ptr(verts), ptr(polys),
                        ptr(out), 1, 512, verts.shape[1], polys.shape[1], 28, sync=False)))


def objects_of_polygons(verts, polys, objects):
    """(1, objects, 4) boxes around each object's polygons (`polygon_inputs` layout)."""
    boxes = np.zeros((1, objects, 4), np.float32)
    for g in range(objects):
        rows = polys[0][polys[0][:, 0] == g]
        xy = np.concatenate([verts[0, first:first + count] for _, first, count in rows])
        boxes[0, g] = np.concatenate([xy.min(0), xy.max(0)])
    return boxes


def time_mask_rcnn_targets(lib, rng, bw, objects=12):
    """Everything Mask R-CNN's training step computes without gradients for one 800x1333
    image, in the network's order (models/mask_rcnn.py forward_train): RPN targets (match
    with low-quality matches, sample 256, encode), proposals (decode the RPN's deltas, per
    level top 12,000 + NMS 0.7, top 2,000), RoI targets (objects appended to the proposals,
    match at 0.5, sample 512 a quarter positive, positives first, encode with the box stds)
    and the 28x28 mask targets of the 128 leading rows. Between the kernels the network uses
    MXNet's concat / topk / gather; here torch's stand in for them (MXNet cannot run here)."""
    sizes = fpn_level_sizes()
    n, post = sum(sizes), 2000
    _, _, v, q = polygon_inputs(rng, 1, objects, 1)
    gt_host = objects_of_polygons(v, q, objects)
    verts, polys, gt = cuda(v), cuda(q), cuda(gt_host)
    anchors, hw = cuda(image_boxes(rng, n)), cuda(np.array([[800, 1333]], np.float32))
    deltas = cuda(rng.normal(0, 0.5, (1, n, 4)).astype(np.float32))
    scores = cuda(rng.uniform(size=(1, n)).astype(np.float32))
    zeros, ones = np.zeros(4, np.float32), np.ones(4, np.float32)
    stds = np.array([0.1, 0.1, 0.2, 0.2], np.float32)
    lv = np.array(sizes, np.int64)
    c = post + objects  # RoI candidates per image

    def empty(*shape, dtype=torch.float32):
        return torch.empty(shape, dtype=dtype, device="cuda")
    a_mt, a_best, a_lab, a_pos = (empty(1, n, dtype=torch.int32), empty(1, n), empty(1, n),
                                  empty(1, n, dtype=torch.int32))
    a_tgt, a_msk, boxes = empty(1, n, 4), empty(1, n, 4), empty(1, n, 4)
    props = (empty(1, post, 4), empty(1, post), empty(1, dtype=torch.int32))
    r_mt, r_best, r_lab, r_pos = (empty(1, c, dtype=torch.int32), empty(1, c), empty(1, c),
                                  empty(1, c, dtype=torch.int32))
    r_tgt, r_msk, masks = empty(1, 512, 4), empty(1, 512, 4), empty(1, 128, 28, 28)
    ws = dict(match=lib.ws("match", 1, n, objects), sample=lib.ws("sample", 1, n),
              proposals=lib.ws("proposals", 1, n, 5, ptr(lv), 12000, post),
              roi_match=lib.ws("match", 1, c, objects), roi_sample=lib.ws("sample", 1, c))

    def run():
        lib.gpu("match", ptr(anchors), 1, ptr(gt), ptr(hw), ptr(a_mt), ptr(a_best), 1, n,
                objects, 0.7, 0.3, 1, 0.0, 0.0, ws=ws["match"], sync=False)
        lib.gpu("sample", ptr(a_mt), ptr(a_lab), ptr(a_pos), 1, n, 256, 0.5, 1,
                ws=ws["sample"], sync=False)
        lib.gpu("box_encode", ptr(anchors), 1, ptr(gt), ptr(a_pos), ptr(a_tgt), ptr(a_msk), 1,
                n, objects, ptr(zeros), ptr(ones), 0.0, sync=False)
        lib.gpu("box_decode", ptr(deltas), ptr(anchors), 1, ptr(hw), ptr(boxes), 1, n,
                ptr(zeros), ptr(ones), 4.135, 0.0, sync=False)
        proposals_gpu(lib, boxes, scores, sizes, 12000, post, 0.7, sync=False,
                      ws=ws["proposals"], out=props)
        candidates = torch.cat([props[0], gt], dim=1).contiguous()
        lib.gpu("match", ptr(candidates), 1, ptr(gt), None, ptr(r_mt), ptr(r_best), 1, c, objects,
                0.5, 0.5, 0, 0.0, 0.0, ws=ws["roi_match"], sync=False)
        lib.gpu("sample", ptr(r_mt), ptr(r_lab), ptr(r_pos), 1, c, 512, 0.25, 3,
                ws=ws["roi_sample"], sync=False)
        keep = torch.topk(r_lab[0] + 1, 512).indices  # positives, then negatives
        rois = candidates[0, keep][None].contiguous()
        matches = r_pos[0, keep][None].contiguous()
        lib.gpu("box_encode", ptr(rois), 1, ptr(gt), ptr(matches), ptr(r_tgt), ptr(r_msk), 1,
                512, objects, ptr(zeros), ptr(stds), 0.0, sync=False)
        lib.gpu("polygon_masks", ptr(rois), ptr(matches), ptr(verts), ptr(polys), ptr(masks),
                1, 128, verts.shape[1], polys.shape[1], 28, sync=False)
    run()
    torch.cuda.synchronize()
    positives = int((r_lab > 0).sum().item())
    timing("Mask R-CNN target generation, 1 image 800x1333 ({} anchors, {} objects): RPN "
           "targets + proposals + RoI sampling + mask targets".format(n, objects), bench(run),
           goal="", note="{} RPN positives, {} RoI positives, kept {} proposals".format(
               int((a_lab > 0).sum().item()), positives, props[2].item()))


def time_paste_masks(lib, rng, bw):
    """Mask R-CNN's inference post-processing: 100 detections' 28x28 masks pasted into the
    network's 800x1333 input and into a 480x640 COCO image (evaluation pastes into the
    original), row-major and column-major (what pycocotools' RLE encoder reads)."""
    for height, width in [(800, 1333), (480, 640)]:
        masks, boxes = cuda(blob_masks(rng, 100)), cuda(detection_boxes(rng, 100, height, width))
        out = torch.empty((100, height, width), dtype=torch.uint8, device="cuda")
        floor = out.numel() / bw * 1e3  # writing the output once
        for column_major in (0, 1):
            ours = bench(lambda: lib.gpu("paste_masks", ptr(masks), ptr(boxes), ptr(out), 100,
                                         28, height, width, 0.5, column_major, sync=False))
            ref = None if column_major else bench(lambda: torch_paste(masks, boxes, height,
                                                                      width))
            timing("paste_masks 100 28x28 masks into {}x{} ({})".format(
                height, width, "column-major" if column_major else "row-major"), ours,
                None if ref is None else "torch grid_sample (detectron2's paste, whole image)",
                ref, "",
                "write floor {:.4f} ms; {:.2f}x floor; {} pixels set".format(
                    floor, ours / floor, int(out.sum().item())))


# ---------------------------------------------------------------------------- main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", type=int, action="append", help="SM arch to build (default 90)")
    p.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for the JSON")
    p.add_argument("--lib", help="use this kernels library instead of building")
    p.add_argument("--skip-timing", action="store_true")
    args = p.parse_args(argv)
    if torch is None:
        raise SystemExit("device/ops_kernels.py needs torch (device memory, references)")
    start = time.time()
    log("device: {}, torch {}, torchvision {}".format(
        torch.cuda.get_device_name(), torch.__version__,
        getattr(torchvision, "__version__", "absent")))
    path = args.lib
    if path is None:
        info = ops_build.build(os.path.join(HERE, "lib"), kernels_only=True,
                               archs=args.arch or [90])
        if not info["cuda"]:
            raise SystemExit("CUDA build failed: {}".format(info["cuda_error"]))
        path = info["kernels_library"]
    lib = Lib(path)
    rng = np.random.default_rng(2026)
    for fn in (check_box_iou, check_match, check_sample, check_anchors, check_coder, check_nms,
               check_proposals, check_polygon_masks, check_paste_masks):
        fn(lib, rng)
        torch.cuda.synchronize()
        del _ALIVE[:]
    if not args.skip_timing:
        bw = copy_bandwidth()
        log("device copy bandwidth: {:.2f} TB/s (read + write)".format(bw / 1e12))
        RESULTS["copy_bandwidth_Bps"] = bw
        for fn in (time_box_iou, time_nms, time_proposals, time_targets,
                   time_mask_rcnn_targets, time_paste_masks):
            fn(lib, rng, bw)
            torch.cuda.synchronize()
            del _ALIVE[:]
    failed = [c["name"] for c in RESULTS["checks"] if not c["ok"]]
    with open(os.path.join(args.out, "gpu_results.json"), "w") as f:
        json.dump(RESULTS, f, indent=1)
    log("\n| case | ops (ms) | reference | ref (ms) | speed-up | goal | note |")
    log("| --- | ---: | --- | ---: | ---: | --- | --- |")
    for r in RESULTS["timings"]:
        log("| {} | {:.4f} | {} | {} | {} | {} | {} |".format(
            r["case"], r["ours_ms"], r["ref"] or "", "" if r["ref_ms"] is None else
            "{:.4f}".format(r["ref_ms"]), "" if r["ref_ms"] is None else
            "{:.1f}x".format(r["ref_ms"] / r["ours_ms"]), r["goal"], r["note"]))
    log("SUMMARY: {} checks, {} failed{} ({:.0f} s)".format(
        len(RESULTS["checks"]), len(failed), (": " + ", ".join(failed)) if failed else "",
        time.time() - start))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
