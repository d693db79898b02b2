"""Which ONNX Runtime CUDA settings make an exported ResNet-50 fastest on this GPU, and how a
DALI GPU batch is best handed over: the experiment behind deploy/onnx_runtime.py's choices.

    python -m device.onnx_variants --onnx rn50-fp16.onnx --data DIR(with val.rec) --out DIR

Synthetic input (one batch bound once as an OrtValue), batch 1 and 208, per CUDA provider
setting: prefer_nhwc 0/1, ONNX Runtime's own stream or the legacy default stream
(user_compute_stream=1), CUDA graphs (batch 1). DALI-fed at batch 208: the legacy-stream
hand-over (ONNX Runtime computes on the stream DALI's __dlpack__ made wait) against ONNX
Runtime's own stream after a host wait for that stream, at hardware decoder loads 0.65 and
0.99. Each case: 50 untimed batches, then 200 timed one by one. Writes variants.json.

--part priority (DALI-fed at batch 208 trailing 0.8x of synthetic): ONNX Runtime on a
non-blocking stream of the highest priority, so that the GPU schedules the network's blocks
ahead of DALI's decoding and resizing kernels when both are queued; and CUDA graphs fed by a
device-to-device copy of each DALI batch into the graph's fixed input buffer, on that stream.
Synthetic figures on the same streams beside them.

--part contention (neither helped: why does feeding cost a quarter at batch 208?): the
pipeline alone; the pipeline and the synthetic network run at the same time from two host
threads, each one's rate (GPU sharing alone, no hand-over); DALI-fed with DALI's dynamic
executor; DALI-fed with DALI's device and pinned memory pools preallocated (a cudaFree or
cudaMalloc inside DALI's iteration would wait for the network's queued work).
"""
import argparse
import ctypes
import json
import os
import time

import numpy as np
import onnxruntime

from benchmarking.stats import rate_summary
from data.files import record_files
from data.pipelines import _decoder_options, _normalize, _read_records, classification_val_pipeline

LEGACY = 1


def cudart():
    for name in ("libcudart.so.13", "libcudart.so.12", "libcudart.so"):
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise OSError("no libcudart")


def priority_stream(lib, highest=True):
    """A non-blocking CUDA stream of the highest (or lowest) priority, as an integer handle."""
    least, greatest = ctypes.c_int(), ctypes.c_int()
    lib.cudaDeviceGetStreamPriorityRange(ctypes.byref(least), ctypes.byref(greatest))
    stream = ctypes.c_void_p()
    status = lib.cudaStreamCreateWithPriority(ctypes.byref(stream), 1,  # cudaStreamNonBlocking
                                              greatest if highest else least)
    if status:
        raise RuntimeError(f"cudaStreamCreateWithPriority failed: {status}")
    return stream.value


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
    return {**rate_summary(batch, lat), "prefer_nhwc_in_effect": used.get("prefer_nhwc"),
            "user_stream_in_effect": used.get("has_user_compute_stream")}


def _crop_window(jpegs, crop=224, shorter=256):
    """Relative [y, x] start and end of the source window that resize-to-`shorter` then
    centre-crop-`crop` keeps."""
    from nvidia.dali import fn, types
    import nvidia.dali.math as dmath
    shape = fn.peek_image_shape(jpegs, dtype=types.FLOAT)
    height, width = shape[0], shape[1]
    side = dmath.min(height, width) * (crop / shorter)
    extent = fn.stack(side / height, side / width)
    return (1 - extent) * 0.5, (1 + extent) * 0.5


def lighter_pipe(data, batch, hw_load, threads=16, decoder_device="mixed"):
    from nvidia.dali import fn, pipeline_def

    @pipeline_def
    def pipeline():
        rec, idx = record_files(data, "val")
        jpegs, labels = _read_records(rec, idx, 0, 1, shuffle=False)
        start, end = _crop_window(jpegs)
        images = fn.decoders.image(jpegs, **_decoder_options(decoder_device, hw_load))
        images = fn.resize(images, size=[224, 224], roi_start=start, roi_end=end,
                           roi_relative=True)
        return _normalize(images, "float16", "NCHW"), labels

    pipe = pipeline(batch_size=batch, num_threads=threads,
                    device_id=0 if decoder_device == "mixed" else None, seed=0,
                    prefetch_queue_depth=2)
    pipe.build()
    return pipe


