"""Inference throughput and latency of one batch size through ONNX Runtime (`--runtime
onnxruntime`), in this process: the CUDA provider where ONNX Runtime has one, else the CPU.

The exported file (`python -m deploy.onnx_export`) runs through IO binding
(`deploy.onnx_runtime.OnnxModel`): its outputs stay where it computes. Every timed iteration
is one batch, as with MXNet: take the next batch, bind it, run, return when the outputs are
complete. Synthetic data is one random batch copied to the device once (compute alone);
``dali-gpu`` decodes the validation JPEGs on the GPU and hands each batch to ONNX Runtime in
place (no copy, no host synchronisation); ``dali-cpu`` decodes on CPU threads and ONNX Runtime
copies the batch in. With real data the time of the data counts ("Total IPS").

No MXNet import: this measures on machines without MXNet (Hopper GPUs).
"""
import gc

import numpy as np

from benchmarking.machine import cpu_cores
from benchmarking.timing import InferenceError, check_epoch_length, measure_epochs
from deploy.onnx_runtime import OnnxModel, cuda_provider_available


def inference_context():
    """Where the model runs, for the progress lines."""
    return "cuda:0 (ONNX Runtime)" if cuda_provider_available() else "cpu (ONNX Runtime)"


def run_inference_case(settings, batch_size, on_epoch=None):
    """Measure ONNX Runtime inference of `settings.onnx_path` at one batch size
    (`benchmarking.timing.measure_epochs`: the untimed first batch also lets the CUDA
    provider choose its convolution algorithms; its result dict).

    Raises
    ------
    InferenceError
        When it cannot run here or the data is too small; ONNX Runtime's own errors (out of
        memory) pass through.
    """
    iterations = check_epoch_length(settings, batch_size)
    model = OnnxModel(settings.onnx_path, threads=cpu_cores())
    inputs = None
    try:
        inputs = (dali_inputs(settings, model, batch_size) if settings.real_data
                  else synthetic_inputs(model, batch_size))

        def run_batch(batch):
            model.bind_input(batch)
            model.run()
        return measure_epochs(run_batch, inputs, settings, batch_size, iterations, on_epoch)
    finally:
        del model, inputs  # free the device memory before the next batch size
        gc.collect()


def synthetic_inputs(model, batch_size):
    """An endless stream of one fixed random batch, on the model's device."""
    images = np.random.default_rng(0).standard_normal((batch_size, *model.input_shape))
    batch = model.device_batch(images.astype(np.float32))
    while True:
        yield batch


def dali_inputs(settings, model, batch_size):
    """Endless batches of the validation split of `settings.data_root` for `model`
    (`deploy.onnx_data`): DALI tensors on the GPU (``dali-gpu``) or numpy (``dali-cpu``)."""
    from data.files import DataError
    from deploy.onnx_data import next_batch, val_pipeline
    on_gpu = settings.data_backend == "dali-gpu"
    if on_gpu and model.device != "cuda":
        raise InferenceError("--data-backend dali-gpu hands batches to ONNX Runtime's CUDA "
                             "provider, which this ONNX Runtime lacks (onnxruntime-gpu has "
                             "it); use dali-cpu")
    try:
        pipe = val_pipeline(settings.data_root, model.input_shape, model.input_dtype,
                            batch_size, on_gpu, cpu_cores())
    except DataError as error:
        raise InferenceError(str(error)) from None
    while True:
        yield next_batch(pipe, on_gpu)[0]
