"""Deterministic demo data sets: a class-per-folder JPEG tree and a COCO-format detection set.

Usage::

    python -m data.demo classification --out DIR [--num-classes 10] [--train-per-class 200]
                                       [--val-per-class 30] [--size 80] [--seed 0] [--force]
    python -m data.demo detection --out DIR [--train-images 256] [--val-images 64]
                                  [--size 320 | --size 320x240] [--seed 0] [--force]

Classification: ``DIR/{train,val}/<NN_name>/<i>.jpg``, 10 classes (6 shapes, 4 textures)
that differ by shape or texture only. Each image's mean colour is drawn from one
class-independent distribution and the picture is built around it (``image = mean +
(mask - mean(mask)) * contrast + lighting + noise``), so no global colour or brightness
statistic tells the classes apart. Shapes get a random position, size and rotation (up to
+-15 degrees), textures a random period, phase and orientation; fore- and background colours,
lighting ramps, blotches, noise and JPEG compression are drawn the same way for every class. The
defaults (200 + 30 images per class, 80x80) train a ResNet-18 at 64x64 under
random-resized-crop to >= 99% val top-1 in 15 epochs (see ``_SHAPE_RADII`` below).

Detection: ``DIR/{train2017,val2017}/<id>.jpg`` and ``DIR/annotations/instances_*.json``,
square images or ``WIDTHxHEIGHT`` ones (e.g. 320x240, COCO's 4:3 landscape shape), with exact
polygon masks (vertices on a 1/16-pixel grid, drawn as given; circles are
64-gons), boxes equal to the polygon extent, areas equal to the polygon areas. Objects may
overlap; an object is never more than 25% hidden by later ones, and its polygon is the whole
(amodal) shape.

Both are byte-identical for the same arguments (one numpy Generator per image, seeded from
``--seed`` and the image's position; fixed JPEG quality). Output is written to a hidden
partial folder and renamed into place, with ``demo.json`` describing it.
"""
import argparse
import hashlib
import json
import os
import shutil
import sys
import time

import cv2
import numpy as np
from tqdm import tqdm

__all__ = ['CLASS_NAMES', 'DETECTION_CATEGORIES', 'DemoError', 'main', 'make_classification',
           'make_detection', 'render_classification_image', 'render_detection_image']

CLASS_NAMES = ('circle', 'square', 'triangle', 'cross', 'star', 'crescent',
               'stripes', 'checker', 'dots', 'zigzag')
DETECTION_CATEGORIES = ('circle', 'square', 'triangle', 'star', 'cross')
GENERATOR_VERSION = 1
_SUPERSAMPLE = 4
_LUMA = np.array([0.114, 0.587, 0.299])  # BGR


class DemoError(Exception):
    """Bad arguments or output location; the message says what to do."""


# ----------------------------------------------------------------------------- geometry
def _polygon(kind, radius, rng, rotation=np.pi):
    """Vertices (N, 2) of a shape centred on the origin, turned by up to +-``rotation``."""
    if kind == 'circle':
        a = np.arange(64) * (2 * np.pi / 64)
        pts = np.stack([np.cos(a), np.sin(a)], 1)
    elif kind == 'square':
        a = np.pi / 4 + np.arange(4) * (np.pi / 2)
        pts = np.stack([np.cos(a), np.sin(a)], 1)
    elif kind == 'triangle':
        a = np.pi / 2 + np.arange(3) * (2 * np.pi / 3) + rng.uniform(-0.12, 0.12, 3)
        pts = np.stack([np.cos(a), np.sin(a)], 1)
    elif kind == 'star':
        a = np.arange(10) * (np.pi / 5)
        r = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.4, 0.5))
        pts = np.stack([r * np.cos(a), r * np.sin(a)], 1)
    elif kind == 'cross':
        w = rng.uniform(0.28, 0.38)
        pts = np.array([(w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w), (-w, -w), (-w, -1),
                        (w, -1), (w, -w), (1, -w), (1, w), (w, w)])
    else:
        raise ValueError(kind)
    t = rng.uniform(-rotation, rotation)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return radius * pts @ rot.T


def _fill(canvas, points, value, origin=(0.0, 0.0)):
    """Fill a polygon given in image pixel units (pixel i spans [i, i+1)) on a supersampled
    canvas whose top-left corner is at ``origin``."""
    k = _SUPERSAMPLE
    hires = (np.asarray(points) - origin) * k - 0.5  # OpenCV puts pixel centres on integers
    cv2.fillPoly(canvas, [np.round(hires * 16).astype(np.int32)], value, cv2.LINE_8, shift=4)


