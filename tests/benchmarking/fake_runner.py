"""A stand-in for ./runner in the sweep tests: writes train.py's epoch records, or fails.

It reads the flags the benchmark passes (-n, -b, --num-epochs, --num-examples, --workspace)
and writes one "epoch" record per epoch to WORKSPACE/log.jsonl with an iteration time of
100 ms x batch: epoch 0 (warm-up) is twice as slow. Batches listed in the environment
variable FAKE_RUNNER_FAIL exit with an error; those in FAKE_RUNNER_OOM print an MXNet-style
out-of-memory message first. FAKE_RUNNER_EPOCH_BATCHES caps the iterations of an epoch, like
a training set smaller than requested.
"""
import argparse
import json
import os
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("-n", type=int)
    p.add_argument("-b", type=int)
    p.add_argument("--num-epochs", type=int)
    p.add_argument("--num-examples", type=int)
    p.add_argument("--workspace")
    args, _ = p.parse_known_args()
    failing = os.environ.get("FAKE_RUNNER_FAIL", "").split(",")
    out_of_memory = os.environ.get("FAKE_RUNNER_OOM", "").split(",")
    if str(args.b) in out_of_memory:
        print(f"[0]<stderr>:mxnet.base.MXNetError: cudaMalloc retry failed: out of memory")
        print("Process 0 exit with status code 1.")
        return 1
    if str(args.b) in failing:
        print(f"[0]<stdout>:12:00:00 ERROR batch {args.b} cannot run here", flush=True)
        print("Terminating remaining workers after failure of Process 0.")
        return 2
    iterations = min(args.num_examples // (args.n * args.b),
                     int(os.environ.get("FAKE_RUNNER_EPOCH_BATCHES", 10 ** 9)))
    with open(os.path.join(args.workspace, "log.jsonl"), "w") as f:
        for epoch in range(args.num_epochs):
            iter_ms = 100.0 * args.b * (2 if epoch == 0 else 1)
            f.write(json.dumps({"event": "epoch", "epoch": epoch, "iter_ms": iter_ms,
                                "seconds": iter_ms * iterations / 1000, "data_wait_ms": 1.0,
                                "img_per_s": 1000 * args.n * args.b / iter_ms}) + "\n")
            print(f"[0]<stdout>:12:00:00 INFO epoch {epoch} done: loss 1.0", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
