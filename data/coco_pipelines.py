"""DALI pipelines for SSD on COCO: one for training, one for evaluation.

Both read the *normalised* annotation file of `data.coco.prepare_coco` (contiguous classes
1..C, crowd regions as category C+1 after each image's objects, boxes clipped, empty boxes
dropped) with ``fn.readers.coco`` and decode on the CPU (``decoder_device="cpu"``) or on the
GPU (``"mixed"``: nvJPEG, and the hardware JPEG decoder where there is one). Build them with
the `pipeline_def` arguments too: ``ssd_train_pipeline(..., batch_size=B, num_threads=T,
device_id=None or GPU, seed=S)``, and read them with `data.dali_iterator.DALIMXNetIterator`
and ``reader_name=READER_NAME``.

Outputs (B = batch size, S = `image_size`, M = `max_boxes`):

===============  ==================  =======  ==================================================
output           shape               dtype    content
===============  ==================  =======  ==================================================
``images``       (B, 3, S, S) NCHW   `dtype`  RGB, normalised with ImageNet mean and std
                 or (B, S, S, 3)
``boxes``        (B, M, 4)           float32  objects, then crowd regions: [x1, y1, x2, y2]
                                              relative to the output image (0..1); rows past
                                              them are -1
``labels``       (B, M)              int32    class 1..C of each object, the crowd label C+1
                                              (`CocoDataset.crowd_label`) of each crowd
                                              region; -1 on padding rows
``image_ids``    (B,)                int32    (evaluation) the COCO image id
``image_sizes``  (B, 2)              int32    (evaluation) original [height, width] in pixels
===============  ==================  =======  ==================================================

Valid rows come first, so ``labels >= 1`` (or ``boxes[..., 0] >= 0``) marks them. Rows beyond
M are cut, crowd regions first; `data.coco.CocoDataset.check_max_boxes` counts the images
concerned before training. Boxes and labels stay on the CPU for both decoder devices,
as the classification labels do; images are on the GPU with ``"mixed"``.
"""
from nvidia.dali import fn, pipeline_def, types

# One reader name for every pipeline: the iterator reads epoch size and shards from it.
from data.pipelines import READER_NAME, _decoder_options, _normalize

# NVIDIA's SSD recipe (DeepLearningExamples, and DALI's SSD example): IoU thresholds a crop
# must reach with the boxes (0: any crop), crop side 0.3-1 of the image, aspect 0.5-2.
SSD_CROP_THRESHOLDS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9)
SSD_CROP_SCALING = (0.3, 1.0)
SSD_CROP_ASPECT_RATIO = (0.5, 2.0)
# Colour jitter as torchvision's ColorJitter(0.125, 0.5, 0.5, 0.05) in NVIDIA's PyTorch SSD:
# factors for brightness, contrast and saturation, a hue shift in degrees (0.05 of 360).
SSD_BRIGHTNESS = (0.875, 1.125)
SSD_CONTRAST = (0.5, 1.5)
SSD_SATURATION = (0.5, 1.5)
SSD_HUE = (-18.0, 18.0)
# The normaliser drops every box without area; DALI's default (0.1 pixel) would silently drop
# thin boxes the normalised file kept, so the reader is told to drop nothing more.
_SIZE_THRESHOLD = 1e-6


def _read_coco(file_root, annotations_file, shard_id, num_shards, shuffle, skip_empty,
               image_ids, polygon_masks=False):
    # ltrb + ratio: boxes as [x1, y1, x2, y2] in 0..1, what the crop and flip expect.
    # avoid_class_remapping: the normalised file's ids already are the training classes;
    # DALI's own remapping would renumber them in the order it meets them.
    # pad_last_batch: every shard's epoch ends on a whole batch (equal batch counts).
    # polygon_masks: two more outputs, polygons and their vertices (Mask R-CNN).
    return fn.readers.coco(file_root=file_root, annotations_file=annotations_file,
                           shard_id=shard_id, num_shards=num_shards, random_shuffle=shuffle,
                           skip_empty=skip_empty, image_ids=image_ids, ltrb=True, ratio=True,
                           avoid_class_remapping=True, size_threshold=_SIZE_THRESHOLD,
                           pad_last_batch=True, polygon_masks=polygon_masks,
                           name=READER_NAME)


def _square(image_size):
    return (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)


def _uniform(value_range):
    """A per-sample draw from [low, high), or the constant when low == high (DALI's uniform
    refuses an empty range; a fixed value switches that jitter off)."""
    low, high = value_range
    return float(low) if low == high else fn.random.uniform(range=[low, high])


def _fixed_rows(data, rows):
    """The first `rows` rows of each sample, padded with rows of -1 where it has fewer: one
    slice both cuts and pads, so that every output is a dense batch. (Splitting objects from
    crowd regions here instead took about 23 small operators, which cost 34% of the
    pipeline's throughput on an H200: device/notes/h200_ssd_pipeline.log.)"""
    return fn.slice(data, start=[0], shape=[rows], axes=[0], out_of_bounds_policy="pad",
                    fill_values=-1)


