"""Data-parallel training over Horovod, with the same interface in a single process.

Every worker process owns one device (a GPU, or the CPU). Gradients are averaged by Horovod's
`DistributedTrainer` (NCCL on GPUs, Gloo on CPUs); metrics are summed across workers here; only
rank 0 writes files. Without Horovod installed, a one-process run still works.

Two rules keep the workers in step, and every collective here follows them:
- a collective is matched across workers by its name, so every call passes an explicit name
  that is the same on every rank (Horovod's default for objects is the object's type name,
  which differs when rank 0 sends data and the others pass None: they never meet);
- every rank issues the same collectives in the same order, whatever its local state.
Every wait on the other workers runs under the stall watchdog (`engine/watchdog.py`).
"""
import ctypes
import logging
import os
from contextlib import nullcontext

import mxnet as mx
import numpy as np
from mxnet import gluon, nd

from engine.watchdog import STATUS_DIR_ENV, StallWatchdog

log = logging.getLogger(__name__)


def to_default_layout(arrays):
    """Give every CPU NDArray in `arrays` MXNet's plain row-major layout, in place.

    oneDNN keeps some CPU arrays in blocked layouts: a convolution's weights after a forward
    pass in inference mode (the shape-resolving pass of `models.build_network`, evaluation).
    Horovod reads an array's memory as a plain buffer; on a blocked array it fails ("We can't
    generate TBlob for MKLDNN data"), and without this reorder the failure depends on whether
    MXNet's asynchronous reorder ran before the collective (the intermittent crash of 2-worker
    runs). MXNet's C API reorders an array to the default layout when its data pointer is
    asked for (MXNDArrayGetData).
    """
    arrays = [array for array in arrays if array.context.device_type == "cpu"]
    if not arrays:
        return  # GPU arrays are never in oneDNN layouts
    # All of the engine, not the arrays alone: a convolution still running pushes its
    # weight's reorder when it executes, after a wait_to_read on the weight has returned.
    nd.waitall()
    for array in arrays:
        mx.base.check_call(mx.base._LIB.MXNDArrayGetData(array.handle,
                                                          ctypes.byref(ctypes.c_void_p())))


class Distributed:
    """Rank, size and the collective operations the engine needs.

    Build it with `init_distributed()`; in a single process it is `Distributed(None)`.

    Parameters
    ----------
    hvd : module or None
        `horovod.mxnet`, initialised.
    stall_timeout : float
        Seconds a worker may wait on the others in one collective before it stops with an
        error (0: wait forever).
    """

    def __init__(self, hvd, stall_timeout=0):
        self._hvd = hvd
        self.rank = hvd.rank() if hvd else 0
        self.size = hvd.size() if hvd else 1
        self.local_rank = hvd.local_rank() if hvd else 0
        self.local_size = hvd.local_size() if hvd else 1
        self._watchdog = None
        if self.size > 1 and stall_timeout > 0:
            self._watchdog = StallWatchdog(self.rank, stall_timeout,
                                           os.environ.get(STATUS_DIR_ENV))

    @property
    def is_main(self):
        """True on the one worker that logs and writes files."""
        return self.rank == 0

    @property
    def _alone(self):
        return self._hvd is None or self.size == 1

    def waiting(self, name):
        """Context manager: the enclosed code waits on the other workers in collective `name`
        (bounded by the stall watchdog)."""
        return self._watchdog.waiting(name) if self._watchdog else nullcontext()

    def make_trainer(self, params, optimizer, optimizer_params):
        """A Gluon trainer whose `allreduce_grads` averages gradients over all workers (the
        collectives are named ``grad.<index>``)."""
        if self._hvd is None:
            return gluon.Trainer(params, optimizer, optimizer_params, kvstore=None)
        return self._hvd.DistributedTrainer(params, optimizer, optimizer_params, prefix="grad.")

    def broadcast_parameters(self, params):
        """Copy rank 0's parameter values to every worker."""
        if self._alone:
            return
        arrays = {name: p.data() for name, p in params.items()}
        to_default_layout(arrays.values())
        with self.waiting("params"):
            self._hvd.broadcast_parameters(arrays, root_rank=0, prefix="params.")
            for array in arrays.values():
                array.wait_to_read()

    def average_arrays(self, arrays, name):
        """Replace each NDArray in `arrays` by its mean over all workers, in place."""
        if self._alone:
            return
        to_default_layout(arrays)
        with self.waiting(name):
            for i, array in enumerate(arrays):
                self._hvd.allreduce_(array, average=True, name=f"{name}.{i}")
            for array in arrays:
                array.wait_to_read()

    def mean(self, array, name):
        """A new NDArray: the mean of `array` over all workers (collective `name`)."""
        result = array.copy()
        self.average_arrays([result], name)
        return result

    def sum(self, values, name):
        """Element-wise sum of a float64 numpy vector over all workers."""
        values = np.asarray(values, dtype=np.float64)
        if self._alone:
            return values
        with self.waiting(name):
            # float64 keeps exact integer counts for any realistic data set size.
            total = self._hvd.allreduce(nd.array(values, dtype="float64"), average=False,
                                        name=name)
            return total.asnumpy()

    def gather_objects(self, obj, name):
        """A list with every worker's picklable `obj`, in rank order, on every worker."""
        if self._alone:
            return [obj]
        with self.waiting(name):
            return self._hvd.allgather_object(obj, name=name)

    def broadcast_object(self, obj, name):
        """Rank 0's picklable `obj` on every worker (the others pass anything, e.g. None)."""
        if self._alone:
            return obj
        with self.waiting(name):
            return self._hvd.broadcast_object(obj, root_rank=0, name=name)


    def finish(self):
        """Wait until every worker has got here, before any leaves.

        A worker's exit shuts Horovod down, which fails the collectives the others have not
        finished yet (seen: rank 0 leaving right after broadcasting the evaluation metrics,
        rank 1 still receiving them). When this last collective itself is cut short that
        way, everything before it is complete, so that error is not one.
        """
        if self._alone:
            return
        try:
            self.sum([1.0], "run.finish")
        except mx.base.MXNetError as error:
            if not peer_left(error):
                raise


# What Horovod's collectives raise on every worker once one of them has failed or left.
HOROVOD_SHUT_DOWN = "Horovod has been shut down"


def peer_left(error):
    """True when `error` is Horovod's failure of a collective because another worker left."""
    return isinstance(error, mx.base.MXNetError) and HOROVOD_SHUT_DOWN in str(error)


def init_distributed(stall_timeout=0):
    """Initialise Horovod when it is installed (any world size, including 1).

    Parameters
    ----------
    stall_timeout : float
        See `Distributed`.

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
    return Distributed(hvd, stall_timeout)
