"""An exported ONNX file run by ONNX Runtime through IO binding: the CUDA provider where
ONNX Runtime has one (onnxruntime-gpu on a machine with a GPU), the CPU provider otherwise.

    model = OnnxModel("resnet50-fp16.onnx")
    model.bind_input(batch)      # numpy array, OrtValue, or a DALI GPU tensor (no copy)
    logits, = model.run()        # OrtValues, on the GPU when the model runs there
    model.outputs_on_host()      # numpy copies of the last run's outputs

No MXNet import: this serves on machines without it (Hopper GPUs have no MXNet build).
"""
import numpy as np
import onnxruntime

_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
_DALI_TYPES = {"FLOAT": np.float32, "FLOAT16": np.float16}  # DALIDataType names

# CUDA's legacy default stream, as DLPack numbers it. The CUDA provider is told to compute on
# it (user_compute_stream), and a DALI tensor handed over with __dlpack__(stream=1) makes that
# stream wait for the DALI work that wrote it: the network reads a batch only once it is
# complete, with neither a host synchronisation nor a copy.
LEGACY_DEFAULT_STREAM = 1


def cuda_provider_available():
    """True when this ONNX Runtime build has the CUDA provider (onnxruntime-gpu)."""
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


class OnnxModel:
    """An ONNX file in an ONNX Runtime session with one input and bound outputs.

    Parameters
    ----------
    path : str
    device : str, optional
        "cuda" or "cpu"; default: "cuda" where `cuda_provider_available()`.
    threads : int, optional
        Threads of the CPU provider (default: ONNX Runtime's, the physical cores); the CUDA
        provider runs with one host thread.
    """

    def __init__(self, path, device=None, threads=None):
        device = device or ("cuda" if cuda_provider_available() else "cpu")
        options = onnxruntime.SessionOptions()
        if device == "cuda":
            # The GPU computes; ONNX Runtime's default host pool (one spinning thread per
            # core) would only take the cores DALI decodes on.
            options.intra_op_num_threads = 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            providers = [("CUDAExecutionProvider", {
                "device_id": 0,
                # NHWC kernels: the Tensor Core convolutions in float16 need no transposes.
                "prefer_nhwc": "1",
                "cudnn_conv_algo_search": "EXHAUSTIVE",
                "user_compute_stream": str(LEGACY_DEFAULT_STREAM)})]
        else:
            if threads:
                options.intra_op_num_threads = threads
            providers = ["CPUExecutionProvider"]
        self.session = onnxruntime.InferenceSession(path, options, providers=providers)
        if device == "cuda" and self.session.get_providers()[0] != "CUDAExecutionProvider":
            raise RuntimeError(f"ONNX Runtime could not start its CUDA provider for {path} "
                               f"(providers: {self.session.get_providers()})")
        self.device = device
        (model_input,) = self.session.get_inputs()
        self.input_name = model_input.name
        self.input_dtype = _NUMPY_TYPES[model_input.type]  # float32 or float16
        self.input_shape = tuple(model_input.shape[1:])  # (C, H, W); batch is dynamic
        self.output_names = [output.name for output in self.session.get_outputs()]
        self.binding = self.session.io_binding()

    def device_batch(self, array):
        """`array` (numpy) copied once to where the model runs, for repeated runs."""
        return onnxruntime.OrtValue.ortvalue_from_numpy(array.astype(self.input_dtype),
                                                        self.device, 0)

    def bind_input(self, batch):
        """Bind the next input: a numpy array (copied in by ONNX Runtime), an OrtValue, or a
        DALI GPU tensor (`TensorGPU`, the model's dtype), read in place."""
        if isinstance(batch, np.ndarray):
            self.binding.bind_cpu_input(self.input_name, batch.astype(self.input_dtype,
                                                                      copy=False))
        elif isinstance(batch, onnxruntime.OrtValue):
            self.binding.bind_ortvalue_input(self.input_name, batch)
        else:
            self._bind_dali_gpu_tensor(batch)

    def _bind_dali_gpu_tensor(self, tensor):
        if self.device != "cuda":
            raise ValueError("a GPU tensor needs the model on the CUDA provider")
        if _DALI_TYPES.get(tensor.dtype.name) != self.input_dtype:
            raise ValueError(f"the tensor is {tensor.dtype}, the model takes "
                             f"{np.dtype(self.input_dtype).name}")
        tensor.__dlpack__(stream=LEGACY_DEFAULT_STREAM)  # the stream now waits for the data
        self.binding.bind_input(self.input_name, "cuda", 0, self.input_dtype,
                                list(tensor.shape()), tensor.data_ptr())

    def run(self):
        """Run on the bound input; returns once the outputs are complete (as OrtValues)."""
        # Outputs bound anew each run: ONNX Runtime allocates them at this batch's shape
        # (an output kept from a run of another batch size fails the shape check).
        self.binding.clear_binding_outputs()
        for name in self.output_names:
            self.binding.bind_output(name, self.device)
        self.session.run_with_iobinding(self.binding)
        return self.binding.get_outputs()

    def outputs_on_host(self):
        """The last run's outputs as numpy arrays."""
        return self.binding.copy_outputs_to_cpu()

    def __call__(self, batch):
        """Outputs of one batch, as numpy arrays."""
        self.bind_input(batch)
        self.run()
        return self.outputs_on_host()
