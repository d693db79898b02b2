"""DALI pipelines to MXNet NDArrays, without copies.

DALI 1.40 removed its MXNet plugin, so this is the project's own. It subclasses DALI's
framework-agnostic `_DaliBaseIterator`, which already handles sharding, epoch size, the
last-batch policies and checkpointing; what is left here is `__next__`: wrap each output in an
NDArray through DLPack and drop the padding of a partial last batch.

Zero-copy is safe because DALI 2.x pipelines run on the dynamic executor: each batch's outputs
are fresh buffers kept alive by their references (here, the DLPack capsules that MXNet holds),
not a ring of buffers that the next run would overwrite. Older DALI (e.g. 1.37 in NVIDIA's
MXNet container) or `exec_dynamic=False` reuse their output buffers; there each output is
copied, and the copy finished, before the buffers go back to DALI.

Last-batch policies (`LastBatchPolicy`), for a shard of 7 samples and batch 2:

============  ===============================  =============================================
policy        last batch                       use
============  ===============================  =============================================
``DROP``      ``[5, 6]`` (sample 7 dropped)    training: every worker takes the same number
                                               of steps, as allreduce requires
``PARTIAL``   ``[7]`` (padding removed)        evaluation: every sample counted exactly once
``FILL``      ``[7, 7]`` (padded with a copy)  fixed-shape inference
============  ===============================  =============================================

The readers pad their shards (``pad_last_batch=True``), so every epoch of every shard starts at
the shard's first sample and shards of unequal size give the same number of batches.
"""
import mxnet as mx
import numpy as np
from nvidia.dali.backend import TensorGPU, TensorListGPU
from nvidia.dali.plugin.base_iterator import LastBatchPolicy, _DaliBaseIterator

__all__ = ["DALIMXNetIterator", "LastBatchPolicy"]

# DLPack's stream number for the legacy default CUDA stream. MXNet's GPU streams are created
# blocking, so they wait for work (here: DALI's "data ready" event) queued on that stream.
_LEGACY_DEFAULT_STREAM = 1


class DALIMXNetIterator(_DaliBaseIterator):
    """Iterate a DALI pipeline as dicts of MXNet NDArrays.

    Parameters
    ----------
    pipeline : nvidia.dali.Pipeline
        One pipeline (one per worker process; each worker owns one device).
    output_names : sequence of str
        Names of the pipeline outputs, in order; the keys of every batch dict.
    reader_name : str
        The `name` given to the pipeline's reader; epoch size and shard layout come from it.
    last_batch_policy : LastBatchPolicy
        See the table in the module docstring.
    auto_reset : bool
        Reset at the end of each epoch, so that the iterator can be looped over again.
    prepare_first_batch : bool
        Run the pipeline for the first batch now (False: at the first `next`, so that a
        failing first batch fails there, where the loader handles failures).
    """

    def __init__(self, pipeline, output_names, reader_name, last_batch_policy,
                 auto_reset=True, prepare_first_batch=True):
        self.output_names = tuple(output_names)
        super().__init__([pipeline], reader_name=reader_name, auto_reset=auto_reset,
                         last_batch_policy=last_batch_policy,
                         prepare_first_batch=prepare_first_batch)
        self._first_batch = None
        if self._prepare_first_batch:
            try:
                self._first_batch = self._next_batch()
            except StopIteration:
                self._report_no_data_in_pipeline()

    def __next__(self):
        self._ever_consumed = True
        if self._first_batch is not None:
            batch, self._first_batch = self._first_batch, None
            return batch
        return self._next_batch()

    def _next_batch(self):
        (outputs,) = self._get_outputs()
        if len(outputs) != len(self.output_names):
            raise ValueError(f"pipeline has {len(outputs)} outputs but output_names names "
                             f"{len(self.output_names)}: {self.output_names}")
        copy = not self._pipes[0].exec_dynamic
        batch = {name: _to_ndarray(out, copy, name)
                 for name, out in zip(self.output_names, outputs)}
        self._schedule_runs()
        self._advance_and_check_drop_last()
        drop, keep = self._remove_padded()
        if np.any(drop):
            batch = {name: array[: int(np.ravel(keep)[0])] for name, array in batch.items()}
        return batch


def _to_ndarray(tensor_list, copy, name):
    """One DALI output batch as an NDArray that shares its memory (or, with `copy`, owns a
    finished copy of it).

    Every output must be dense: one shape for all samples of the batch. Variable-length
    outputs (a detection sample's boxes) are padded to a fixed shape in the pipeline
    (``fn.pad(..., fill_value=-1, axes=[0], shape=[max_boxes])``, as `data.coco_pipelines`
    does), which keeps the batch a single NDArray for MXNet.
    """
    if not tensor_list.is_dense_tensor():
        # DALI's own error ("Assert on IsDenseTensor() failed") names neither the output nor
        # the remedy.
        shapes = sorted({tuple(shape) for shape in tensor_list.shape()})
        listed = ", ".join(map(str, shapes[:4])) + (", ..." if len(shapes) > 4 else "")
        raise ValueError(f"pipeline output {name!r} is not one dense batch (sample shapes: "
                         f"{listed}); an NDArray needs one shape for the whole batch: pad "
                         f"the output in the pipeline to a fixed shape (fn.pad with "
                         f"fill_value=-1 and shape)")
    tensor = tensor_list.as_tensor()
    if isinstance(tensor_list, (TensorListGPU, TensorGPU)):
        capsule = tensor.__dlpack__(stream=_LEGACY_DEFAULT_STREAM)
    else:
        capsule = tensor.__dlpack__()
    array = mx.nd.from_dlpack(capsule)
    if copy:
        array = array.copy()
        array.wait_to_read()  # MXNet copies asynchronously; DALI reuses the buffer next run
    return array
