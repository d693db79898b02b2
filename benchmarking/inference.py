"""Inference throughput and latency of one batch size, in this process.

The network is built from the models registry, initialised, cast and hybridized with
``static_alloc`` and ``static_shape``, as deployed. Every timed iteration is one batch:
(with real data) take the next batch from the loader, run the forward pass, and wait for its
output, so each latency is what a caller waits for that batch ("Total IPS" in NVIDIA's
tables: data time included). With synthetic data the input is one fixed array on the device.

A detector's forward pass is `models.ssd.SSDFPN.detect`, post-processing included: the
network, then box decoding, class-wise NMS and the top detections (the options of
`Settings.detect_options`). Its cost does not depend on the weights: the best 1,000
(anchor, class) scores of each image go through NMS whatever they are.
"""
import gc
import tempfile

import mxnet as mx

import models
from benchmarking.machine import cpu_cores
from benchmarking.timing import (InferenceError, check_epoch_length, is_out_of_memory,  # noqa: F401
                                 measure_epochs)
from data.streams import endless


def inference_context():
    """The first GPU where MXNet sees one, else the CPU."""
    return mx.gpu(0) if mx.context.num_gpus() > 0 else mx.cpu()


def build_network(model, num_classes, layout, image_shape, dtype, ctx):
    """An initialised, cast, hybridized network of the registry's `model`.

    Raises
    ------
    InferenceError
        For float16 or NHWC without a GPU (MXNet has no CPU kernels for them).
    """
    try:
        models.check_device_support(dtype, layout, gpus=int(ctx.device_type == "gpu"))
    except ValueError as error:
        raise InferenceError(str(error)) from None
    extra = {}
    if models.model_task(model) == "detection":
        import ops  # noqa: F401  (load the ops/ library before MXNet runs: see train.py)
        extra["image_size"] = tuple(image_shape[1:])
    return models.build_network(model, num_classes, layout, image_shape, dtype, ctx, **extra)


def forward_function(net, settings):
    """What one timed call runs: the network (classification), or `SSDFPN.detect` with its
    post-processing (detection). Takes a batch, returns an NDArray to wait for."""
    if settings.detection:
        return lambda data: net.detect(data, **settings.detect_options)
    return net


def _input_shape(batch_size, image_shape, layout):
    c, h, w = image_shape
    return (batch_size, c, h, w) if layout == "NCHW" else (batch_size, h, w, c)


def synthetic_inputs(batch_size, image_shape, layout, dtype, ctx):
    """An endless stream of one fixed random batch on `ctx`."""
    data = mx.nd.random.normal(shape=_input_shape(batch_size, image_shape, layout), ctx=ctx,
                               dtype=dtype)
    while True:
        yield data


def real_inputs(settings, batch_size, ctx):
    """Full batches of the validation split through `settings.data_backend`, endlessly.

    The partial last batch of each pass is skipped (its fetch time falls into the next
    timed batch).
    """
    if settings.detection:
        yield from _coco_inputs(settings, batch_size, ctx)
        return
    from data.loaders import LoaderConfig, build_loader
    config = LoaderConfig(
        backend=settings.data_backend, data_root=settings.data_root, batch_size=batch_size,
        image_shape=tuple(settings.image_shape), dtype=settings.dtype, layout=settings.layout,
        device_id=_device_id(ctx), num_threads=cpu_cores(), num_classes=settings.num_classes)
    yield from _full_batches(build_loader(config, "val"), settings, batch_size, ctx)


def _coco_inputs(settings, batch_size, ctx, split="val2017"):
    """The evaluation pipeline's batches of the COCO split `split` (resized, not cropped),
    its normalised json made in a temporary folder."""
    from data.coco import CocoError, prepare_coco
    from data.coco_loaders import CocoLoaderConfig, build_coco_loader
    with tempfile.TemporaryDirectory(prefix="benchmark-coco-") as cache:
        try:
            dataset = prepare_coco(settings.data_root, split, cache)
        except CocoError as error:
            raise InferenceError(str(error)) from None
        config = CocoLoaderConfig(
            backend=settings.data_backend, batch_size=batch_size,
            image_size=settings.image_shape[1], dtype=settings.dtype, layout=settings.layout,
            device_id=_device_id(ctx), num_threads=cpu_cores())
        yield from _full_batches(build_coco_loader(config, dataset, "val"), settings,
                                 batch_size, ctx)


def _full_batches(loader, settings, batch_size, ctx):
    batches = endless(loader, keep=lambda batch: batch["data"].shape[0] == batch_size,
                      no_data=f"the validation set of {settings.data_root} holds fewer than "
                              f"one batch of {batch_size} images", error=InferenceError)
    for batch in batches:
        # ImageRecordIter's batches live in pinned memory, a context of their own.
        yield batch["data"].as_in_context(ctx)


def _device_id(ctx):
    return ctx.device_id if ctx.device_type == "gpu" else None


def run_inference_case(settings, batch_size, on_epoch=None):
    """Measure MXNet inference at one batch size (`benchmarking.timing.measure_epochs`:
    the untimed first batch builds the cached graph; its result dict).

    Parameters
    ----------
    settings : benchmarking.settings.Settings
    batch_size : int
    on_epoch : callable, optional
        Called as ``on_epoch(epoch, epochs, img_per_s, warmup)`` after every epoch.

    Raises
    ------
    InferenceError
        When it cannot run here or the data is too small; MXNet's own errors (out of
        memory) pass through.
    """
    iterations = check_epoch_length(settings, batch_size)  # before the network is built
    ctx = inference_context()
    net = build_network(settings.model, settings.num_classes, settings.layout,
                        settings.image_shape, settings.dtype, ctx)
    forward = forward_function(net, settings)
    inputs = None
    try:
        inputs = (real_inputs(settings, batch_size, ctx) if settings.real_data else
                  synthetic_inputs(batch_size, settings.image_shape, settings.layout,
                                   settings.dtype, ctx))
        return measure_epochs(lambda batch: forward(batch).wait_to_read(), inputs, settings,
                              batch_size, iterations, on_epoch)
    finally:
        del net, forward, inputs  # free the device memory before the next batch size
        gc.collect()
        mx.nd.waitall()
