"""Mask R-CNN inference throughput and latency at one batch size, in this process.

One timed call is what a user's inference does with a batch: the network (backbone, FPN,
RPN proposals, box head, detection NMS, the mask head on the final detections:
`models.mask_rcnn.MaskRCNN.forward`), its outputs read back to the host, and every
detection's 28x28 mask pasted into its image and read back (`models.mask_rcnn.paste_masks`,
the evaluation's paste: one `ops.paste_masks` call per image on the network's context).
Masks are pasted into the network's input image (``im_hw``, the resized image), not into the
original one.

A randomly initialised network scores every class alike (1 / (C + 1): below the recipe's
0.05 for COCO's 80 classes), so at the recipe's threshold it would find nothing and skip the
mask head and the pastes. benchmark.py therefore times inference with a score threshold of
0 (`Settings.detect_options`): every image gets the full ``max_detections`` (100), the most
work the post-processing can do, as on COCO images with a trained network at 0.05. The
(RoI, class) candidates reaching NMS are capped at 2,000 either way (`DetectSettings`).

Input size: the recipe's resize (shorter side `Settings.min_size`, longer at most
`Settings.max_size`). Real data (dali-cpu, dali-gpu) is the evaluation pipeline over
val2017; synthetic data is one fixed batch of standard-normal images of the size the resize
gives a 640x480 image (COCO's most common shape), zero in the padding up to a multiple of 32,
as the pipeline pads (`Settings.image_hw` inside `Settings.image_shape`).
"""
import gc
import tempfile

import mxnet as mx
import numpy as np

import models
from benchmarking.inference import inference_context  # noqa: F401  (the sweep's runtime API)
from benchmarking.machine import cpu_cores
from benchmarking.timing import InferenceError, check_epoch_length, measure_epochs
from data.streams import endless

# train.py's: the smallest input that has every pyramid level sizes the layers.
SIZING_SHAPE = (3, 64, 64)
COCO_IMAGE_HW = (480, 640)
SIZE_DIVISIBILITY = 32


def resized_image_hw(min_size, max_size, image_hw=COCO_IMAGE_HW):
    """(height, width) the recipe's resize gives an image of `image_hw`."""
    from data.mask_rcnn_pipelines import resized_hw
    height, width = resized_hw(float(image_hw[0]), float(image_hw[1]), float(min_size),
                               float(max_size))
    return int(height), int(width)


def padded_shape(image_hw):
    """The network input (3, H, W) of an image of `image_hw`, padded as the pipeline pads."""
    return (3,) + tuple(-(-side // SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY for side in image_hw)


def build_mask_rcnn(settings, ctx):
    """The registry's `settings.model` on `ctx`, initialised, cast and hybridized as train.py
    builds it, with the post-processing of `settings.detect_options`."""
    from models.roi_heads import DetectSettings
    try:
        models.check_device_support(settings.dtype, "NCHW", gpus=int(ctx.device_type == "gpu"))
    except ValueError as error:
        raise InferenceError(str(error)) from None
    import ops  # noqa: F401  (load the ops/ library before MXNet runs: see train.py)
    return models.build_network(settings.model, settings.num_classes, "NCHW", SIZING_SHAPE,
                                settings.dtype, ctx,
                                detect=DetectSettings(**settings.detect_options))


def predict_and_paste(net, data, im_hw):
    """Detections and masks of a batch, every detection's mask pasted into its image (as the
    evaluation does it: the masks read back, each image's pasted in one call on the
    network's context); returns how many were pasted."""
    from models.mask_rcnn import paste_masks
    detections, masks = net(data, im_hw)
    detections, masks = detections.asnumpy(), masks.asnumpy()
    sizes = im_hw.asnumpy().astype(int) if hasattr(im_hw, "asnumpy") else np.asarray(im_hw)
    pasted = 0
    for image, rows in enumerate(detections):
        found = np.nonzero(rows[:, 0] >= 1)[0]
        pasted += len(paste_masks(masks[image, found], rows[found, 2:6], tuple(sizes[image]),
                                  ctx=data.context))
    return pasted


def synthetic_inputs(settings, batch_size, ctx):
    """An endless stream of one fixed batch ``(images, im_hw)``: standard-normal values
    inside `settings.image_hw`, zero in the padding."""
    height, width = settings.image_hw
    rng = np.random.default_rng(0)
    images = np.zeros((batch_size,) + tuple(settings.image_shape), np.float32)
    images[:, :, :height, :width] = rng.standard_normal((batch_size, 3, height, width))
    batch = (mx.nd.array(images, ctx=ctx, dtype=settings.dtype),
             mx.nd.array([[height, width]] * batch_size, ctx=ctx))
    while True:
        yield batch


def real_inputs(settings, batch_size, ctx, split="val2017"):
    """Full batches ``(images, im_hw)`` of the evaluation pipeline over `split`, endlessly."""
    from data.coco import CocoError, prepare_coco
    from data.coco_loaders import MaskRCNNLoaderConfig, build_coco_loader
    with tempfile.TemporaryDirectory(prefix="benchmark-coco-") as cache:
        try:
            dataset = prepare_coco(settings.data_root, split, cache, keep_segmentation=True)
        except CocoError as error:
            raise InferenceError(str(error)) from None
        gpu = ctx.device_type == "gpu"
        config = MaskRCNNLoaderConfig(
            backend=settings.data_backend, batch_size=batch_size, dtype=settings.dtype,
            device_id=ctx.device_id if gpu else None, num_threads=cpu_cores(),
            min_sizes=(settings.min_size,), max_size=settings.max_size)
        batches = endless(build_coco_loader(config, dataset, "val"),
                          keep=lambda batch: batch["data"].shape[0] == batch_size,
                          no_data=f"{split} of {settings.data_root} holds fewer than one "
                                  f"batch of {batch_size} images", error=InferenceError)
        for batch in batches:
            yield batch["data"].as_in_context(ctx), batch["im_hw"]


def run_inference_case(settings, batch_size, on_epoch=None):
    """Measure Mask R-CNN inference with mask pasting at one batch size
    (`benchmarking.timing.measure_epochs`; the untimed first batch builds the cached graphs).

    Returns
    -------
    dict
        `measure_epochs`' result and ``detections_per_image``, the mean pasted per image.
    """
    iterations = check_epoch_length(settings, batch_size)
    ctx = inference_context()
    net = build_mask_rcnn(settings, ctx)
    inputs, pasted = None, []
    try:
        inputs = (real_inputs(settings, batch_size, ctx) if settings.real_data
                  else synthetic_inputs(settings, batch_size, ctx))
        result = measure_epochs(lambda batch: pasted.append(predict_and_paste(net, *batch)),
                                inputs, settings, batch_size, iterations, on_epoch)
        result["detections_per_image"] = float(np.mean(pasted[1:])) / batch_size
        return result
    finally:
        del net, inputs  # free the device memory before the next batch size
        gc.collect()
        mx.nd.waitall()
