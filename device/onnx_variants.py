"""Which ONNX Runtime CUDA settings make an exported ResNet-50 fastest on this GPU, and how a
DALI GPU batch is best handed over: the experiment behind deploy/onnx_runtime.py's choices.

    python -m device.onnx_variants --onnx rn50-fp16.onnx --data DIR(with val.rec) --out DIR

Synthetic input (one batch bound once as an OrtValue), batch 1 and 208, per CUDA provider
setting: prefer_nhwc 0/1, ONNX Runtime's own stream or the legacy default stream
(user_compute_stream=1), CUDA graphs (batch 1). DALI-fed at batch 208: the legacy-stream
hand-over (ONNX Runtime computes on the stream DALI's __dlpack__ made wait) against ONNX
Runtime's own stream after a host wait for that stream, at hardware decoder loads 0.65 and
0.99. Each case: 50 untimed batches, then 200 timed one by one. Writes variants.json.
"""
import argparse
import ctypes
import json
import os
import time

import numpy as np
import onnxruntime

from benchmarking.stats import images_per_second, latency_summary
from data.files import record_files
from data.pipelines import classification_val_pipeline

LEGACY = 1


def cudart():
    for name in ("libcudart.so.13", "libcudart.so.12", "libcudart.so"):
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise OSError("no libcudart")


def session(path, host_threads=None, **options):
    """A CUDA session; `host_threads` set: that many intra-op threads, not spinning (by
    default ONNX Runtime keeps one spinning thread per core, beside DALI's threads)."""
    cuda = {"device_id": 0, "cudnn_conv_algo_search": "EXHAUSTIVE", **options}
    settings = onnxruntime.SessionOptions()
    if host_threads:
        settings.intra_op_num_threads = host_threads
        settings.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(path, settings,
                                        providers=[("CUDAExecutionProvider", cuda)])


def timed(run, warmup=50, batches=200):
    for _ in range(warmup):
        run()
    latencies = []
    for _ in range(batches):
        start = time.perf_counter()
        run()
        latencies.append(time.perf_counter() - start)
    return latencies


def synthetic(path, batch, **options):
    sess = session(path, **options)
    name = sess.get_inputs()[0].name
    x = onnxruntime.OrtValue.ortvalue_from_numpy(
        np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float16),
        "cuda", 0)
    binding = sess.io_binding()
    binding.bind_ortvalue_input(name, x)
    out = sess.get_outputs()[0].name
    if options.get("enable_cuda_graph") == "1":
        y = onnxruntime.OrtValue.ortvalue_from_shape_and_type(
            [batch, sess.get_outputs()[0].shape[1]], np.float32, "cuda", 0)
        binding.bind_ortvalue_output(out, y)
    else:
        binding.bind_output(out, "cuda")
    used = sess.get_provider_options()["CUDAExecutionProvider"]
    lat = timed(lambda: sess.run_with_iobinding(binding))
    return {"img_per_s": images_per_second(batch, lat), "latency_ms": latency_summary(lat),
            "prefer_nhwc_in_effect": used.get("prefer_nhwc"),
            "user_stream_in_effect": used.get("has_user_compute_stream")}


def dali_pipe(data, batch, hw_load, threads=16, prefetch=2):
    rec, idx = record_files(data, "val")
    pipe = classification_val_pipeline(
        rec_path=rec, idx_path=idx, shard_id=0, num_shards=1, crop_size=(224, 224),
        resize_shorter=256, decoder_device="mixed", hw_decoder_load=hw_load, dtype="float16",
        layout="NCHW", pad_channels=False, batch_size=batch, num_threads=threads, device_id=0,
        seed=0, prefetch_queue_depth=prefetch)
    pipe.build()
    return pipe


