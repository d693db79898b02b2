"""DALI pipelines, one per task, every parameter explicit.

Both classification pipelines read MXNet RecordIO (.rec + .idx, as written by
`python -m data.im2rec`), decode JPEGs on the CPU (`decoder_device="cpu"`) or on the GPU with
nvJPEG and the hardware JPEG decoder where there is one (`decoder_device="mixed"`), and output
normalised images and int32 labels. Build them with the `pipeline_def` arguments too:
``classification_train_pipeline(..., batch_size=B, num_threads=T, device_id=None or GPU,
seed=S, enable_checkpointing=True)``.
"""
from nvidia.dali import fn, pipeline_def, types

READER_NAME = "Reader"  # the iterator reads epoch size and shard layout from this reader

# ImageNet statistics, in the 0-255 range the decoders produce.
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)

# The share of JPEGs sent to the hardware decoder (A100/H100/H200) by default: leaves the
# CUDA decoder part of the work, which was faster than either alone in training (train.py's
# --hw-decoder-load).
HW_DECODER_LOAD = 0.65

_DALI_DTYPES = {"float32": types.FLOAT, "float16": types.FLOAT16}
_DALI_LAYOUTS = {"NCHW": "CHW", "NHWC": "HWC"}


def val_resize_shorter(crop_height):
    """The shorter side evaluation resizes to before the centre crop: ImageNet's 256 for 224."""
    return int(round(crop_height * 256 / 224))


def _read_records(rec_path, idx_path, shard_id, num_shards, shuffle):
    # pad_last_batch: every shard's epoch ends on a whole batch and the next epoch starts at
    # the shard's first sample, so shards of unequal size give equal batch counts.
    return fn.readers.mxnet(path=rec_path, index_path=idx_path, shard_id=shard_id,
                            num_shards=num_shards, random_shuffle=shuffle,
                            pad_last_batch=True, name=READER_NAME)


def _decoder_options(decoder_device, hw_decoder_load):
    options = {"device": decoder_device, "output_type": types.RGB}
    if decoder_device == "mixed":
        # The share of images sent to the hardware JPEG decoder (A100/H100/H200); the rest
        # go to the CUDA decoder. Ignored on GPUs without one.
        options["hw_decoder_load"] = hw_decoder_load
    return options


def _normalize(images, dtype, layout, crop=None, mirror=None, pad_channels=False):
    options = {"dtype": _DALI_DTYPES[dtype], "output_layout": _DALI_LAYOUTS[layout],
               "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
               # A 4th zero channel lets cuDNN pick its fastest NHWC float16 kernels.
               "pad_output": pad_channels}
    if crop is not None:
        options.update(crop=crop, crop_pos_x=0.5, crop_pos_y=0.5)
    if mirror is not None:
        options["mirror"] = mirror
    return fn.crop_mirror_normalize(images, **options)


def _int_labels(labels):
    # RecordIO labels are float32 of shape (1,); the task wants int32 scalars.
    return fn.reshape(fn.cast(labels, dtype=types.INT32), shape=[])


@pipeline_def
def classification_train_pipeline(rec_path, idx_path, shard_id, num_shards, crop_size,
                                  random_area, random_aspect_ratio, decoder_device,
                                  hw_decoder_load, dtype, layout, pad_channels):
    """Training augmentation: random-resized crop fused into decoding, resize, random flip,
    normalise.

    Parameters
    ----------
    rec_path, idx_path : str
        The RecordIO file and its index.
    shard_id, num_shards : int
        This worker's rank and the number of workers.
    crop_size : (int, int)
        Output height and width (224, 224 for ImageNet).
    random_area : (float, float)
        Range of the crop's share of the image area (0.08, 1.0 in the recipe).
    random_aspect_ratio : (float, float)
        Range of the crop's width/height ratio (3/4, 4/3).
    decoder_device : str
        "cpu" or "mixed" (GPU decoding; needs a `device_id`).
    hw_decoder_load : float
        Share of the hardware JPEG decoder when `decoder_device` is "mixed".
    dtype : str
        "float32" or "float16" output.
    layout : str
        "NCHW" or "NHWC" output.
    pad_channels : bool
        Pad RGB to 4 channels.

    Returns
    -------
    (images, labels)
    """
    jpegs, labels = _read_records(rec_path, idx_path, shard_id, num_shards, shuffle=True)
    # Decoding only the crop's region saves most of the decoder's work for small crops.
    images = fn.decoders.image_random_crop(jpegs, random_area=list(random_area),
                                           random_aspect_ratio=list(random_aspect_ratio),
                                           num_attempts=100,
                                           **_decoder_options(decoder_device, hw_decoder_load))
    images = fn.resize(images, resize_x=crop_size[1], resize_y=crop_size[0])
    mirror = fn.random.coin_flip(probability=0.5)
    images = _normalize(images, dtype, layout, mirror=mirror, pad_channels=pad_channels)
    return images, _int_labels(labels)


@pipeline_def
def classification_val_pipeline(rec_path, idx_path, shard_id, num_shards, crop_size,
                                resize_shorter, decoder_device, hw_decoder_load, dtype, layout,
                                pad_channels):
    """Evaluation: resize the shorter side to `resize_shorter`, centre crop `crop_size`,
    normalise. Samples are read in file order.

    Parameters are those of `classification_train_pipeline`, plus `resize_shorter` (256 for a
    224 crop).
    """
    jpegs, labels = _read_records(rec_path, idx_path, shard_id, num_shards, shuffle=False)
    images = fn.decoders.image(jpegs, **_decoder_options(decoder_device, hw_decoder_load))
    images = fn.resize(images, resize_shorter=resize_shorter)
    images = _normalize(images, dtype, layout, crop=tuple(crop_size), pad_channels=pad_channels)
    return images, _int_labels(labels)
