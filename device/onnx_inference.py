"""ONNX Runtime's CUDA provider on a GPU machine without MXNet: an exported classifier of this
project checked and timed through `benchmark.py --runtime onnxruntime`, against torchvision's
ResNet-50 in PyTorch eager and under torch.compile on the same GPU in the same run.

    python -m device.onnx_inference --onnx rn50-fp16.onnx --out DIR [--batch-sizes 1,32,208]
                                    [--data DIR] [--images 2048] [--skip-peers]

1. Hand-over: batches decoded by DALI on the GPU and bound in place (no copy) give the very
   logits of the same batches copied to the host and bound from there; and the CUDA
   provider's logits match the CPU provider's (float16 tolerance of deploy.onnx_export).
2. benchmark.py --only-inference --runtime onnxruntime at each batch size, synthetic and
   DALI-fed (photo-like 500x375 JPEGs made here, `benchmark.py --make-data`): its JSON reports
   go to --out.
3. Peers (PyTorch and torchvision are the machine's, never the project's dependencies):
   torchvision's resnet50, float16: eager NCHW (as it comes), eager channels-last, and
   torch.compile (default mode) channels-last, timed like the
   benchmark: per batch, one fixed input on the GPU, synchronised after each batch; the same
   warm-up (100 batches) and 300 timed batches.

Prints a CHECK line per check and a table; writes results.json to --out; exits 1 when a check
fails.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from benchmarking.machine import describe, machine_info
from benchmarking.stats import rate_summary
from deploy.onnx_data import next_batch, val_pipeline
from deploy.onnx_export import TOLERANCES
from deploy.onnx_runtime import OnnxModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def check_handover(onnx_path, data_root, batch_size=32, batches=4):
    """Max |logits| differences: DALI GPU tensor bound in place vs its host copy (expected
    0), and CUDA vs CPU provider on the host copy (float16 rounding)."""
    cuda, cpu = OnnxModel(onnx_path, device="cuda"), OnnxModel(onnx_path, device="cpu")
    pipe = val_pipeline(data_root, cuda.input_shape, cuda.input_dtype, batch_size, True, 8)
    in_place, providers, scale, finite = 0.0, 0.0, 0.0, True
    for _ in range(batches):  # the first batches, while DALI's work is likeliest in flight
        images, _ = next_batch(pipe, on_gpu=True)
        direct = cuda(images)[0]
        host = np.array(images.as_cpu())
        copied = cuda(host)[0]
        reference = cpu(host)[0]
        # A float16 overflow (inf, NaN) would hide any difference: it fails the check.
        finite = finite and bool(np.isfinite(direct).all() and np.isfinite(reference).all())
        in_place = max(in_place, float(np.abs(direct - copied).max()))
        providers = max(providers, float(np.abs(copied - reference).max()))
        scale = max(scale, float(np.abs(reference).max()))
    return {"finite": finite, "in_place_vs_copy": in_place, "cuda_vs_cpu": providers,
            "logit_scale": scale}


def run_benchmark(onnx_path, backend, batch_sizes, data_root, out):
    report = os.path.join(out, f"ort-{backend}.json")
    command = [sys.executable, os.path.join(ROOT, "benchmark.py"), "--only-inference",
               "--runtime", "onnxruntime", "--onnx", onnx_path, "--data-backend", backend,
               "--data-root", data_root, "-b", ",".join(map(str, batch_sizes)),
               "-o", report]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=False)
    with open(report) as f:
        return json.load(f)


def time_torch(batch_size, compiled, channels_last=True, warmup=100, batches=300):
    import torch
    import torchvision
    model = torchvision.models.resnet50().cuda().half().eval()
    x = torch.randn(batch_size, 3, 224, 224, device="cuda", dtype=torch.half)
    if channels_last:  # what cuDNN's float16 Tensor Core convolutions run fastest on
        model = model.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    if compiled:
        model = torch.compile(model)
    latencies = []
    with torch.inference_mode():
        for i in range(warmup + batches):
            start = time.perf_counter()
            model(x)
            torch.cuda.synchronize()
            if i >= warmup:
                latencies.append(time.perf_counter() - start)
    return rate_summary(batch_size, latencies)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--onnx", required=True, help="float16 export of the classifier")
    p.add_argument("--out", required=True)
    p.add_argument("--batch-sizes", default="1,32,208")
    p.add_argument("--data", help="where to write the JPEGs (default OUT/photos)")
    p.add_argument("--images", type=int, default=2048,
                   help="photo-like JPEGs written (a quarter go to val.rec)")
    p.add_argument("--skip-peers", action="store_true")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    print(describe(machine_info()), flush=True)
    data = args.data or os.path.join(args.out, "photos")
    subprocess.run([sys.executable, os.path.join(ROOT, "benchmark.py"), "--make-data", data,
                    "--num-images", str(args.images)], check=True)
    results = {"machine": machine_info(), "checks": {}, "onnxruntime": {}, "peers": {}}

    def save():
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump(results, f, indent=1)

    handover = check_handover(args.onnx, data)
    tolerance = TOLERANCES["float16"] * (1 + handover["logit_scale"])
    passed = (handover["finite"] and handover["in_place_vs_copy"] == 0.0
              and handover["cuda_vs_cpu"] <= tolerance)
    results["checks"]["dali gpu hand-over"] = {"passed": passed, **handover}
    print(f"CHECK dali gpu hand-over: {'PASS' if passed else 'FAIL'} {json.dumps(handover)}",
          flush=True)
    save()
    for backend in ("synthetic", "dali-gpu"):
        report = run_benchmark(args.onnx, backend, batch_sizes, data, args.out)
        results["onnxruntime"][backend] = {r["batch_size"]: r for r in report["results"]}
        save()
    if not args.skip_peers:
        for name, compiled, channels_last in (("torch eager NCHW", False, False),
                                              ("torch eager channels-last", False, True),
                                              ("torch.compile channels-last", True, True)):
            for batch in batch_sizes:
                results["peers"].setdefault(name, {})[batch] = row = time_torch(
                    batch, compiled, channels_last)
                print(f"PEER {name} batch {batch}: {row['img_per_s']:,.0f} img/s, p50 "
                      f"{row['latency_ms']['p50']:.2f} ms", flush=True)
                save()
    print_table(results, batch_sizes)
    return 0 if all(c["passed"] for c in results["checks"].values()) else 1


def print_table(results, batch_sizes):
    print(f"\n{'runtime':<28}" + "".join(f"{f'b{b} img/s':>14}{f'b{b} p50 ms':>12}"
                                         for b in batch_sizes))
    rows = [(f"onnxruntime {k}", v) for k, v in results["onnxruntime"].items()]
    rows += list(results["peers"].items())
    for name, cases in rows:
        cells = ""
        for b in batch_sizes:
            case = cases.get(b) or {}
            rate = case.get("img_per_s")
            p50 = (case.get("latency_ms") or {}).get("p50")
            cells += (f"{rate:>14,.0f}{p50:>12.2f}" if rate else f"{'-':>14}{'-':>12}")
        print(f"{name:<28}{cells}")


if __name__ == "__main__":
    sys.exit(main())
