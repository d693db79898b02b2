"""Checks of the DALI GPU pipelines, for a GPU machine that has DALI but no MXNet.

    python -m device.dali_pipelines --out DIR [--images 512] [--batch-size 256]

MXNet cannot run on Hopper GPUs (no MXNet wheel has sm_90 code), so on the H200 this harness
proves what can be proved without it, with PyTorch standing in for MXNet as the DLPack consumer:

1. GPU decoding matches CPU decoding: the validation pipeline with ``decoder_device="mixed"``
   (nvJPEG / hardware decoder) against the same pipeline on the CPU, image by image.
2. Output formats: the training pipeline on the GPU in float32/float16, NCHW/NHWC, padded to
   4 channels: shapes, dtypes, the zero padding channel, normalised value ranges.
3. DLPack hand-over: GPU outputs exported the way `data.dali_iterator` exports them (on the
   legacy default stream) equal their host copies.
4. Throughput of the training pipeline (batch 256, 224x224, float16 NHWC) on photo-like
   500x375 JPEGs: CPU threads, GPU decoding, and GPU decoding with the hardware decoder.

Prints a CHECK line per check and a summary; writes ``results.json`` to --out; exits 1 when a
check fails.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

from data.pipelines import (READER_NAME, classification_train_pipeline,
                            classification_val_pipeline)
from device.dali_common import host_array

_LEGACY_DEFAULT_STREAM = 1  # what data.dali_iterator passes to __dlpack__


def make_records(directory, count):
    """Photo-like 500x375 JPEGs in directory/photos.rec/.idx (labels 0..9, cycling)."""
    from benchmarking.photos import write_photo_records
    prefix = os.path.join(directory, "photos")
    write_photo_records(prefix, count, seed=0, num_classes=10)
    return prefix + ".rec", prefix + ".idx"


def _common(rec, idx, device, batch_size, threads, dtype="float32", layout="NCHW",
            pad=False, hw_load=0.65):
    gpu = device == "gpu"
    return dict(rec_path=rec, idx_path=idx, shard_id=0, num_shards=1,
                decoder_device="mixed" if gpu else "cpu", hw_decoder_load=hw_load, dtype=dtype,
                layout=layout, pad_channels=pad, batch_size=batch_size, num_threads=threads,
                device_id=0 if gpu else None, seed=1)


def check_gpu_decoding_matches_cpu(rec, idx, batches=4):
    """Validation pipeline, GPU vs CPU, in normalised units (1 = one standard deviation)."""
    pipes = {}
    for device in ("cpu", "gpu"):
        pipes[device] = classification_val_pipeline(
            crop_size=(224, 224), resize_shorter=256, **_common(rec, idx, device, 64, 4))
        pipes[device].build()
    diffs, labels_equal = [], True
    for _ in range(batches):
        (cpu_images, cpu_labels), (gpu_images, gpu_labels) = (pipes[d].run() for d in
                                                              ("cpu", "gpu"))
        diffs.append(np.abs(host_array(gpu_images) - host_array(cpu_images)))
        labels_equal &= np.array_equal(host_array(cpu_labels), host_array(gpu_labels))
    diff = np.concatenate(diffs)
    # nvJPEG's IDCT and upsampling differ from libjpeg-turbo's by about a grey level.
    passed = bool(labels_equal and diff.mean() < 0.02 and np.percentile(diff, 99.9) < 0.2)
    return passed, {"mean_abs_diff": float(diff.mean()), "p99_9": float(np.percentile(diff, 99.9)),
                    "max": float(diff.max()), "labels_equal": bool(labels_equal)}


def check_training_formats(rec, idx):
    """Training pipeline on the GPU in every output format."""
    results, passed = {}, True
    for dtype, layout, pad, shape in (("float32", "NCHW", False, (8, 3, 224, 224)),
                                      ("float16", "NCHW", False, (8, 3, 224, 224)),
                                      ("float16", "NHWC", False, (8, 224, 224, 3)),
                                      ("float16", "NHWC", True, (8, 224, 224, 4))):
        pipe = classification_train_pipeline(
            crop_size=(224, 224), random_area=(0.08, 1.0), random_aspect_ratio=(0.75, 4 / 3),
            **_common(rec, idx, "gpu", 8, 2, dtype, layout, pad))
        pipe.build()
        images, labels = pipe.run()
        array = host_array(images)
        values = array.astype(np.float32)
        ok = (array.shape == shape and array.dtype == np.dtype(dtype)
              and host_array(labels).shape == (8,) and host_array(labels).dtype == np.int32)
        if pad:
            ok &= bool(np.all(values[..., 3] == 0))
            values = values[..., :3]
        ok &= bool(values.min() >= -2.2 and values.max() <= 2.7 and values.std() > 0.2)
        results[f"{dtype}/{layout}/pad={pad}"] = {"shape": list(array.shape), "ok": bool(ok)}
        passed &= bool(ok)
    return passed, results


def check_dlpack_handover(rec, idx):
    """GPU outputs through DLPack (as the MXNet iterator takes them) equal their host copies."""
    import torch
    pipe = classification_val_pipeline(crop_size=(224, 224), resize_shorter=256,
                                       **_common(rec, idx, "gpu", 16, 2, "float16", "NHWC"))
    pipe.build()
    images, _ = pipe.run()
    tensor = images.as_tensor()
    capsule = tensor.__dlpack__(stream=_LEGACY_DEFAULT_STREAM)
    on_gpu = torch.utils.dlpack.from_dlpack(capsule)
    torch.cuda.synchronize()
    same = np.array_equal(on_gpu.cpu().numpy(), host_array(images))
    shares_memory = on_gpu.data_ptr() == tensor.data_ptr()
    return bool(same and shares_memory), {"equal": bool(same), "zero_copy": bool(shares_memory),
                                          "device": str(on_gpu.device)}


def measure_training_throughput(rec, idx, batch_size, warmup=5, batches=30):
    """Images/s of the training pipeline (float16 NHWC, 224) per decoder configuration."""
    configs = {"cpu (16 threads)": ("cpu", 16, 0.0), "gpu (nvJPEG CUDA)": ("gpu", 4, 0.0),
               "gpu (hw decoder 0.65)": ("gpu", 4, 0.65),
               "gpu (hw decoder 0.99)": ("gpu", 4, 0.99)}
    rates = {}
    for name, (device, threads, hw_load) in configs.items():
        pipe = classification_train_pipeline(
            crop_size=(224, 224), random_area=(0.08, 1.0), random_aspect_ratio=(0.75, 4 / 3),
            **_common(rec, idx, device, batch_size, threads, "float16", "NHWC", False, hw_load))
        pipe.build()
        for _ in range(warmup):
            pipe.run()
        start = time.perf_counter()
        for _ in range(batches):
            images, _ = pipe.run()
        host_array(images)  # waits for the last batch to be complete
        rates[name] = batch_size * batches / (time.perf_counter() - start)
        del pipe
    return rates


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for the records and results.json")
    parser.add_argument("--images", type=int, default=512, help="photo-like JPEGs to make")
    parser.add_argument("--batch-size", type=int, default=256, help="throughput batch size")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    rec, idx = make_records(args.out, args.images)
    results, failed = {}, 0
    for name, check in (("gpu decoding matches cpu", check_gpu_decoding_matches_cpu),
                        ("training formats on gpu", check_training_formats),
                        ("dlpack hand-over", check_dlpack_handover)):
        passed, detail = check(rec, idx)
        failed += not passed
        results[name] = {"passed": passed, **detail}
        print(f"CHECK {name}: {'PASS' if passed else 'FAIL'} {json.dumps(detail)}", flush=True)
    results["throughput_img_per_s"] = measure_training_throughput(rec, idx, args.batch_size)
    for name, rate in results["throughput_img_per_s"].items():
        print(f"THROUGHPUT {name}: {rate:,.0f} img/s", flush=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(f"SUMMARY: {3 - failed} of 3 checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