def _downsample(canvas):
    h, w = canvas.shape
    return cv2.resize(canvas.astype(np.float32), (w // _SUPERSAMPLE, h // _SUPERSAMPLE),
                      interpolation=cv2.INTER_AREA)


def _place(radii, size, rng, tries=200):
    """Centres for disjoint circles of the given radii inside the image, or None."""
    centres = []
    for r in radii:
        for _ in range(tries):
            c = rng.uniform(r + 1, size - r - 1, 2)
            if all(np.hypot(*(c - d)) > r + q + 2 for d, q in zip(centres, radii)):
                centres.append(c)
                break
        else:
            return None
    return centres


# ----------------------------------------------------------------------------- classification
# The knobs below were tuned on the GPU with a torchvision ResNet-18 at 64x64 under
# random-resized-crop (scale 0.25-1): 10 classes x 200 images reach >= 99% val top-1 in 15
# epochs with SGD (lr 0.025-0.1, batch 32-64) and AdamW. Fewer nuisances (one shape, +-15 degrees,
# fg brighter than bg, strong contrast) made the difference: with 2-3 shapes per image, any
# rotation, random polarity and weaker contrast the same training stayed at 20-60%.
_SHAPE_RADII = {1: (0.30, 0.42)}  # shapes per image: circumradius range / image side
_ROTATION = np.pi / 12  # shapes and textures turn by at most this (stripes/zigzag: or +90)
_TEXTURE_SCALE = 1.4  # texture periods grow with this
_MIN_CONTRAST = (100.0, 50.0)  # fg-bg colour distance and brightness difference, at least
_POLARITY = 1  # 1: fg brighter than bg, 0: either
_NOISE = (1.0, 3.0)  # pixel noise sigma range
_LIGHT, _BLOTCH = 25.0, 6.0  # lighting ramp and blotch amplitudes


def _shape_mask(kind, size, rng):
    n = list(_SHAPE_RADII)[int(rng.integers(len(_SHAPE_RADII)))]
    lo, hi = _SHAPE_RADII[n]
    radii = list(rng.uniform(lo, hi, n) * size)
    centres = _place(radii, size, rng)
    while centres is None:
        radii = [r * 0.9 for r in radii]
        centres = _place(radii, size, rng)
    total = np.zeros((size * _SUPERSAMPLE,) * 2, np.uint8)
    for c, r in zip(centres, radii):
        one = np.zeros_like(total)
        if kind == 'crescent':
            _fill(one, c + _polygon('circle', r, rng), 1)
            t = rng.uniform(0, 2 * np.pi)
            offset = r * rng.uniform(0.35, 0.5) * np.array([np.cos(t), np.sin(t)])
            _fill(one, c + offset + _polygon('circle', r * rng.uniform(0.75, 0.85), rng), 0)
        else:
            _fill(one, c + _polygon(kind, r, rng, _ROTATION), 1)
        np.maximum(total, one, out=total)
    return _downsample(total)


def _texture_mask(kind, size, rng):
    k = _SUPERSAMPLE
    x = (np.arange(size * k, dtype=np.float32) + 0.5) / k
    t = rng.uniform(-_ROTATION, _ROTATION) + (np.pi / 2 if kind in ('stripes', 'zigzag') and
                                              rng.uniform() < 0.5 else 0.0)
    scale = size * _TEXTURE_SCALE  # texture periods are fractions of this
    u = x[None, :] * np.cos(t) + x[:, None] * np.sin(t)
    v = -x[None, :] * np.sin(t) + x[:, None] * np.cos(t)
    if kind == 'stripes':
        p = rng.uniform(0.11, 0.19) * scale
        m = np.mod(u / p + rng.uniform(), 1) < rng.uniform(0.35, 0.6)
    elif kind == 'checker':
        a = rng.uniform(0.09, 0.15) * scale
        m = (np.floor(u / a + rng.uniform()) + np.floor(v / a + rng.uniform())) % 2 == 0
    elif kind == 'dots':
        s = rng.uniform(0.13, 0.2) * scale
        du = np.mod(u / s + rng.uniform(), 1) - 0.5
        dv = np.mod(v / s + rng.uniform(), 1) - 0.5
        m = np.hypot(du, dv) < rng.uniform(0.24, 0.34)
    elif kind == 'zigzag':
        p = rng.uniform(0.13, 0.2) * scale
        lam = p * rng.uniform(1.3, 2.0)
        tri = 2 * np.abs(np.mod(v / lam + rng.uniform(), 1) - 0.5) * 2 - 1
        m = np.mod((u + tri * lam * rng.uniform(0.3, 0.45)) / p + rng.uniform(), 1) \
            < rng.uniform(0.35, 0.55)
    else:
        raise ValueError(kind)
    return _downsample(m.astype(np.uint8))


def _mean_and_contrast(rng):
    """Image mean colour and fg-bg contrast, drawn the same way for every class."""
    while True:
        mean = rng.uniform(64, 192, 3)
        bound = np.minimum(mean, 255 - mean)
        contrast = rng.uniform(-bound, bound)
        luma = contrast @ _LUMA
        if np.linalg.norm(contrast) >= _MIN_CONTRAST[0] and abs(luma) >= _MIN_CONTRAST[1]:
            return mean, (contrast if _POLARITY == 0 or luma > 0 else -contrast)


def _finish(img, rng, light=None, blotch=None):
    """Add zero-mean lighting, blotches, noise and a little blur; return uint8."""
    light = _LIGHT if light is None else light
    blotch = _BLOTCH if blotch is None else blotch
    height, width = img.shape[:2]
    gx = (np.arange(width, dtype=np.float32) + 0.5) / width - 0.5
    gy = (np.arange(height, dtype=np.float32) + 0.5) / height - 0.5
    t = rng.uniform(0, 2 * np.pi)
    ramp = (gx[None, :] * np.cos(t) + gy[:, None] * np.sin(t)) * rng.uniform(0, light)
    field = cv2.resize(rng.standard_normal((4, 4)).astype(np.float32), (width, height),
                       interpolation=cv2.INTER_CUBIC)
    field = (field - field.mean()) * rng.uniform(0, blotch)
    img = img + (ramp + field)[..., None]
    img = img + rng.standard_normal(img.shape, dtype=np.float32) * rng.uniform(*_NOISE)
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 0.7))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def render_classification_image(class_index, size, rng):
    """Render one classification image (BGR uint8, ``size`` x ``size``).

    Parameters
    ----------
    class_index : int
        Index into :data:`CLASS_NAMES`.
    size : int
        Image side in pixels.
    rng : numpy.random.Generator
        The image's own generator.
    """
    kind = CLASS_NAMES[class_index]
    if kind in ('stripes', 'checker', 'dots', 'zigzag'):
        mask = _texture_mask(kind, size, rng)
    else:
        mask = _shape_mask(kind, size, rng)
    mean, contrast = _mean_and_contrast(rng)
    img = mean.astype(np.float32) + (mask - mask.mean())[..., None] * contrast.astype(np.float32)
    return _finish(img, rng)


