"""Tests for data.demo: layout, determinism, atomic output, 'no colour shortcut' and 'shape
signal present' on the default classification set, and the COCO detection annotations."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from data import demo

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LUMA = np.array([0.114, 0.587, 0.299])  # BGR


def run_cli(*args, **kwargs):
    return subprocess.run([sys.executable, '-m', 'data.demo', *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300, **kwargs)


def tree_bytes(root):
    out = {}
    for path in sorted(glob.glob(os.path.join(root, '**', '*'), recursive=True)):
        if os.path.isfile(path):
            out[os.path.relpath(path, root)] = open(path, 'rb').read()
    return out


# ----------------------------------------------------------------------------- classification
@pytest.fixture(scope='module')
def default_set(tmp_path_factory):
    """The default classification set, made through the CLI (also times it)."""
    out = tmp_path_factory.mktemp('cls') / 'demo'
    start = time.perf_counter()
    res = run_cli('classification', '--out', out, '--no-progress')
    seconds = time.perf_counter() - start
    assert res.returncode == 0, res.stderr
    return str(out), res.stdout, seconds


def load_split(root, split):
    images, labels = [], []
    for label, folder in enumerate(sorted(os.listdir(os.path.join(root, split)))):
        for path in sorted(glob.glob(os.path.join(root, split, folder, '*.jpg'))):
            images.append(cv2.imread(path))
            labels.append(label)
    return np.array(images), np.array(labels)


def sq_distances(a, b):
    return (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None] - 2 * a @ b.T


def nearest_centroid(train_x, train_y, test_x):
    centroids = np.stack([train_x[train_y == k].mean(0) for k in range(train_y.max() + 1)])
    return sq_distances(test_x, centroids).argmin(1)


def knn(train_x, train_y, test_x, k=5):
    votes = np.zeros((len(test_x), train_y.max() + 1))
    for j in np.argsort(sq_distances(test_x, train_x), 1)[:, :k].T:
        votes[np.arange(len(test_x)), train_y[j]] += 1
    return votes.argmax(1)


def standardize(train_x, test_x):
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-9
    return (train_x - mu) / sd, (test_x - mu) / sd


def test_default_layout_counts_and_speed(default_set):
    root, stdout, seconds = default_set
    names = ['%02d_%s' % (i, n) for i, n in enumerate(demo.CLASS_NAMES)]
    assert sorted(os.listdir(root)) == ['demo.json', 'train', 'val']
    for split, count in (('train', 200), ('val', 30)):
        assert sorted(os.listdir(os.path.join(root, split))) == names  # sorted = label order
        for name in names:
            files = sorted(os.listdir(os.path.join(root, split, name)))
            assert files == ['%04d.jpg' % i for i in range(count)]
    img = cv2.imread(os.path.join(root, 'val', names[3], '0007.jpg'), cv2.IMREAD_UNCHANGED)
    assert img.shape == (80, 80, 3)
    manifest = json.load(open(os.path.join(root, 'demo.json')))
    assert manifest['files'] == 2300 and manifest['images'] == {'train': 2000, 'val': 300}
    assert 'demo: wrote classification set to %s' % root in stdout
    assert seconds < 60  # about 7 s measured on 2 cores; 60 s only guards against regressions


def test_mean_colour_does_not_predict_the_class(default_set):
    """Nearest-centroid and 5-NN on (mean B, G, R, brightness) must stay below 2x chance.

    Chance is 10%. With 300 val images one accuracy has a standard error of about 1.7% at
    10%, so 20% is about 6 standard errors above chance: a real colour or brightness cue
    would cross it; luck would not.
    """
    train_x, train_y = load_split(default_set[0], 'train')
    val_x, val_y = load_split(default_set[0], 'val')

    def feature(x):
        mean = x.reshape(len(x), -1, 3).mean(1)
        return np.concatenate([mean, (mean @ LUMA)[:, None]], 1)
    a, b = standardize(feature(train_x), feature(val_x))
    for classify in (nearest_centroid, knn):
        accuracy = (classify(a, train_y, b) == val_y).mean()
        assert accuracy < 0.2, (classify.__name__, accuracy)


def test_shape_features_do_predict_the_class(default_set):
    """The same classifiers on HOG features of the grey image (no colour) score far above
    chance (measured 0.92 nearest-centroid, 0.997 5-NN), so the classes carry shape/texture
    information, and the classifiers above would have found a colour cue had there been one."""
    train_x, train_y = load_split(default_set[0], 'train')
    val_x, val_y = load_split(default_set[0], 'val')
    hog = cv2.HOGDescriptor((64, 64), (16, 16), (8, 8), (8, 8), 9)

    def feature(x):
        return np.array([hog.compute(cv2.resize(cv2.cvtColor(i, cv2.COLOR_BGR2GRAY), (64, 64),
                                                interpolation=cv2.INTER_AREA)).ravel() for i in x])
    a, b = feature(train_x), feature(val_x)
    for classify in (nearest_centroid, knn):
        accuracy = (classify(a, train_y, b) == val_y).mean()
        assert accuracy > 0.6, (classify.__name__, accuracy)


def test_same_seed_gives_identical_bytes(tmp_path):
    kw = dict(num_classes=10, train_per_class=3, val_per_class=1, size=64, progress=False)
    demo.make_classification(str(tmp_path / 'a'), seed=5, **kw)
    demo.make_classification(str(tmp_path / 'b'), seed=5, **kw)
    demo.make_classification(str(tmp_path / 'c'), seed=6, **kw)
    a, b, c = (tree_bytes(str(tmp_path / n)) for n in 'abc')
    assert len(a) == 41 and a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a if k.endswith('.jpg'))


def test_existing_output_is_reused_refused_or_forced(tmp_path):
    kw = dict(num_classes=2, train_per_class=2, val_per_class=1, size=48, progress=False)
    out = str(tmp_path / 'set')
    first = demo.make_classification(out, **kw)
    assert not first['reused']
    mtime = os.path.getmtime(os.path.join(out, 'demo.json'))
    assert demo.make_classification(out, **kw)['reused']
    assert os.path.getmtime(os.path.join(out, 'demo.json')) == mtime
    res = run_cli('classification', '--out', out, '--num-classes', 3, '--train-per-class', 2,
                  '--val-per-class', 1, '--size', 48)
    assert res.returncode == 1 and 'pass --force' in res.stderr and out in res.stderr
    other = tmp_path / 'photos'
    other.mkdir()
    (other / 'holiday.jpg').write_bytes(b'x')
    with pytest.raises(demo.DemoError, match='holds other files'):
        demo.make_classification(str(other), **kw)
    demo.make_classification(str(other), force=True, **kw)
    assert not (other / 'holiday.jpg').exists() and (other / 'demo.json').exists()
    assert sorted(os.listdir(tmp_path)) == ['photos', 'set']  # no partial or old folders


def test_killed_run_leaves_no_complete_looking_output(tmp_path):
    out = tmp_path / 'det'
    proc = subprocess.Popen([sys.executable, '-m', 'data.demo', 'detection', '--out', str(out),
                             '--train-images', '2000', '--no-progress'], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = tmp_path / '.det.partial' / 'train2017'
    deadline = time.time() + 60
    while time.time() < deadline and not (partial.exists() and len(os.listdir(partial)) > 5):
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert partial.exists() and not out.exists()
    res = run_cli('detection', '--out', out, '--train-images', 3, '--val-images', 1)
    assert res.returncode == 0, res.stderr
    assert sorted(os.listdir(tmp_path)) == ['det']


# ----------------------------------------------------------------------------- detection
@pytest.fixture(scope='module')
def detection_set(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('det') / 'coco')
    manifest = demo.make_detection(out, train_images=40, val_images=8, progress=False)
    return out, manifest


def polygon_area(poly):
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


@pytest.mark.parametrize('split', ['train2017', 'val2017'])
def test_detection_annotations_match_the_drawn_objects(detection_set, split):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    root, _ = detection_set
    coco = COCO(os.path.join(root, 'annotations', 'instances_%s.json' % split))
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(demo.DETECTION_CATEGORIES)
    assert len(coco.getImgIds()) == (40 if split == 'train2017' else 8)
    overlapping_pairs = 0
    for image_id in coco.getImgIds():
        info = coco.loadImgs(image_id)[0]
        img = cv2.imread(os.path.join(root, split, info['file_name'])).astype(np.float32)
        assert img.shape == (info['height'], info['width'], 3) == (320, 320, 3)
        anns = sorted(coco.loadAnns(coco.getAnnIds(imgIds=image_id)), key=lambda a: a['id'])
        assert 1 <= len(anns) <= 6
        masks = [coco.annToMask(a).astype(bool) for a in anns]  # drawing order = id order
        for i, (ann, mask) in enumerate(zip(anns, masks)):
            poly = np.array(ann['segmentation'][0]).reshape(-1, 2)
            x0, y0 = poly.min(0)
            x1, y1 = poly.max(0)
            assert ann['bbox'] == [x0, y0, x1 - x0, y1 - y0] and ann['iscrowd'] == 0
            assert ann['area'] == pytest.approx(polygon_area(poly), abs=1e-6)
            perimeter = np.linalg.norm(poly - np.roll(poly, 1, 0), axis=1).sum()
            rle_area = mask_utils.area(coco.annToRLE(ann))
            assert abs(rle_area - ann['area']) <= 0.5 * perimeter + 4, (ann['id'], rle_area)
            later = np.zeros_like(mask)
            for m in masks[i + 1:]:
                later |= m
            overlapping_pairs += sum(bool((mask & m).any()) for m in masks[i + 1:])
            visible = mask & ~later
            assert visible.sum() >= 0.7 * mask.sum()  # at most 25% hidden (+ edge pixels)
            check_drawn_object(img, visible, masks, ann['id'])
    if split == 'train2017':
        assert overlapping_pairs > 0


def check_drawn_object(img, visible, masks, ann_id):
    """Pixels nearer the object's colour than the surrounding background's must coincide
    with the annotated (visible) mask: IoU >= 0.85."""
    kernel = np.ones((3, 3), np.uint8)
    interior = cv2.erode(visible.astype(np.uint8), kernel, iterations=2).astype(bool)
    anything = np.zeros_like(visible)
    for m in masks:
        anything |= m
    ring = cv2.dilate(visible.astype(np.uint8), kernel, iterations=4).astype(bool) & ~cv2.dilate(
        anything.astype(np.uint8), kernel, iterations=1).astype(bool)
    if interior.sum() < 20 or ring.sum() < 20:
        return
    inside, outside = img[interior].mean(0), img[ring].mean(0)
    assert np.linalg.norm(inside - outside) > 30, ann_id
    region = visible | ring
    near_object = np.linalg.norm(img - inside, axis=2) < np.linalg.norm(img - outside, axis=2)
    predicted = near_object & region
    iou = (predicted & visible).sum() / (predicted | visible).sum()
    assert iou >= 0.85, (ann_id, iou)


def test_detection_is_deterministic_and_cli_reports(detection_set, tmp_path):
    root, manifest = detection_set
    again = demo.make_detection(str(tmp_path / 'again'), train_images=40, val_images=8,
                                progress=False)
    assert again['sha256'] == manifest['sha256']
    assert tree_bytes(root) == tree_bytes(str(tmp_path / 'again'))
    res = run_cli('detection', '--out', tmp_path / 'cli', '--train-images', 2, '--val-images', 1,
                  '--no-progress')
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith('demo: wrote detection set to %s' % (tmp_path / 'cli'))
    assert '--train-images' in run_cli('detection', '--help').stdout


def test_a_non_square_detection_set_has_its_width_and_height(tmp_path):
    from pycocotools.coco import COCO
    out = tmp_path / 'wide'
    res = run_cli('detection', '--out', out, '--train-images', 6, '--val-images', 1,
                  '--size', '320x240', '--no-progress')
    assert res.returncode == 0, res.stderr
    assert 'images of 320x240' in res.stdout
    assert json.load(open(out / 'demo.json'))['params']['size'] == [320, 240]
    coco = COCO(str(out / 'annotations' / 'instances_train2017.json'))
    for info in coco.loadImgs(coco.getImgIds()):
        img = cv2.imread(str(out / 'train2017' / info['file_name'])).astype(np.float32)
        assert img.shape == (info['height'], info['width'], 3) == (240, 320, 3)
        anns = sorted(coco.loadAnns(coco.getAnnIds(imgIds=info['id'])), key=lambda a: a['id'])
        masks = [coco.annToMask(a).astype(bool) for a in anns]
        for i, (ann, mask) in enumerate(zip(anns, masks)):
            x, y, w, h = ann['bbox']
            assert 0 <= x and x + w <= 320 and 0 <= y and y + h <= 240
            later = np.zeros_like(mask)
            for m in masks[i + 1:]:
                later |= m
            check_drawn_object(img, mask & ~later, masks, ann['id'])
    assert 'WIDTHxHEIGHT' in run_cli('detection', '--help').stdout
    bad = run_cli('detection', '--out', tmp_path / 'bad', '--size', '320x240x3')
    assert bad.returncode == 2 and 'WIDTHxHEIGHT' in bad.stderr
