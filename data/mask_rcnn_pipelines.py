"""DALI pipelines for Mask R-CNN on COCO: one for training (with polygon masks), one for
evaluation.

Both read the normalised annotation file of `data.coco.prepare_coco` made with
``keep_segmentation=True`` (contiguous classes 1..C, crowd regions as category C+1 after each
image's objects) with ``fn.readers.coco(polygon_masks=True)``, and resize as the recipe
(maskrcnn-benchmark's ``Resize``): the shorter side to `min_size` (one drawn per sample from
`min_sizes` when training at several scales), unless the longer side would then exceed
`max_size`, in which case the longer side to `max_size`; aspect kept. Each image is then padded
at its bottom and right with zeros so that the batch has one size, a multiple of 32 (the
stride of P6's input). The resized size is computed in the pipeline from the encoded image's
header, so that boxes and polygons are scaled to it on the CPU for both decoder devices.

Outputs (B = batch size, M = `max_boxes`, Q = `max_polygons`, V = `max_vertices`; H x W the
padded size of the batch):

================  ===============  =======  ================================================
output            shape            dtype    content
================  ===============  =======  ================================================
``images``        (B, 3, H, W)     `dtype`  RGB, normalised with ImageNet mean and std, NCHW;
                                            zero (after normalisation) outside ``im_hw``
``boxes``         (B, M, 4)        float32  objects, then crowd regions: [x1, y1, x2, y2] in
                                            pixels of the resized image; -1 rows pad
``labels``        (B, M)           int32    class 1..C, crowd label C+1, -1 padding
``polygons``      (B, Q, 3)        int32    DALI's polygon rows [object row, first vertex,
                                            end vertex); -1 rows pad. `polygon_rows` turns
                                            them into `ops.polygon_masks`' rows
``vertices``      (B, V, 2)        float32  [x, y] in pixels of the resized image; -1 pads
``im_hw``         (B, 2)           int32    [height, width] of the resized image (before
                                            padding)
``image_ids``     (B,)             int32    (evaluation) the COCO image id
``image_sizes``   (B, 2)           int32    (evaluation) original [height, width]
================  ===============  =======  ================================================

Crowd regions come with boxes but no polygons (their segmentations are RLE, which DALI's
polygon output leaves out): the network ignores proposals inside them. Rows beyond the maxima
are cut; `polygon_rows` also drops the polygons of cut objects and those whose vertices were
cut, and counts them. Boxes, labels, polygons, vertices and sizes stay on the CPU for both
decoder devices; images are on the GPU with ``"mixed"``.
"""
import math

import numpy as np
from nvidia.dali import fn, pipeline_def, types
from nvidia.dali.data_node import DataNode
import nvidia.dali.math as dmath

from data.coco_pipelines import _fixed_rows, _read_coco
from data.pipelines import _decoder_options, _normalize

# The recipe (seed 000, maskrcnn-benchmark's e2e_mask_rcnn_R_50_FPN_1x).
MIN_SIZE = 800
MAX_SIZE = 1333
SIZE_DIVISIBILITY = 32
# Polygon and vertex rows per image (boxes: --max-boxes, 100); images beyond them are counted
# by `data.coco.CocoDataset.check_max_polygons` before training.
MAX_POLYGONS = 256
MAX_VERTICES = 8192


def resized_hw(height, width, min_size, max_size):
    """The recipe's resized (height, width) of a height x width image: shorter side
    `min_size`, longer side at most `max_size`, aspect kept, rounded to whole pixels. Works
    on DALI nodes (inside a pipeline) and on numbers alike (DALI's math needs a node)."""
    nodes = any(isinstance(v, DataNode) for v in (height, width, min_size, max_size))
    low, high, floor = (dmath.min, dmath.max, dmath.floor) if nodes else (min, max, math.floor)
    scale = low(min_size / low(height, width), max_size / high(height, width))
    return floor(height * scale + 0.5), floor(width * scale + 0.5)


def _decode_and_resize(encoded, min_size, max_size, decoder_device, hw_decoder_load):
    """(images, [height, width] int32 resized size, [height, width] int32 original size)."""
    original = fn.peek_image_shape(encoded, dtype=types.FLOAT)
    height, width = resized_hw(original[0], original[1], min_size, max_size)
    images = fn.decoders.image(encoded, **_decoder_options(decoder_device, hw_decoder_load))
    images = fn.resize(images, resize_x=width, resize_y=height)
    im_hw = fn.cast(fn.stack(height, width), dtype=types.INT32)
    return images, im_hw, fn.cast(original[0:2], dtype=types.INT32), height, width


def _pad_batch(images):
    # Bottom and right padding to the batch's largest size, rounded up to a multiple of 32:
    # pixel coordinates stay those of the resized image.
    return fn.pad(images, axis_names="HW", align=[SIZE_DIVISIBILITY, SIZE_DIVISIBILITY],
                  fill_value=0)