def dali_alone(data, batch, hw_load, threads=16, prefetch=2, warmup=50, batches=200):
    """Images/s of the validation pipeline by itself (the last batch copied to the host)."""
    pipe = dali_pipe(data, batch, hw_load, threads, prefetch)
    for _ in range(warmup):
        pipe.run()
    start = time.perf_counter()
    for _ in range(batches):
        outputs = pipe.run()
    np.array(outputs[0].as_cpu().as_tensor())
    seconds = time.perf_counter() - start
    return {"img_per_s": batch * batches / seconds,
            "latency_ms": {"p50": 1000 * seconds / batches}}


def dali_fed(path, data, batch, hand_over, hw_load, threads=16, prefetch=2,
             host_threads=None):
    options = {"prefer_nhwc": "1"}
    if hand_over == "legacy stream":
        options["user_compute_stream"] = str(LEGACY)
    sess = session(path, host_threads, **options)
    name, out = sess.get_inputs()[0].name, sess.get_outputs()[0].name
    pipe = dali_pipe(data, batch, hw_load, threads, prefetch)
    lib = cudart()
    binding = sess.io_binding()

    def run():
        images = pipe.run()[0].as_tensor()
        images.__dlpack__(stream=LEGACY)
        if hand_over == "host wait":
            lib.cudaStreamSynchronize(ctypes.c_void_p(LEGACY))
        binding.bind_input(name, "cuda", 0, np.float16, list(images.shape()), images.data_ptr())
        binding.clear_binding_outputs()
        binding.bind_output(out, "cuda")
        sess.run_with_iobinding(binding)
    lat = timed(run)
    return {"img_per_s": images_per_second(batch, lat), "latency_ms": latency_summary(lat)}


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--onnx", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--part", choices=("streams", "dali", "threads"), default="streams",
                   help="streams: provider settings and hand-overs (first run); dali: the "
                        "pipeline alone and DALI-fed with fewer threads or deeper prefetch")
    args = p.parse_args()
    results = {}

    def record(key, value):
        results[key] = value
        print(f"{key}: {value['img_per_s']:,.0f} img/s p50 {value['latency_ms']['p50']:.2f} ms"
              f" {({k: v for k, v in value.items() if 'effect' in k})}", flush=True)
        with open(os.path.join(args.out, "variants.json"), "w") as f:
            json.dump(results, f, indent=1)

    if args.part == "threads":
        for batch in (208, 32):
            for host_threads in (None, 1):
                name = "default" if host_threads is None else "1, no spinning"
                record(f"dali b{batch} hw 0.65 legacy stream, ORT host threads {name}",
                       dali_fed(args.onnx, args.data, batch, "legacy stream", 0.65,
                                host_threads=host_threads))
        return
    if args.part == "dali":
        for batch in (208, 32, 1):
            for hw_load in (0.65, 0.99):
                record(f"dali alone b{batch} hw {hw_load}",
                       dali_alone(args.data, batch, hw_load))
        for threads, prefetch in ((4, 2), (16, 4), (4, 4)):
            record(f"dali b208 hw 0.65 legacy stream threads {threads} prefetch {prefetch}",
                   dali_fed(args.onnx, args.data, 208, "legacy stream", 0.65, threads,
                            prefetch))
        return
    for batch in (208, 1):
        for nhwc in ("0", "1"):
            for stream in ("own", "legacy"):
                options = {"prefer_nhwc": nhwc}
                if stream == "legacy":
                    options["user_compute_stream"] = str(LEGACY)
                record(f"synthetic b{batch} nhwc {nhwc} {stream} stream",
                       synthetic(args.onnx, batch, **options))
    record("synthetic b1 nhwc 1 cuda graph",
           synthetic(args.onnx, 1, prefer_nhwc="1", enable_cuda_graph="1"))
    for hw_load in (0.65, 0.99):
        for hand_over in ("legacy stream", "host wait"):
            record(f"dali b208 hw {hw_load} {hand_over}",
                   dali_fed(args.onnx, args.data, 208, hand_over, hw_load))


if __name__ == "__main__":
    main()