def _classification_jobs(num_classes, train_per_class, val_per_class, seed):
    for split, code, count in (('train', 0, train_per_class), ('val', 1, val_per_class)):
        for c in range(num_classes):
            for i in range(count):
                folder = '%02d_%s' % (c, CLASS_NAMES[c])
                yield (os.path.join(split, folder, '%04d.jpg' % i), c, (seed, 0, code, c, i))


def make_classification(out, num_classes=10, train_per_class=200, val_per_class=30, size=80,
                        seed=0, quality=90, force=False, progress=True):
    """Write the class-per-folder demo set ``out/{train,val}/<NN_name>/<i>.jpg``.

    Parameters
    ----------
    out : str
        Output folder (created atomically).
    num_classes : int
        1 to ``len(CLASS_NAMES)``; the first ones are used.
    train_per_class, val_per_class : int
        Images per class and split.
    size : int
        Image side in pixels (at least 32).
    seed : int
        Data-set seed.
    quality : int
        JPEG quality.
    force : bool
        Replace a different non-empty ``out``.
    progress : bool
        tqdm progress bar on stderr.

    Returns
    -------
    dict
        The manifest written to ``out/demo.json`` (``reused`` True when an identical set was
        already there).
    """
    if not 1 <= num_classes <= len(CLASS_NAMES):
        raise DemoError('--num-classes must be within 1..%d' % len(CLASS_NAMES))
    if size < 32 or train_per_class < 1 or val_per_class < 0 or not 1 <= quality <= 100:
        raise DemoError('need --size >= 32, --train-per-class >= 1, --val-per-class >= 0 and '
                        '--quality within 1..100')
    params = dict(kind='classification', num_classes=num_classes,
                  train_per_class=train_per_class, val_per_class=val_per_class, size=size,
                  seed=seed, quality=quality, version=GENERATOR_VERSION)
    jobs = list(_classification_jobs(num_classes, train_per_class, val_per_class, seed))

    def build(tmp):
        for rel, c, key in tqdm(jobs, desc='classification', unit='img', file=sys.stderr,
                                disable=not progress):
            img = render_classification_image(c, size, np.random.default_rng(key))
            _write_jpeg(os.path.join(tmp, rel), img, quality)
        return dict(classes=['%02d_%s' % (c, CLASS_NAMES[c]) for c in range(num_classes)],
                    images=dict(train=num_classes * train_per_class,
                                val=num_classes * val_per_class))
    return _atomic_build(out, params, build, force)