@pipeline_def
def mask_rcnn_train_pipeline(file_root, annotations_file, shard_id, num_shards, min_sizes,
                             max_size, max_boxes, max_polygons, max_vertices, decoder_device,
                             hw_decoder_load, dtype):
    """Mask R-CNN training: decode, resize (one shorter side drawn from `min_sizes` per
    sample), horizontal flip of image, boxes and polygon vertices alike, normalise, pad.

    Images without any annotation are skipped (``skip_empty``); samples are shuffled.

    Parameters
    ----------
    file_root, annotations_file : str
        `CocoDataset.image_dir` and `CocoDataset.annotation_file` (normalised with
        ``keep_segmentation=True``).
    shard_id, num_shards : int
        This worker's rank and the number of workers.
    min_sizes : sequence of int
        Shorter sides to draw from ((800,) in the recipe; several: multi-scale training).
    max_size : int
        Longest allowed longer side (1333).
    max_boxes, max_polygons, max_vertices : int
        Rows of ``boxes``/``labels``, ``polygons`` and ``vertices``.
    decoder_device : str
        "cpu" or "mixed" (GPU decoding; needs a `device_id`).
    hw_decoder_load : float
        Share of the hardware JPEG decoder when `decoder_device` is "mixed".
    dtype : str
        "float32" or "float16" images.

    Returns
    -------
    (images, boxes, labels, polygons, vertices, im_hw)
        See the module docstring.
    """
    encoded, boxes, labels, polygons, vertices = _read_coco(
        file_root, annotations_file, shard_id, num_shards, shuffle=True, skip_empty=True,
        image_ids=False, polygon_masks=True)
    sizes = [float(s) for s in min_sizes]
    min_size = sizes[0] if len(sizes) == 1 else fn.random.uniform(values=sizes)
    images, im_hw, _, height, width = _decode_and_resize(encoded, min_size, float(max_size),
                                                         decoder_device, hw_decoder_load)
    flip = fn.random.coin_flip(probability=0.5)
    images = _pad_batch(_normalize(images, dtype, "NCHW", mirror=flip))
    # Boxes and vertices come relative to the image (0..1): flip there, then scale to the
    # resized image's pixels.
    boxes = fn.bb_flip(boxes, ltrb=True, horizontal=flip) * fn.stack(width, height, width,
                                                                      height)
    vertices = fn.coord_flip(vertices, layout="xy", flip_x=flip) * fn.stack(width, height)
    return (images, _fixed_rows(boxes, max_boxes), _fixed_rows(labels, max_boxes),
            _fixed_rows(polygons, max_polygons), _fixed_rows(vertices, max_vertices), im_hw)


@pipeline_def
def mask_rcnn_eval_pipeline(file_root, annotations_file, shard_id, num_shards, min_size,
                            max_size, decoder_device, hw_decoder_load, dtype):
    """Mask R-CNN evaluation: every image in id order (empty ones too), resized and padded
    as in training (shorter side `min_size`), with its COCO id, original size and resized
    size for mapping detections and masks back.

    Read it with ``LastBatchPolicy.PARTIAL`` so that every image counts once across workers.

    Returns
    -------
    (images, im_hw, image_ids, image_sizes)
        See the module docstring.
    """
    encoded, _, _, image_ids = _read_coco(file_root, annotations_file, shard_id, num_shards,
                                          shuffle=False, skip_empty=False, image_ids=True)
    images, im_hw, original, _, _ = _decode_and_resize(encoded, float(min_size),
                                                       float(max_size), decoder_device,
                                                       hw_decoder_load)
    images = _pad_batch(_normalize(images, dtype, "NCHW"))
    return images, im_hw, fn.reshape(image_ids, shape=[]), original


def polygon_rows(polygons, vertices, num_objects):
    """DALI's polygon rows as `ops.polygon_masks` takes them, on the host.

    Parameters
    ----------
    polygons : int32 numpy (B, Q, 3)
        [object row, first vertex, end vertex) per polygon, -1 rows pad (the pipeline's).
    vertices : float32 numpy (B, V, 2)
    num_objects : int
        Rows of ``boxes`` (M): polygons of objects cut beyond them are dropped.

    Returns
    -------
    rows : int32 numpy (B, Q, 3)
        [object row, first vertex, vertex count], -1 rows for padding and for dropped
        polygons (those of objects beyond `num_objects`, and those with vertices beyond V,
        cut by the pipeline's padding).
    dropped : int
        How many real polygons were dropped.
    """
    polygons = np.asarray(polygons)
    real = polygons[..., 0] >= 0
    keep = real & (polygons[..., 0] < num_objects) & (polygons[..., 2] <= vertices.shape[1])
    rows = np.stack([polygons[..., 0], polygons[..., 1], polygons[..., 2] - polygons[..., 1]],
                    axis=-1).astype(np.int32)
    rows[~keep] = -1
    return rows, int(real.sum() - keep.sum())
