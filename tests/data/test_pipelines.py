"""DALI classification pipelines against an OpenCV/numpy reference, and their output formats."""
import cv2
import mxnet as mx
import numpy as np
import pytest
from nvidia.dali import fn, pipeline_def, types

from data.dali_iterator import DALIMXNetIterator, LastBatchPolicy
from data.pipelines import (IMAGENET_MEAN, IMAGENET_STD, READER_NAME,
                            classification_train_pipeline, classification_val_pipeline)


@pytest.fixture(scope="module")
def photo_like_record(tmp_path_factory):
    """One 500x375 JPEG (gradients, shapes, noise: like a photo) in a .rec/.idx pair."""
    h, w = 375, 500
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h) + 60], -1)
    image = image.astype(np.uint8)
    cv2.circle(image, (200, 180), 80, (30, 200, 90), -1)
    cv2.rectangle(image, (300, 50), (450, 150), (220, 40, 40), -1)
    noise = np.random.default_rng(0).normal(0, 4, image.shape)
    image = np.clip(image + noise, 0, 255).astype(np.uint8)
    jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    prefix = str(tmp_path_factory.mktemp("photo") / "one")
    record = mx.recordio.MXIndexedRecordIO(prefix + ".idx", prefix + ".rec", "w")
    record.write_idx(0, mx.recordio.pack(mx.recordio.IRHeader(0, 3.0, 0, 0), jpeg))
    record.close()
    return prefix, jpeg


def _one_batch(pipeline, policy=LastBatchPolicy.PARTIAL):
    return next(iter(DALIMXNetIterator(pipeline, ["data", "label"], READER_NAME, policy)))


def _val_pipeline(prefix, layout="NHWC", dtype="float32", pad_channels=False, batch_size=1):
    return classification_val_pipeline(
        rec_path=prefix + ".rec", idx_path=prefix + ".idx", shard_id=0, num_shards=1,
        crop_size=(224, 224), resize_shorter=256, decoder_device="cpu", hw_decoder_load=0.0,
        dtype=dtype, layout=layout, pad_channels=pad_channels, batch_size=batch_size,
        num_threads=1, device_id=None)


def _reference(decoded_rgb):
    """Resize the shorter side to 256 (area filter), centre crop 224, normalise."""
    h, w = decoded_rgb.shape[:2]
    resized = cv2.resize(decoded_rgb, (round(w * 256 / h), 256), interpolation=cv2.INTER_AREA)
    return _crop_normalize(resized.astype(np.float32))


def _crop_normalize(resized):
    h, w = resized.shape[:2]
    # DALI centres the crop at (size - 224) / 2, rounding half up.
    y0, x0 = int(np.floor((h - 224) / 2 + 0.5)), int(np.floor((w - 224) / 2 + 0.5))
    crop = resized[y0:y0 + 224, x0:x0 + 224]
    return (crop - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)


def test_val_pipeline_matches_opencv_reference(photo_like_record):
    prefix, jpeg = photo_like_record
    batch = _one_batch(_val_pipeline(prefix))
    out = batch["data"].asnumpy()[0]
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR),
                           cv2.COLOR_BGR2RGB)
    diff = np.abs(out - _reference(decoded))
    # Tolerances in normalised units (1 unit = one standard deviation, about 57 grey levels).
    # DALI's antialiased linear resize and OpenCV's area filter differ only along sharp
    # edges: on average by under 1 grey level, at the worst edge pixel by under 20.
    assert diff.mean() < 0.015, diff.mean()
    assert np.percentile(diff, 99) < 0.1
    assert diff.max() < 0.35
    assert batch["label"].asnumpy().tolist() == [3] and batch["label"].dtype == np.int32


def test_val_crop_and_normalisation_are_exact(photo_like_record):
    prefix, _ = photo_like_record

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def resized_only():
        jpegs, _ = fn.readers.mxnet(path=prefix + ".rec", index_path=prefix + ".idx")
        images = fn.decoders.image(jpegs, device="cpu", output_type=types.RGB)
        return fn.resize(images, resize_shorter=256)

    pipe = resized_only()
    pipe.build()
    (resized,) = pipe.run()
    resized = np.array(resized[0]).astype(np.float32)
    assert resized.shape == (256, 341, 3)
    out = _one_batch(_val_pipeline(prefix))["data"].asnumpy()[0]
    np.testing.assert_allclose(out, _crop_normalize(resized), atol=1e-5)