# ----------------------------------------------------------------------------- detection
def _quantize(points):
    return np.round(np.asarray(points) * 16) / 16  # exact in JSON, exact for fillPoly(shift=4)


def render_detection_image(size, rng, max_objects=6, max_hidden=0.25):
    """Render one detection image and its objects.

    Parameters
    ----------
    size : int or (int, int)
        The side of a square image, or (width, height).

    Returns
    -------
    (numpy.ndarray, list of dict)
        BGR uint8 image and, in drawing order, ``{'category': name, 'polygon': (N, 2)}``.
    """
    width, height = (size, size) if np.isscalar(size) else size
    bg_mean = rng.uniform(40, 215, 3)
    img = np.empty((height, width, 3), np.float32)
    img[:] = bg_mean
    objects = []
    for slot in range(int(rng.integers(1, max_objects + 1))):
        for _ in range(1000 if slot == 0 else 30):
            kind = DETECTION_CATEGORIES[int(rng.integers(len(DETECTION_CATEGORIES)))]
            radius = float(np.exp(rng.uniform(np.log(10), np.log(min(width, height) * 0.28))))
            poly = _polygon(kind, radius, rng)
            lo, hi = poly.min(0), poly.max(0)
            poly = _quantize(rng.uniform(-lo + 1, np.array([width, height]) - hi - 1) + poly)
            cover, box = _cover(poly, width, height)
            new = cover > 0.5
            colour = rng.uniform(0, 255, 3)
            if not new.any() or np.linalg.norm(colour - bg_mean) < 80:
                continue
            ok = True
            for o in objects:  # keep every earlier object at least (1 - max_hidden) visible
                m = o['mask'][box] & new
                if m.any() and (np.linalg.norm(colour - o['colour']) < 80 or o['hidden']
                                + int((o['visible'][box] & new).sum()) > max_hidden * o['pixels']):
                    ok = False
                    break
            if ok:
                region = img[box]
                region += cover[..., None] * (colour.astype(np.float32) - region)
                for o in objects:
                    o['hidden'] += int((o['visible'][box] & new).sum())
                    o['visible'][box] &= ~new
                full = np.zeros((height, width), bool)
                full[box] = new
                objects.append(dict(category=kind, polygon=poly, colour=colour, mask=full,
                                    visible=full.copy(), pixels=int(new.sum()), hidden=0))
                break
    return _finish(img, rng, light=50.0, blotch=20.0), [
        dict(category=o['category'], polygon=o['polygon']) for o in objects]


def _cover(poly, width, height):
    """Anti-aliased coverage of a polygon inside its pixel box: (float32 array, box slices)."""
    (x0, y0), (x1, y1) = np.floor(poly.min(0)) - 1, np.ceil(poly.max(0)) + 1
    x0, y0, x1, y1 = int(max(x0, 0)), int(max(y0, 0)), int(min(x1, width)), int(min(y1, height))
    canvas = np.zeros(((y1 - y0) * _SUPERSAMPLE, (x1 - x0) * _SUPERSAMPLE), np.uint8)
    _fill(canvas, poly, 1, origin=(x0, y0))
    return _downsample(canvas), (slice(y0, y1), slice(x0, x1))


def _annotation(poly, category_id, image_id, ann_id):
    x, y = poly[:, 0], poly[:, 1]
    area = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    return dict(id=ann_id, image_id=image_id, category_id=category_id,
                segmentation=[[float(v) for v in poly.ravel()]],
                bbox=[float(x.min()), float(y.min()), float(x.max() - x.min()),
                      float(y.max() - y.min())],
                area=float(area), iscrowd=0)


