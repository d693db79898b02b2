"""The validation images of a classification data root, as an exported model takes them:
decoded by DALI on CPU threads or on the GPU, resized and centre-cropped as train.py
evaluates (`data.pipelines.classification_val_pipeline`), NCHW. No MXNet import."""
import numpy as np

from data.files import record_files
from data.pipelines import (HW_DECODER_LOAD, READER_NAME, classification_val_pipeline,
                            val_resize_shorter)


def val_pipeline(data_root, input_shape, dtype, batch_size, on_gpu, threads,
                 resize_shorter=None):
    """The built DALI pipeline of `data_root`/val.rec for a model input `input_shape`
    (C, H, W) of numpy `dtype`; on the GPU (device 0, nvJPEG and the hardware decoder) when
    `on_gpu`. Its batches are always full: the reader repeats the last image at the end of
    the file, `num_images(pipe)` says how many are real.

    Raises
    ------
    data.files.DataError
        When val.rec or its index is missing or unreadable.
    """
    rec, idx = record_files(data_root, "val")
    _, height, width = input_shape
    pipe = classification_val_pipeline(
        rec_path=rec, idx_path=idx, shard_id=0, num_shards=1, crop_size=(height, width),
        resize_shorter=resize_shorter or val_resize_shorter(height),
        decoder_device="mixed" if on_gpu else "cpu", hw_decoder_load=HW_DECODER_LOAD,
        dtype=np.dtype(dtype).name, layout="NCHW", pad_channels=False,
        batch_size=batch_size, num_threads=threads, device_id=0 if on_gpu else None, seed=0)
    pipe.build()
    return pipe


def num_images(pipe):
    """Images in one pass of the pipeline's file."""
    return pipe.epoch_size(READER_NAME)


def next_batch(pipe, on_gpu):
    """(images, labels) of the next batch: images a DALI GPU tensor when `on_gpu` (valid
    until the next call), else numpy; labels int32 numpy."""
    images, labels = pipe.run()
    labels = np.array(labels.as_tensor())
    return (images.as_tensor() if on_gpu else np.array(images.as_tensor())), labels