def dali_pipe(data, batch, hw_load, threads=16, prefetch=2, lighter=False,
              **pipeline_options):
    if lighter:
        return lighter_pipe(data, batch, hw_load, threads)
    rec, idx = record_files(data, "val")
    pipe = classification_val_pipeline(
        rec_path=rec, idx_path=idx, shard_id=0, num_shards=1, crop_size=(224, 224),
        resize_shorter=256, decoder_device="mixed", hw_decoder_load=hw_load, dtype="float16",
        layout="NCHW", pad_channels=False, batch_size=batch, num_threads=threads, device_id=0,
        seed=0, prefetch_queue_depth=prefetch, **pipeline_options)
    pipe.build()
    return pipe


def dali_alone(data, batch, hw_load, threads=16, prefetch=2, warmup=50, batches=200,
               lighter=False):
    """Images/s of the validation pipeline by itself (the last batch copied to the host)."""
    pipe = dali_pipe(data, batch, hw_load, threads, prefetch, lighter=lighter)
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
             host_threads=None, **pipeline_options):
    options = {"prefer_nhwc": "1"}
    if hand_over == "legacy stream":
        options["user_compute_stream"] = str(LEGACY)
    sess = session(path, host_threads, **options)
    name, out = sess.get_inputs()[0].name, sess.get_outputs()[0].name
    pipe = dali_pipe(data, batch, hw_load, threads, prefetch, **pipeline_options)
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
    return rate_summary(batch, lat)


def _fixed_buffers(sess, batch):
    x = onnxruntime.OrtValue.ortvalue_from_shape_and_type([batch, 3, 224, 224], np.float16,
                                                          "cuda", 0)
    y = onnxruntime.OrtValue.ortvalue_from_shape_and_type(
        [batch, sess.get_outputs()[0].shape[1]], np.float32, "cuda", 0)
    binding = sess.io_binding()
    binding.bind_ortvalue_input(sess.get_inputs()[0].name, x)
    binding.bind_ortvalue_output(sess.get_outputs()[0].name, y)
    return x, binding


def on_stream(path, data, batch, stream, hw_load=None, graph=False):
    """Synthetic (`hw_load` None) or DALI-fed images/s with ONNX Runtime computing on
    `stream`; with `graph`, a CUDA graph replayed on a fixed input that each DALI batch is
    copied into (device to device, on `stream`, after DALI's work: __dlpack__(stream))."""
    options = {"prefer_nhwc": "1", "user_compute_stream": str(stream)}
    if graph:
        options["enable_cuda_graph"] = "1"
    sess = session(path, 1, **options)
    x, binding = _fixed_buffers(sess, batch)
    if hw_load is None:
        lat = timed(lambda: sess.run_with_iobinding(binding))
        return rate_summary(batch, lat)
    lib = cudart()
    lib.cudaMemcpyAsync.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                    ctypes.c_int, ctypes.c_void_p]
    pipe = dali_pipe(data, batch, hw_load)
    name = sess.get_inputs()[0].name
    nbytes = batch * 3 * 224 * 224 * 2

    def run():
        images = pipe.run()[0].as_tensor()
        images.__dlpack__(stream=stream)  # the stream waits for DALI's work on this batch
        if graph:
            lib.cudaMemcpyAsync(x.data_ptr(), images.data_ptr(), nbytes, 3, stream)
        else:
            binding.bind_input(name, "cuda", 0, np.float16, list(images.shape()),
                               images.data_ptr())
        sess.run_with_iobinding(binding)
    lat = timed(run)
    return rate_summary(batch, lat)


