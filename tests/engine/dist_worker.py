"""Worker of test_distributed.py, started as 2 real Horovod processes by engine.launcher.

    python dist_worker.py collectives   # every collective of Distributed, with rank-dependent inputs
    python dist_worker.py mismatch      # rank 1 skips a collective: the stall watchdog must end it
    python dist_worker.py batchnorm     # one epoch with per-rank data through SyncBatchNormStatsHook
    python dist_worker.py raise         # rank 1 raises while rank 0 waits on it

`collectives` prints one JSON line per worker (``RESULT {...}``) for the test to compare.
"""
import hashlib
import json
import os
import sys

import mxnet as mx
import numpy as np
from mxnet.gluon import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import models  # noqa: E402
from engine.distributed import init_distributed  # noqa: E402
from engine.hooks import SyncBatchNormStatsHook  # noqa: E402
from engine.loop import HookBase, TrainLoop  # noqa: E402
from engine.loss_scaler import LossScaler  # noqa: E402
from engine.tasks.classification import ClassificationTask  # noqa: E402


def blocked_layout(array):
    """True when oneDNN holds `array` in a blocked layout (Horovod cannot read those)."""
    array.wait_to_read()
    try:
        array.to_dlpack_for_read()
        return False
    except mx.base.MXNetError as error:
        return "MKLDNN" in str(error)


def digest(params):
    data = b"".join(params[name].data().asnumpy().tobytes() for name in sorted(params.keys()))
    return hashlib.sha256(data).hexdigest()


def collectives(dist):
    result = {"rank": dist.rank}
    # broadcast_object: rank 0 sends data, the others pass None (different types per rank).
    states = b"trainer-states" * 100 if dist.is_main else None
    result["broadcast_bytes"] = dist.broadcast_object(states, "test.states").decode()[:14]
    result["broadcast_tuple"] = list(dist.broadcast_object(
        ("ckpt", None) if dist.is_main else None, "test.tuple"))
    # gather_objects: per-rank objects of different sizes.
    result["gathered"] = dist.gather_objects({"rank": dist.rank, "pad": "x" * dist.rank},
                                             "test.gather")
    result["sum"] = dist.sum([1.0, dist.rank], "test.sum").tolist()
    # Parameters right after an inference pass: oneDNN keeps conv weights in blocked layouts.
    net = models.get_model("resnet18_v1.5", classes=10)
    mx.random.seed(100 + dist.rank)  # different weights per rank, which broadcast must unify
    net.initialize(models.default_initializer())
    net(mx.nd.zeros((1, 3, 32, 32)))
    mx.nd.waitall()
    params = net.collect_params()
    result["blocked_before"] = sum(blocked_layout(p.data()) for p in params.values())
    dist.broadcast_parameters(params)
    result["digest"] = digest(params)
    # average_arrays on BatchNorm statistics that differ per rank.
    stats = [p.data() for name, p in sorted(params.items()) if name.endswith("running_mean")]
    for array in stats:
        array[:] = dist.rank + 1
    dist.average_arrays(stats, "test.bn")
    result["bn_mean"] = float(np.mean([a.asnumpy().mean() for a in stats]))
    print("RESULT " + json.dumps(result), flush=True)


def mismatch(dist):
    if dist.rank == 0:
        dist.sum([1.0], "test.only_rank0")
    dist.sum([2.0], "test.everyone")
    print("RESULT unreachable: the mismatch did not stall", flush=True)


class RecordBatchNormStats(HookBase):
    """Keeps this rank's running statistics as they are before the averaging hook runs."""

    def after_epoch(self, loop):
        self.before = {name: p.data().asnumpy().tolist() for name, p in
                       loop.net.collect_params().items() if name.endswith("running_mean")}


def batchnorm(dist):
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3, padding=1), nn.BatchNorm(), nn.Activation("relu"),
            nn.GlobalAvgPool2D(), nn.Dense(3))
    mx.random.seed(3)
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, 8, 8)))
    dist.broadcast_parameters(net.collect_params())
    rng = np.random.default_rng(dist.rank)  # each rank sees data of a different mean
    batches = [{"data": mx.nd.array(rng.normal(dist.rank * 3, 1, (4, 3, 8, 8))),
                "label": mx.nd.array(rng.integers(0, 3, 4), dtype="int32")} for _ in range(3)]
    trainer = dist.make_trainer(net.collect_params(), "sgd", {"learning_rate": 0.01})
    record = RecordBatchNormStats()
    loop = TrainLoop(net, trainer, ClassificationTask(3, mx.cpu()), batches, 3, 4,
                     LossScaler(), [record, SyncBatchNormStatsHook(dist)], dist=dist)
    loop.run(0, 1)
    after = {name: p.data().asnumpy().tolist() for name, p in net.collect_params().items()
             if name.endswith("running_mean")}
    print("RESULT " + json.dumps({"rank": dist.rank, "before": record.before, "after": after}),
          flush=True)


def raise_on_rank1(dist):
    if dist.rank == 1:
        raise RuntimeError("worker 1 fails on purpose")
    dist.sum([1.0], "test.waits_for_rank1")


if __name__ == "__main__":
    mode = sys.argv[1]
    distributed = init_distributed(stall_timeout=float(os.environ.get("TEST_STALL_TIMEOUT", 0)))
    {"collectives": collectives, "mismatch": mismatch, "batchnorm": batchnorm,
     "raise": raise_on_rank1}[mode](distributed)
