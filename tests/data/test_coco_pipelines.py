"""The SSD pipelines on COCO (data/coco_pipelines.py) through the DALI-to-MXNet iterator."""
import json
import os

import numpy as np
import pytest
from nvidia.dali import fn, pipeline_def

from data.coco import prepare_coco
from data.coco_pipelines import READER_NAME, ssd_eval_pipeline, ssd_train_pipeline
from data.dali_iterator import DALIMXNetIterator, LastBatchPolicy
from data.pipelines import IMAGENET_MEAN, IMAGENET_STD
from tests.data.test_coco import demo_coco, quirky_coco, write_split  # noqa: F401 (fixtures)

TRAIN_OUTPUTS = ["images", "boxes", "labels"]
EVAL_OUTPUTS = ["images", "image_ids", "image_sizes"]
# No colour change: pixels can be compared with the source image.
NO_JITTER = dict(brightness=(1.0, 1.0), contrast=(1.0, 1.0), saturation=(1.0, 1.0),
                 hue=(0.0, 0.0))
NO_CROP = dict(crop_scaling=(1.0, 1.0))  # the only window of the image's size is the image


def _train(dataset, batch_size, image_size=32, max_boxes=4, seed=0, dtype="float32",
           layout="NCHW", **augmentation):
    pipeline = ssd_train_pipeline(
        file_root=dataset.image_dir, annotations_file=dataset.annotation_file, shard_id=0,
        num_shards=1, image_size=image_size, max_boxes=max_boxes, decoder_device="cpu", hw_decoder_load=0.0, dtype=dtype, layout=layout,
        batch_size=batch_size, num_threads=1, device_id=None, seed=seed, **augmentation)
    return DALIMXNetIterator(pipeline, TRAIN_OUTPUTS, READER_NAME, LastBatchPolicy.DROP)


def _eval(dataset, batch_size, shard_id=0, num_shards=1, image_size=32):
    pipeline = ssd_eval_pipeline(
        file_root=dataset.image_dir, annotations_file=dataset.annotation_file,
        shard_id=shard_id, num_shards=num_shards, image_size=image_size,
        decoder_device="cpu", hw_decoder_load=0.0, dtype="float32", layout="NCHW",
        batch_size=batch_size, num_threads=1, device_id=None)
    return DALIMXNetIterator(pipeline, EVAL_OUTPUTS, READER_NAME, LastBatchPolicy.PARTIAL)


def _samples(iterator, epochs=1):
    """Every sample of `epochs` epochs as a dict of numpy arrays."""
    out = []
    for _ in range(epochs):
        for batch in iterator:
            arrays = {k: v.asnumpy() for k, v in batch.items()}
            out += [{k: v[i] for k, v in arrays.items()} for i in range(len(arrays["images"]))]
    return out


def _pixels(images):
    """NCHW normalised float images back to 0-255 HWC."""
    return images.transpose(1, 2, 0) * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)


def _flip(boxes):
    return np.stack([1 - boxes[:, 2], boxes[:, 1], 1 - boxes[:, 0], boxes[:, 3]], axis=1)


def test_train_outputs_are_dense_and_padded_with_minus_one(demo_coco, tmp_path):
    """The batch format SSD's targets rely on: fixed rows, valid rows first, -1 after them,
    boxes inside the image, labels 1..C."""
    dataset = prepare_coco(demo_coco, "train2017", str(tmp_path))
    iterator = _train(dataset, batch_size=4, max_boxes=3, dtype="float16", layout="NHWC")
    batch = next(iter(iterator))
    shapes = {k: (v.shape, np.dtype(v.dtype).name) for k, v in batch.items()}
    assert shapes == {"images": ((4, 32, 32, 3), "float16"),
                      "boxes": ((4, 3, 4), "float32"), "labels": ((4, 3), "int32")}
    boxes, labels = batch["boxes"].asnumpy(), batch["labels"].asnumpy()
    valid = labels >= 1
    assert valid[:, 0].all()  # skip_empty, and the crop keeps at least one box here
    assert not np.any(valid[:, 1:] & ~valid[:, :-1])  # no padding row before a valid one
    assert np.all(labels[~valid] == -1) and np.all(boxes[~valid] == -1)
    assert labels[valid].max() <= dataset.num_classes  # the demo set has no crowd
    inside = boxes[valid]
    assert np.all((inside >= 0) & (inside <= 1))
    assert np.all(inside[:, 2] > inside[:, 0]) and np.all(inside[:, 3] > inside[:, 1])


