"""Data-parallel training over Horovod, with the same interface in a single process.

Every worker process owns one device (a GPU, or the CPU). Gradients are averaged by Horovod's
`DistributedTrainer` (NCCL on GPUs, Gloo on CPUs); metrics are summed across workers here; only
rank 0 writes files. Without Horovod installed, a one-process run still works.
"""
import logging
import os

import numpy as np
from mxnet import gluon, nd

log = logging.getLogger(__name__)


class Distributed:
    """Rank, size and the collective operations the engine needs.

    Build it with `init_distributed()`; in a single process it is `Distributed(None)`.
    """

    def __init__(self, hvd):
        self._hvd = hvd
        self.rank = hvd.rank() if hvd else 0
        self.size = hvd.size() if hvd else 1
        self.local_rank = hvd.local_rank() if hvd else 0
        self.local_size = hvd.local_size() if hvd else 1

    @property
    def is_main(self):
        """True on the one worker that logs and writes files."""
        return self.rank == 0

    def make_trainer(self, params, optimizer, optimizer_params):
        """A Gluon trainer whose `allreduce_grads` averages gradients over all workers."""
        if self._hvd is None:
            return gluon.Trainer(params, optimizer, optimizer_params, kvstore=None)
        return self._hvd.DistributedTrainer(params, optimizer, optimizer_params)

    def broadcast_parameters(self, params):
        """Copy rank 0's parameter values to every worker."""
        if self._hvd is not None and self.size > 1:
            self._hvd.broadcast_parameters(params, root_rank=0)

    def average_arrays(self, arrays, name):
        """Replace each NDArray in `arrays` by its mean over all workers, in place."""
        if self._hvd is None or self.size == 1:
            return
        for i, array in enumerate(arrays):
            self._hvd.allreduce_(array, average=True, name=f"{name}.{i}")

    def sum(self, values):
        """Element-wise sum of a float64 numpy vector over all workers."""
        values = np.asarray(values, dtype=np.float64)
        if self._hvd is None or self.size == 1:
            return values
        # float64 keeps exact integer counts for any realistic data set size.
        total = self._hvd.allreduce(nd.array(values, dtype="float64"), average=False,
                                    name="engine.sum")
        return total.asnumpy()

    def all_true(self, flag):
        """True when `flag` is true on every worker (used to agree on skipping a step)."""
        return bool(self.sum([1.0 if flag else 0.0])[0] == self.size)

    def gather_objects(self, obj):
        """A list with every worker's picklable `obj`, in rank order, on every worker."""
        if self._hvd is None or self.size == 1:
            return [obj]
        return self._hvd.allgather_object(obj)

    def broadcast_object(self, obj):
        """Rank 0's picklable `obj` on every worker."""
        if self._hvd is None or self.size == 1:
            return obj
        return self._hvd.broadcast_object(obj, root_rank=0)


def init_distributed():
    """Initialise Horovod when it is installed (any world size, including 1).

    Raises
    ------
    RuntimeError
        When launched as one of several workers (by horovodrun) but Horovod cannot be imported.
    """
    try:
        import horovod.mxnet as hvd
    except ImportError as error:
        if int(os.environ.get("HOROVOD_SIZE", "1")) > 1:
            raise RuntimeError(f"this worker was launched by horovodrun but Horovod for MXNet "
                               f"cannot be imported ({error}); run `make setup`") from error
        log.warning("Horovod is not installed: training in a single process")
        return Distributed(None)
    hvd.init()
    return Distributed(hvd)
