"""Photo-like JPEGs in RecordIO files, so that loader and real-data benchmarks decode what
ImageNet would make them decode.

Each image is 500x375 (ImageNet's most common size): a smooth colour gradient with
low-frequency shading, a few blurred anti-aliased shapes, and mild sensor-like noise, saved at
JPEG quality 90: about 48 KB, close to the entropy of real photos of that size. Flat test
patterns would decode several times faster and flatter every loader.
"""
import os

import numpy as np

from data.recordio import RecordFileWriter, pack_image_record

PHOTO_SIZE = (500, 375)  # width, height
JPEG_QUALITY = 90


def photo(rng, width=PHOTO_SIZE[0], height=PHOTO_SIZE[1]):
    """One photo-like RGB image, uint8 (height, width, 3), from the numpy Generator `rng`."""
    import cv2
    corners = rng.uniform(0, 255, (2, 2, 3)).astype(np.float32)
    image = cv2.resize(corners, (width, height), interpolation=cv2.INTER_LINEAR)
    shading = rng.uniform(-40, 40, (6, 8, 3)).astype(np.float32)
    image += cv2.resize(shading, (width, height), interpolation=cv2.INTER_CUBIC)
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(4, 10))):
        _draw_shape(image, rng)
    image = cv2.GaussianBlur(image, (0, 0), 1.5)
    noise = (rng.standard_normal(image.shape, dtype=np.float32) * 7).astype(np.int16)
    return cv2.add(image, noise, dtype=cv2.CV_8U)


def _draw_shape(image, rng):
    import cv2
    height, width = image.shape[:2]
    color = rng.uniform(0, 255, 3).tolist()
    center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
    if rng.random() < 0.5:
        axes = (int(rng.integers(10, 120)), int(rng.integers(10, 120)))
        cv2.ellipse(image, center, axes, float(rng.uniform(0, 180)), 0, 360, color, -1,
                    cv2.LINE_AA)
    else:
        points = rng.integers(-100, 100, (int(rng.integers(3, 7)), 2)) + center
        cv2.fillPoly(image, [points.astype(np.int32)], color, cv2.LINE_AA)


def encode_jpeg(image, quality=JPEG_QUALITY):
    """JPEG bytes of an RGB uint8 image."""
    import cv2
    ok, buffer = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return buffer.tobytes()


def write_photo_records(prefix, count, seed, num_classes=1000):
    """Write `count` photo-like JPEGs to `prefix`.rec and `prefix`.idx.

    Labels cycle through ``0 .. num_classes - 1``.

    Returns
    -------
    int
        Bytes of JPEG data written.
    """
    rng = np.random.default_rng(seed)
    total = 0
    with RecordFileWriter(f"{prefix}.rec", f"{prefix}.idx") as writer:
        for i in range(count):
            jpeg = encode_jpeg(photo(rng))
            total += len(jpeg)
            writer.write(i, pack_image_record(i % num_classes, i, jpeg))
        writer.commit()
    return total


def make_dataset(folder, num_images, num_classes=1000, seed=0):
    """train.rec/.idx with `num_images` photo-like JPEGs and val.rec/.idx with a quarter as
    many (at least one), the layout ``--data-root`` expects.

    Returns
    -------
    dict
        ``{"train": (images, bytes), "val": (images, bytes)}``.
    """
    os.makedirs(folder, exist_ok=True)
    val_images = max(1, num_images // 4)
    return {"train": (num_images, write_photo_records(os.path.join(folder, "train"),
                                                      num_images, seed, num_classes)),
            "val": (val_images, write_photo_records(os.path.join(folder, "val"), val_images,
                                                    seed + 1, num_classes))}