def test_quirky_images_decode_to_three_channels_with_their_boxes(quirky_coco):
    """A greyscale JPEG and a PNG come out as RGB; the clipped box, the crowd region (after
    the objects, with the crowd label) and the dropped boxes arrive as normalised; the empty
    image is skipped."""
    root, cache = quirky_coco
    dataset = prepare_coco(root, "val2017", cache)
    samples = _samples(_train(dataset, batch_size=3, **NO_CROP), epochs=2)
    assert len(samples) == 6
    expected = {  # (boxes as ltrb / image size, labels, crowd boxes): file order kept
        (100, 80): ([[0.2, 0.25, 0.6, 0.625], [0.8, 0.75, 1.0, 1.0]], [2, 3],
                    [[0.1, 0.125, 0.4, 0.5]]),
        (60, 40): ([[0.1, 0.1, 0.6, 0.6]], [3], []),
        (50, 50): ([[0.1, 0.1, 0.5, 0.5]], [1], [])}
    seen = set()
    for sample in samples:
        assert sample["images"].shape == (3, 32, 32)
        is_object = (sample["labels"] >= 1) & (sample["labels"] != dataset.crowd_label)
        labels = sample["labels"][is_object].tolist()
        boxes = sample["boxes"][: len(labels)]
        is_crowd = sample["labels"] == dataset.crowd_label
        assert not is_crowd[: len(labels)].any()  # crowd regions come after the objects
        crowd = sample["boxes"][is_crowd]
        size = next(k for k, v in expected.items() if v[1] == labels)
        seen.add(size)
        want, _, want_crowd = expected[size]
        want, want_crowd = (np.array(v, np.float32).reshape(-1, 4) for v in (want, want_crowd))
        flipped = not np.allclose(boxes, want, atol=1e-5)
        if flipped:
            want, want_crowd = _flip(want), _flip(want_crowd)
        np.testing.assert_allclose(boxes, want, atol=1e-5)
        np.testing.assert_allclose(crowd, want_crowd, atol=1e-5)
    assert seen == set(expected)  # image 4 (no annotations) never comes
    grey = [s for s in samples if s["labels"][0] == 1][0]["images"]
    assert np.abs(grey[0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]
                  - (grey[1] * IMAGENET_STD[1] + IMAGENET_MEAN[1])).max() < 1.01  # R == G
    # (to a grey level: the colour jitter rounds its output to uint8)


def test_flip_maps_x1_x2_to_one_minus_x2_x1_like_the_image(tmp_path):
    """Without a crop the boxes are the file's, or mirrored exactly when the image is."""
    width, height = 64, 48
    ramp = np.tile(np.arange(width, dtype=np.uint8) * 4, (height, 1))  # brighter to the right
    images, annotations = [], []
    for i in range(6):
        images.append(dict(id=i + 1, file_name=f"{i}.png", width=width, height=height,
                           pixels=np.stack([ramp] * 3, axis=2)))
        annotations.append(dict(id=i + 1, image_id=i + 1, category_id=1, iscrowd=0, area=1.0,
                                bbox=[4.0 + 5 * i, 6.0, 12.0 + i, 20.0]))
    write_split(str(tmp_path / "coco"), "train2017", images, annotations,
                [dict(id=1, name="thing")])
    dataset = prepare_coco(str(tmp_path / "coco"), "train2017", str(tmp_path / "cache"))
    flips = []
    for sample in _samples(_train(dataset, batch_size=3, **NO_CROP, **NO_JITTER), epochs=4):
        pixels = _pixels(sample["images"])[:, :, 0]
        flipped = pixels[:, -1].mean() < pixels[:, 0].mean()
        box = sample["boxes"][0]
        i = int(round((box[2] - box[0]) * width - 12.0))  # image i's box is 12 + i wide
        x1, x2 = (4.0 + 5 * i) / width, (4.0 + 5 * i + 12.0 + i) / width
        want = [1 - x2, 6 / height, 1 - x1, 26 / height] if flipped else \
            [x1, 6 / height, x2, 26 / height]
        np.testing.assert_allclose(box, want, atol=1e-5)
        flips.append(flipped)
    assert 0 < sum(flips) < len(flips)  # both ways happen