@pipeline_def
def ssd_train_pipeline(file_root, annotations_file, shard_id, num_shards, image_size, max_boxes,
                       decoder_device, hw_decoder_load, dtype, layout, crop_thresholds=SSD_CROP_THRESHOLDS, crop_scaling=SSD_CROP_SCALING,
                       crop_aspect_ratio=SSD_CROP_ASPECT_RATIO, brightness=SSD_BRIGHTNESS,
                       contrast=SSD_CONTRAST, saturation=SSD_SATURATION, hue=SSD_HUE):
    """SSD training: IoU-constrained random crop fused into decoding, resize to S x S, colour
    jitter, horizontal flip of image and boxes, normalise; boxes padded to fixed rows.

    Images without any annotation are skipped (``skip_empty``); an image with crowd regions
    alone comes with no object rows (every anchor is background or ignored). Samples are
    shuffled (DALI's shuffle buffer).

    Parameters
    ----------
    file_root, annotations_file : str
        `CocoDataset.image_dir` and `CocoDataset.annotation_file` (the normalised json).
    shard_id, num_shards : int
        This worker's rank and the number of workers.
    image_size : int or (int, int)
        Output side S (320 for SSD320), or (height, width).
    max_boxes : int
        Rows of ``boxes`` and ``labels`` (objects, then crowd regions); rows beyond it are
        cut. 100, as in DALI's EfficientDet example, keeps the boxes of nearly every COCO
        image; `CocoDataset.check_max_boxes` counts (and warns about) the images that have
        more.
    decoder_device : str
        "cpu" or "mixed" (GPU decoding; needs a `device_id`).
    hw_decoder_load : float
        Share of the hardware JPEG decoder when `decoder_device` is "mixed".
    dtype : str
        "float32" or "float16" images.
    layout : str
        "NCHW" or "NHWC" images.
    crop_thresholds : sequence of float
        Minimum IoU of the crop with the boxes, one drawn per sample; with
        ``crop_scaling=(1, 1)`` the crop is the whole image (no crop).
    crop_scaling, crop_aspect_ratio : (float, float)
        Ranges of the crop's side relative to the image, and of its width/height.
    brightness, contrast, saturation : (float, float)
        Ranges of the colour factors (1: unchanged).
    hue : (float, float)
        Range of the hue shift in degrees.

    Returns
    -------
    (images, boxes, labels)
        See the module docstring.
    """
    encoded, boxes, labels = _read_coco(file_root, annotations_file, shard_id, num_shards,
                                        shuffle=True, skip_empty=True, image_ids=False)
    anchor, shape, boxes, labels = fn.random_bbox_crop(
        boxes, labels, thresholds=list(crop_thresholds), scaling=list(crop_scaling),
        aspect_ratio=list(crop_aspect_ratio), bbox_layout="xyXY", allow_no_crop=True,
        num_attempts=1)
    # Decoding only the crop's region saves the decoder's work outside it.
    images = fn.decoders.image_slice(encoded, anchor, shape,
                                     **_decoder_options(decoder_device, hw_decoder_load))
    height, width = _square(image_size)
    images = fn.resize(images, resize_x=width, resize_y=height)
    # uint8 output clamps to 0..255, as torchvision's ColorJitter and NVIDIA's DALI SSD
    # pipeline do (float output left 7% of pixels outside it on COCO-like images).
    images = fn.color_twist(images, brightness=_uniform(brightness),
                            contrast=_uniform(contrast), saturation=_uniform(saturation),
                            hue=_uniform(hue), dtype=types.UINT8)
    flip = fn.random.coin_flip(probability=0.5)
    # The image's flip is crop_mirror_normalize's `mirror` (fused with the normalisation, one
    # pass over the pixels instead of two); the boxes take the same coin.
    images = _normalize(images, dtype, layout, mirror=flip)
    boxes = fn.bb_flip(boxes, ltrb=True, horizontal=flip)
    return images, _fixed_rows(boxes, max_boxes), _fixed_rows(labels, max_boxes)


@pipeline_def
def ssd_eval_pipeline(file_root, annotations_file, shard_id, num_shards, image_size,
                      decoder_device, hw_decoder_load, dtype, layout):
    """SSD evaluation: every image in id order (empty ones too), resized to S x S and
    normalised, with its COCO id and original size for mapping detections back.

    Read it with ``LastBatchPolicy.PARTIAL`` so that every image counts once across workers.

    Parameters
    ----------
    Those of `ssd_train_pipeline` of the same names.

    Returns
    -------
    (images, image_ids, image_sizes)
        See the module docstring; ``image_sizes`` is [height, width] as the encoded image
        says (``fn.peek_image_shape``), not as the json says.
    """
    encoded, _, _, image_ids = _read_coco(file_root, annotations_file, shard_id, num_shards,
                                          shuffle=False, skip_empty=False, image_ids=True)
    sizes = fn.peek_image_shape(encoded, dtype=types.INT32)[0:2]  # HWC -> [H, W]
    images = fn.decoders.image(encoded, **_decoder_options(decoder_device, hw_decoder_load))
    height, width = _square(image_size)
    images = fn.resize(images, resize_x=width, resize_y=height)
    images = _normalize(images, dtype, layout)
    return images, fn.reshape(image_ids, shape=[]), sizes