def make_detection(out, train_images=256, val_images=64, size=320, seed=0, quality=90,
                   force=False, progress=True):
    """Write the COCO-format demo set (``train2017``, ``val2017``, ``annotations``).

    Parameters
    ----------
    out : str
        Output folder (created atomically).
    train_images, val_images : int
        Images per split; image ids are 1.. for train and 1000001.. for val.
    size : int or (int, int)
        Image side in pixels, or (width, height); each at least 64.
    seed, quality, force, progress
        As in :func:`make_classification`.

    Returns
    -------
    dict
        The manifest written to ``out/demo.json``.
    """
    width, height = (size, size) if np.isscalar(size) else (int(size[0]), int(size[1]))
    if min(width, height) < 64 or train_images < 1 or val_images < 0 or not 1 <= quality <= 100:
        raise DemoError('need --size >= 64, --train-images >= 1, --val-images >= 0 and '
                        '--quality within 1..100')
    # A square set keeps its old parameters (and so its manifest) unchanged.
    shape = width if width == height else [width, height]
    params = dict(kind='detection', train_images=train_images, val_images=val_images,
                  size=shape, seed=seed, quality=quality, version=GENERATOR_VERSION)
    categories = [dict(id=i + 1, name=n, supercategory='shape')
                  for i, n in enumerate(DETECTION_CATEGORIES)]

    def build(tmp):
        bar = tqdm(total=train_images + val_images, desc='detection', unit='img',
                   file=sys.stderr, disable=not progress)
        counts = {}
        for split, code, count, first_id in (('train2017', 0, train_images, 1),
                                             ('val2017', 1, val_images, 1000001)):
            images, anns = [], []
            for i in range(count):
                image_id = first_id + i
                rng = np.random.default_rng((seed, 1, code, i))
                img, objects = render_detection_image((width, height), rng)
                name = '%012d.jpg' % image_id
                _write_jpeg(os.path.join(tmp, split, name), img, quality)
                images.append(dict(id=image_id, file_name=name, height=height, width=width))
                for o in objects:
                    cat = DETECTION_CATEGORIES.index(o['category']) + 1
                    anns.append(_annotation(o['polygon'], cat, image_id, len(anns) + 1))
                bar.update()
            doc = dict(info=dict(description='data.demo synthetic shapes', version='%d' %
                                 GENERATOR_VERSION), licenses=[], images=images,
                       annotations=anns, categories=categories)
            path = os.path.join(tmp, 'annotations', 'instances_%s.json' % split)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'w') as f:
                json.dump(doc, f, sort_keys=True, separators=(',', ':'))
            counts[split] = dict(images=len(images), annotations=len(anns))
        bar.close()
        return dict(categories=list(DETECTION_CATEGORIES), images=counts)
    return _atomic_build(out, params, build, force)