def side_by_side(path, data, batch, hw_load, seconds=8.0):
    """Images/s of the synthetic network and of the pipeline run at the same time from two
    host threads (the pipeline's run() blocks once its prefetch queue is full, so its count
    of runs is its rate)."""
    import threading
    sess = session(path, 1, prefer_nhwc="1")
    _, binding = _fixed_buffers(sess, batch)
    pipe = dali_pipe(data, batch, hw_load)
    for _ in range(20):
        sess.run_with_iobinding(binding)
        pipe.run()
    counts = {"network": 0, "dali": 0}
    stop = time.perf_counter() + seconds

    def loop(name, step):
        while time.perf_counter() < stop:
            step()
            counts[name] += 1

    threads = [threading.Thread(target=loop, args=("network",
                                                   lambda: sess.run_with_iobinding(binding))),
               threading.Thread(target=loop, args=("dali", pipe.run))]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    rates = {name: batch * count / elapsed for name, count in counts.items()}
    return {"img_per_s": rates["network"], "dali_img_per_s": rates["dali"],
            "latency_ms": {"p50": 1000 * elapsed / max(counts["network"], 1)}}


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--onnx", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--part", choices=("streams", "dali", "threads", "priority", "contention",
                            "lighter"),
                   default="streams",
                   help="streams: provider settings and hand-overs (first run); dali: the "
                        "pipeline alone and DALI-fed with fewer threads or deeper prefetch; "
                        "threads: ONNX Runtime's host threads; priority: stream priorities "
                        "and CUDA graphs fed by a copy")
    args = p.parse_args()
    results = {}

    def record(key, value):
        results[key] = value
        print(f"{key}: {value['img_per_s']:,.0f} img/s p50 {value['latency_ms']['p50']:.2f} ms"
              f" {({k: v for k, v in value.items() if k not in ('img_per_s', 'latency_ms')})}",
              flush=True)
        with open(os.path.join(args.out, "variants.json"), "w") as f:
            json.dump(results, f, indent=1)

    def try_record(key, measure):
        try:
            record(key, measure())
        except Exception as error:  # one failing variant must not end the others
            print(f"{key}: FAILED {type(error).__name__}: {error}", flush=True)
            results[key] = {"error": f"{type(error).__name__}: {error}"}

    if args.part == "lighter":
        for hw_load in (0.65, 0.0):
            for lighter in (False, True):
                name = "lighter (crop in the resize)" if lighter else "project's"
                try_record(f"dali alone b208 hw {hw_load} {name}",
                           lambda: dali_alone(args.data, 208, hw_load, lighter=lighter))
                try_record(f"dali b208 hw {hw_load} legacy stream {name}",
                           lambda: dali_fed(args.onnx, args.data, 208, "legacy stream",
                                            hw_load, host_threads=1, lighter=lighter))
        return
    if args.part == "contention":
        from nvidia.dali import backend
        try_record("dali alone b208 hw 0.65", lambda: dali_alone(args.data, 208, 0.65))
        for hw_load in (0.65, 0.99):
            try_record(f"side by side b208 hw {hw_load} (network rate; dali_img_per_s too)",
                       lambda: side_by_side(args.onnx, args.data, 208, hw_load))
        try_record("dali b208 hw 0.65 legacy stream, exec_dynamic",
                   lambda: dali_fed(args.onnx, args.data, 208, "legacy stream", 0.65,
                                    host_threads=1, exec_dynamic=True))
        backend.PreallocateDeviceMemory(8 << 30, 0)
        backend.PreallocatePinnedMemory(2 << 30)
        try_record("dali b208 hw 0.65 legacy stream, pools preallocated",
                   lambda: dali_fed(args.onnx, args.data, 208, "legacy stream", 0.65,
                                    host_threads=1))
        try_record("dali b208 hw 0.65 legacy stream, pools preallocated, exec_dynamic",
                   lambda: dali_fed(args.onnx, args.data, 208, "legacy stream", 0.65,
                                    host_threads=1, exec_dynamic=True))
        return
    if args.part == "priority":
        lib = cudart()
        high, low = priority_stream(lib), priority_stream(lib, highest=False)
        record("synthetic b208 legacy stream (as deploy/onnx_runtime.py)",
               synthetic(args.onnx, 208, prefer_nhwc="1", user_compute_stream=str(LEGACY)))
        record("dali b208 hw 0.65 legacy stream (as deploy/onnx_runtime.py)",
               dali_fed(args.onnx, args.data, 208, "legacy stream", 0.65, host_threads=1))
        for graph in (False, True):
            kind = "cuda graph" if graph else "bound"
            for label, stream in (("high", high), ("low", low)):
                for hw_load in (None, 0.65, 0.99):
                    name = ("synthetic" if hw_load is None else f"dali hw {hw_load}")
                    try_record(f"{name} b208 {kind} {label}-priority stream",
                               lambda: on_stream(args.onnx, args.data, 208, stream, hw_load,
                                                 graph))
        return
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
