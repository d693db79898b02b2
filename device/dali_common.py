"""What the DALI harnesses of device/ share: host copies of outputs, comparing images,
timing pipelines in turns, and recording checks and results. Needs DALI only (no MXNet, no
PyTorch), so it runs on CPU machines too."""
import json
import os
import time

import numpy as np


def host_array(tensor_list):
    """A batch as one numpy array on the host (copied from the GPU when it is there)."""
    if hasattr(tensor_list, "as_cpu"):
        tensor_list = tensor_list.as_cpu()
    return np.array(tensor_list.as_tensor())


def host_samples(tensor_list):
    """A batch as one numpy array per sample on the host (for samples of different sizes)."""
    if hasattr(tensor_list, "as_cpu"):
        tensor_list = tensor_list.as_cpu()
    return [np.asarray(tensor_list[i]) for i in range(len(tensor_list))]


def _run_batches(pipe, count):
    """Seconds for `count` batches of `pipe`, up to the last batch's first output being
    complete on the host (GPU work is asynchronous; the copy waits for it)."""
    start = time.perf_counter()
    for _ in range(count):
        outputs = pipe.run()
    host_array(outputs[0])
    return time.perf_counter() - start


def time_in_turns(pipes, batch_size, warmup, rewarm, rounds, round_batches, on_turn=None):
    """Images/s of built DALI pipelines, timed in turns in the same process.

    Each pipeline is first warmed up over `warmup` batches (decoder start-up, memory pools).
    Then, in each of `rounds` rounds, every pipeline in turn runs `rewarm` untimed batches
    and `round_batches` timed ones; the order rotates from round to round. Taking turns
    spreads changes in the machine's state over all pipelines alike; the untimed batches take
    up what a pipeline prefetched while it waited (DALI keeps its prefetch queue full), so
    that no turn starts with free batches.

    Parameters
    ----------
    pipes : dict
        Name -> built pipeline; the first output of each is the one waited for.
    batch_size : int
    warmup, rewarm, rounds, round_batches : int
    on_turn : callable, optional
        Called as ``on_turn(name, round_number, img_per_s)`` after each turn.

    Returns
    -------
    dict
        Name -> ``{"img_per_s": over all rounds, "round_img_per_s": [per round],
        "timed_images": int}``.
    """
    for pipe in pipes.values():
        _run_batches(pipe, warmup)
    seconds = {name: 0.0 for name in pipes}
    per_round = {name: [] for name in pipes}
    names = list(pipes)
    for round_number in range(rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            pipe = pipes[name]
            if rewarm:
                _run_batches(pipe, rewarm)
            turn = _run_batches(pipe, round_batches)
            seconds[name] += turn
            per_round[name].append(round_batches * batch_size / turn)
            if on_turn is not None:
                on_turn(name, round_number, per_round[name][-1])
    timed = rounds * round_batches * batch_size
    return {name: {"img_per_s": timed / seconds[name], "round_img_per_s": per_round[name],
                   "timed_images": timed} for name in pipes}


def image_diff(a, b):
    """Statistics of |a - b| over float images in normalised units (1 = one std)."""
    diff = np.abs(np.concatenate(a).astype(np.float32) - np.concatenate(b).astype(np.float32))
    return {"mean_abs_diff": float(diff.mean()), "p99_9": float(np.percentile(diff, 99.9)),
            "max": float(diff.max())}


def images_close(stats):
    """Whether `image_diff` statistics are within decoding differences."""
    # nvJPEG's IDCT and upsampling differ from libjpeg-turbo's by about a grey level (0.017).
    return stats["mean_abs_diff"] < 0.02 and stats["p99_9"] < 0.2


def record_check(results, name, passed, detail):
    """Keep a check in ``results["checks"]`` and print its CHECK line."""
    results["checks"][name] = {"passed": passed, **detail}
    print(f"CHECK {name}: {'PASS' if passed else 'FAIL'} {json.dumps(detail)}", flush=True)


def write_results(results, out):
    """Write ``results.json`` to `out` and print the SUMMARY line; returns the harness's exit
    status (1 when a check failed)."""
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    failed = sum(not c["passed"] for c in results["checks"].values())
    print(f"SUMMARY: {len(results['checks']) - failed} of {len(results['checks'])} checks "
          f"passed")
    return 1 if failed else 0