def _coordinate_image(width, height):
    """Red = x, green = y (in pixels): the output's pixels tell which window was cropped."""
    x, y = np.meshgrid(np.arange(width), np.arange(height))
    return np.stack([np.full_like(x, 128), y, x], axis=2).astype(np.uint8)  # BGR for cv2


def _window(pixels, size):
    """(x0, y0, x1, y1) of the cropped window, relative to the 256 x 192 source image, and
    whether it was mirrored, from a coordinate image's output `pixels` (HWC, RGB)."""
    # Output pixel j samples the source at x0 + (j + 0.5) * w / size - 0.5 (pixel centres);
    # on a linear ramp the resize is exact away from the borders.
    a, b = size // 4, 3 * size // 4
    red, green = pixels[size // 2, :, 0], pixels[:, size // 2, 1]
    mirrored = red[b] < red[a]
    if mirrored:
        red = red[::-1]
    w = (red[b] - red[a]) * size / (b - a)
    h = (green[b] - green[a]) * size / (b - a)
    x0 = red[a] + 0.5 - (a + 0.5) * w / size
    y0 = green[a] + 0.5 - (a + 0.5) * h / size
    return np.array([x0 / 256, y0 / 192, (x0 + w) / 256, (y0 + h) / 192]), mirrored


def _reference(boxes, window, mirrored):
    """numpy's crop and flip: keep boxes whose centre is in the window, clip them to it,
    make them relative to it, mirror them; plus whether a centre is too near an edge to
    tell."""
    x0, y0, x1, y1 = window
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    keep = (cx > x0) & (cx < x1) & (cy > y0) & (cy < y1)
    margin = np.minimum.reduce([np.abs(cx - x0), np.abs(cx - x1), np.abs(cy - y0),
                                np.abs(cy - y1)])
    out = boxes[keep].copy()
    out[:, [0, 2]] = (np.clip(out[:, [0, 2]], x0, x1) - x0) / (x1 - x0)
    out[:, [1, 3]] = (np.clip(out[:, [1, 3]], y0, y1) - y0) / (y1 - y0)
    return (_flip(out) if mirrored else out), keep, margin.min() < 0.02


def test_random_crop_and_flip_match_a_numpy_reference(tmp_path):
    """The boxes follow the pixels: the window the image shows (read back from coordinate-
    coloured images) cuts and moves the boxes as a numpy crop and flip does."""
    rng = np.random.default_rng(1)
    images, annotations, source = [], [], []
    for i in range(8):
        images.append(dict(id=i + 1, file_name=f"{i}.png", width=256, height=192,
                           pixels=_coordinate_image(256, 192)))
        # Two boxes: the crop must reach its IoU threshold with every box (NVIDIA's rule),
        # which more boxes rarely allow. Classes 2i+1, 2i+2 tell the images apart.
        xy = rng.uniform([0, 0], [200, 140], (2, 2))
        wh = rng.uniform(20, 56, (2, 2))
        for j in range(2):
            annotations.append(dict(id=10 * i + j + 1, image_id=i + 1, category_id=2 * i + j + 1,
                                    iscrowd=0, area=1.0, bbox=[*xy[j], *wh[j]]))
        source.append(np.concatenate([xy, xy + wh], axis=1) / [256, 192, 256, 192])
    write_split(str(tmp_path / "coco"), "train2017", images, annotations,
                [dict(id=c + 1, name=f"c{c}") for c in range(16)])
    dataset = prepare_coco(str(tmp_path / "coco"), "train2017", str(tmp_path / "cache"))
    size, checked, cropped, mirrored_count = 64, 0, 0, 0
    for sample in _samples(_train(dataset, batch_size=4, image_size=size, **NO_JITTER),
                           epochs=6):
        window, mirrored = _window(_pixels(sample["images"]), size)
        valid = sample["labels"] >= 1
        if not valid.any():
            continue  # no box to tell the image by (the crop leaves one here, in practice)
        image = (sample["labels"][0] - 1) // 2
        want, keep, ambiguous = _reference(source[image], window, mirrored)
        if ambiguous:
            continue  # a box centre on the window's edge: either answer is right
        np.testing.assert_array_equal(sample["labels"][valid], 2 * image + np.flatnonzero(keep) + 1)
        np.testing.assert_allclose(sample["boxes"][valid], want, atol=0.02)
        checked += 1
        cropped += window[2] - window[0] < 0.95 or window[3] - window[1] < 0.95
        mirrored_count += mirrored
    assert checked >= 30 and cropped >= 8 and 0 < mirrored_count < checked


def test_rows_beyond_max_boxes_are_cut_crowd_regions_first(quirky_coco):
    root, cache = quirky_coco
    dataset = prepare_coco(root, "val2017", cache)
    # Image 1 has objects of classes 2 and 3, then a crowd region.
    for max_boxes, first_image in ((1, [2]), (2, [2, 3]), (3, [2, 3, dataset.crowd_label])):
        seen = False
        for sample in _samples(_train(dataset, batch_size=3, max_boxes=max_boxes, **NO_CROP)):
            assert sample["boxes"].shape == (max_boxes, 4)
            assert sample["labels"].shape == (max_boxes,)
            if sample["labels"][0] == 2:
                assert sample["labels"].tolist() == first_image
                seen = True
        assert seen
    assert dataset.check_max_boxes(1) == (1, 2)  # image 1: 3 rows, 2 beyond the first


def _without_annotations(root, tmp_path, image_ids):
    """A copy of `root`'s val2017 annotation file in which `image_ids` have no objects."""
    with open(os.path.join(root, "annotations", "instances_val2017.json")) as f:
        doc = json.load(f)
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] not in image_ids]
    path = str(tmp_path / "val_with_empty_images.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    return path, sorted(im["id"] for im in doc["images"])


@pytest.mark.parametrize("num_shards", [2, 3])
def test_eval_shards_give_every_image_exactly_once(demo_coco, tmp_path, num_shards):
    """7 images (two without objects) over 2 or 3 workers, batch 2: padded shards, partial
    last batches, and still each image once."""
    source, all_ids = _without_annotations(demo_coco, tmp_path, {1000002, 1000007})
    dataset = prepare_coco(demo_coco, "val2017", str(tmp_path / "cache"),
                           annotation_file=source)
    iterators = [_eval(dataset, 2, shard, num_shards) for shard in range(num_shards)]
    assert len({len(it) for it in iterators}) == 1  # equal batch counts on every worker
    for _ in range(2):
        seen = [int(i) for it in iterators for batch in it
                for i in batch["image_ids"].asnumpy()]
        assert sorted(seen) == all_ids


def test_eval_outputs_ids_and_original_sizes(quirky_coco):
    """Ids and [height, width] as the image files have them, for mapping boxes back; the
    empty image too."""
    root, cache = quirky_coco
    dataset = prepare_coco(root, "val2017", cache)
    batches = list(_eval(dataset, 3))
    assert [b["images"].shape for b in batches] == [(3, 3, 32, 32), (1, 3, 32, 32)]
    ids = np.concatenate([b["image_ids"].asnumpy() for b in batches])
    sizes = np.concatenate([b["image_sizes"].asnumpy() for b in batches])
    assert ids.dtype == np.int32 and sizes.dtype == np.int32
    assert ids.tolist() == [1, 2, 3, 4]
    assert sizes.tolist() == [[80, 100], [40, 60], [50, 50], [30, 40]]


def test_iterator_names_an_unpadded_output(quirky_coco):
    """Ragged outputs cannot be one NDArray: the error says which output and to pad it."""
    root, cache = quirky_coco
    dataset = prepare_coco(root, "val2017", cache)

    @pipeline_def
    def unpadded():
        _, boxes, labels = fn.readers.coco(file_root=dataset.image_dir,
                                           annotations_file=dataset.annotation_file,
                                           name=READER_NAME)
        return boxes, labels

    pipeline = unpadded(batch_size=4, num_threads=1, device_id=None)
    with pytest.raises(ValueError, match=r"output 'boxes' is not one dense batch \(sample "
                                         r"shapes: \(0, 4\), \(1, 4\), \(3, 4\)\).*fn\.pad"):
        DALIMXNetIterator(pipeline, ["boxes", "labels"], READER_NAME, LastBatchPolicy.PARTIAL)