# ----------------------------------------------------------------------------- output
def _write_jpeg(path, img, quality):
    ok, buf = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError('JPEG encoding failed for %s' % path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(buf.tobytes())


def _tree_digest(root):
    h, n = hashlib.sha256(), 0
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            h.update(os.path.relpath(path, root).encode() + b'\0')
            with open(path, 'rb') as f:
                h.update(hashlib.sha256(f.read()).digest())
            n += 1
    return h.hexdigest(), n


def _read_manifest(out):
    try:
        with open(os.path.join(out, 'demo.json')) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _atomic_build(out, params, build, force):
    """Run ``build(tmp_dir)`` and rename the result to ``out`` (see module docstring)."""
    out = os.path.abspath(out)
    if os.path.isdir(out) and os.listdir(out):
        old = _read_manifest(out)
        if old is not None and old.get('params') == params and not force:
            old['reused'] = True
            return old
        if not force:
            raise DemoError('%s is not empty and holds %s; pass --force to replace it or choose '
                            'another --out' % (out, 'a demo set made with other arguments'
                                               if old else 'other files'))
    elif os.path.exists(out) and not os.path.isdir(out):
        raise DemoError('%s exists and is not a folder; choose another --out' % out)
    parent, base = os.path.split(out)
    tmp = os.path.join(parent, '.%s.partial' % base)
    try:
        os.makedirs(parent, exist_ok=True)
        if os.path.exists(tmp):
            shutil.rmtree(tmp)  # left by an interrupted run
        os.makedirs(tmp)
    except OSError as exc:
        raise DemoError('cannot create %s (%s); choose a writable --out' % (tmp, exc.strerror))
    start = time.perf_counter()
    try:
        manifest = dict(params=params, **build(tmp))
        manifest['sha256'], manifest['files'] = _tree_digest(tmp)
        with open(os.path.join(tmp, 'demo.json'), 'w') as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
        if os.path.exists(out):
            trash = os.path.join(parent, '.%s.old' % base)
            os.rename(out, trash)
            os.rename(tmp, out)
            shutil.rmtree(trash)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest['reused'] = False
    manifest['seconds'] = time.perf_counter() - start
    return manifest


# ----------------------------------------------------------------------------- CLI
def parse_args(argv=None):
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog='python -m data.demo', description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='kind', required=True)
    c = sub.add_parser('classification', help='class-per-folder JPEG tree: '
                       'OUT/{train,val}/<NN_name>/*.jpg')
    c.add_argument('--num-classes', type=int, default=10, help='number of classes, taken in '
                   'this order: %s (default: %%(default)s)' % ', '.join(CLASS_NAMES))
    c.add_argument('--train-per-class', type=int, default=200, help='train images per class '
                   '(default: %(default)s)')
    c.add_argument('--val-per-class', type=int, default=30, help='val images per class '
                   '(default: %(default)s)')
    c.add_argument('--size', type=int, default=80, help='image side in pixels '
                   '(default: %(default)s)')
    d = sub.add_parser('detection', help='COCO-format detection/instance-segmentation set: '
                       'OUT/{train2017,val2017}, OUT/annotations')
    d.add_argument('--train-images', type=int, default=256, help='train images '
                   '(default: %(default)s)')
    d.add_argument('--val-images', type=int, default=64, help='val images (default: %(default)s)')
    d.add_argument('--size', type=_detection_size, default=320, metavar='S|WxH',
                   help='image side in pixels, or WIDTHxHEIGHT, e.g. 320x240 '
                   '(default: %(default)s)')
    for p in (c, d):
        p.add_argument('--out', required=True, help='output folder (written atomically)')
        p.add_argument('--seed', type=int, default=0, help='data-set seed (default: %(default)s)')
        p.add_argument('--quality', type=int, default=90, help='JPEG quality '
                       '(default: %(default)s)')
        p.add_argument('--force', action='store_true', help='replace a non-empty --out that '
                       'holds other files or a set made with other arguments')
        p.add_argument('--no-progress', dest='progress', action='store_false',
                       help='no progress bar')
    return parser.parse_args(argv)


def _detection_size(text):
    """--size of a detection set: "320" (square) or "320x240" (width x height)."""
    try:
        sides = [int(v) for v in text.lower().split('x')]
    except ValueError:
        sides = []
    if len(sides) not in (1, 2):
        raise argparse.ArgumentTypeError('expected a side or WIDTHxHEIGHT, e.g. 320 or 320x240, '
                                         'got %r' % text)
    return sides[0] if len(sides) == 1 else tuple(sides)


def _shown_size(size):
    return '%dx%d' % ((size, size) if np.isscalar(size) else tuple(size))


def main(argv=None):
    """Command-line entry point; returns the exit status."""
    args = parse_args(argv)
    common = dict(seed=args.seed, quality=args.quality, force=args.force, progress=args.progress)
    try:
        if args.kind == 'classification':
            m = make_classification(args.out, args.num_classes, args.train_per_class,
                                    args.val_per_class, args.size, **common)
            what = '%d classes, %d train + %d val images of %dx%d' % (
                args.num_classes, m['images']['train'], m['images']['val'], args.size, args.size)
        else:
            m = make_detection(args.out, args.train_images, args.val_images, args.size, **common)
            what = '%d train + %d val images of %s, %d + %d objects' % (
                m['images']['train2017']['images'], m['images']['val2017']['images'],
                _shown_size(args.size), m['images']['train2017']['annotations'],
                m['images']['val2017']['annotations'])
    except DemoError as exc:
        print('demo: error: %s' % exc, file=sys.stderr)
        return 1
    if m['reused']:
        print('demo: %s already holds this %s set (%s); nothing to do (--force rebuilds it)'
              % (os.path.abspath(args.out), args.kind, what))
    else:
        print('demo: wrote %s set to %s: %s in %.1f s'
              % (args.kind, os.path.abspath(args.out), what, m['seconds']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