@pytest.mark.parametrize("layout, dtype, pad, shape", [
    ("NCHW", "float32", False, (4, 3, 64, 48)),
    ("NHWC", "float32", False, (4, 64, 48, 3)),
    ("NCHW", "float16", False, (4, 3, 64, 48)),
    ("NHWC", "float16", True, (4, 64, 48, 4)),
])
def test_train_pipeline_shapes_dtypes_layouts(tiny_dataset, layout, dtype, pad, shape):
    pipeline = classification_train_pipeline(
        rec_path=str(tiny_dataset / "train.rec"), idx_path=str(tiny_dataset / "train.idx"),
        shard_id=0, num_shards=1, crop_size=(64, 48), random_area=(0.08, 1.0),
        random_aspect_ratio=(0.75, 4 / 3), decoder_device="cpu", hw_decoder_load=0.0,
        dtype=dtype, layout=layout, pad_channels=pad, batch_size=4, num_threads=1,
        device_id=None, seed=3)
    batch = _one_batch(pipeline, LastBatchPolicy.DROP)
    data = batch["data"]
    assert data.shape == shape and data.dtype == np.dtype(dtype)
    assert batch["label"].shape == (4,) and batch["label"].dtype == np.int32
    values = data.asnumpy().astype(np.float32)
    if pad:
        assert np.all(values[..., 3] == 0)  # the padding channel is zero
        values = values[..., :3]
    # Normalised: within the range ImageNet statistics allow for 0..255 inputs.
    assert values.min() >= -2.2 and values.max() <= 2.7
    assert values.std() > 0.1


def test_train_augmentation_is_random_and_reproducible_per_seed(tiny_dataset):
    """The same seed gives the same augmented batch; another seed another one."""
    def first_batch(seed):
        pipeline = classification_train_pipeline(
            rec_path=str(tiny_dataset / "train.rec"), idx_path=str(tiny_dataset / "train.idx"),
            shard_id=0, num_shards=1, crop_size=(32, 32), random_area=(0.08, 1.0),
            random_aspect_ratio=(0.75, 4 / 3), decoder_device="cpu", hw_decoder_load=0.0,
            dtype="float32", layout="NCHW", pad_channels=False, batch_size=8, num_threads=1,
            device_id=None, seed=seed)
        return _one_batch(pipeline, LastBatchPolicy.DROP)

    a, b, a_again = first_batch(1), first_batch(2), first_batch(1)
    np.testing.assert_array_equal(a["data"].asnumpy(), a_again["data"].asnumpy())
    assert not np.allclose(a["data"].asnumpy(), b["data"].asnumpy())


@pytest.fixture(scope="module")
def asymmetric_records(tmp_path_factory):
    """64 copies of one square image whose left half is dark and right half bright."""
    image = np.zeros((32, 32, 3), np.uint8)
    image[:, :16] = (30, 60, 90)
    image[:, 16:] = (220, 200, 180)
    cv2.circle(image, (8, 8), 5, (250, 250, 250), -1)  # and a mark in the top-left corner
    jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    prefix = str(tmp_path_factory.mktemp("asymmetric") / "same")
    record = mx.recordio.MXIndexedRecordIO(prefix + ".idx", prefix + ".rec", "w")
    for i in range(64):
        record.write_idx(i, mx.recordio.pack(mx.recordio.IRHeader(0, 0.0, i, 0), jpeg))
    record.close()
    return prefix


def test_train_pipeline_flips_half_of_the_images(asymmetric_records):
    """With a crop of the whole image, the only augmentation left is the horizontal flip: each
    output is the image or its exact mirror, and each orientation comes about half the time."""
    pipeline = classification_train_pipeline(
        rec_path=asymmetric_records + ".rec", idx_path=asymmetric_records + ".idx",
        shard_id=0, num_shards=1, crop_size=(32, 32), random_area=(1.0, 1.0),
        random_aspect_ratio=(1.0, 1.0), decoder_device="cpu", hw_decoder_load=0.0,
        dtype="float32", layout="NCHW", pad_channels=False, batch_size=64, num_threads=1,
        device_id=None, seed=5)
    images = _one_batch(pipeline, LastBatchPolicy.DROP)["data"].asnumpy()
    assert images.shape == (64, 3, 32, 32)
    left, right = images[..., :16].mean(axis=(1, 2, 3)), images[..., 16:].mean(axis=(1, 2, 3))
    flipped = left > right  # the dark half is on the right
    assert 20 <= flipped.sum() <= 44, flipped.sum()  # binomial(64, 0.5): 32 +- 3 sd
    upright = images[~flipped][0]
    for image, is_flipped in zip(images, flipped):
        expected = upright[..., ::-1] if is_flipped else upright
        np.testing.assert_allclose(image, expected, atol=1e-5)
