"""Export a trained network to ONNX, and check the file against MXNet on the same inputs.

    python -m deploy.onnx_export CHECKPOINT --arch resnet50_v1.5 --num-classes 1000 \\
        --out resnet50.onnx [--dtype float16] [--image-shape 3,224,224] [--check-batches 1,8]
    python -m deploy.onnx_export CHECKPOINT --arch ssd320_resnet50_fpn --num-classes 80 \\
        --out ssd320.onnx

CHECKPOINT is a checkpoint directory (WORKSPACE/checkpoints/epoch-NNNN), its model.params, or
an exported PREFIX-NNNN.params. The file takes NCHW images (float32, or float16 with
--dtype float16) with a dynamic batch dimension named "batch", and gives float32 outputs:
a classifier's logits, a detector's raw class logits (batch, anchors, classes) and box deltas
(batch, anchors, 4), whose decoding and NMS run after it (`deploy.onnx_runtime.detect`).

How it is made: MXNet 1.9.1's exporter writes the float32 graph (at the installed onnx's
opset, 19 with onnx 1.14); the weights are stored as initializers only, not as graph inputs;
ONNX Runtime's basic graph optimizations, which give standard ONNX, fold every BatchNorm into
the convolution before it; for float16, onnxconverter-common then converts the weights and
the computation, keeping the last Cast, so that outputs stay float32 as they are in MXNet.
The file is written atomically.

The check runs the file with ONNX Runtime's CPU provider at each batch size of
--check-batches on random images and compares with MXNet's float32 forward pass: it passes
when max |ONNX - MXNet| <= TOLERANCE x (1 + max |MXNet|) for every output, TOLERANCE being
1e-4 for float32 and 1e-2 for float16. Exit status 0 when it passes, 1 when it does not (the
file is kept, the differences printed), 2 for bad arguments or weights.

What does not export: Mask R-CNN's operators of ops/ (target generation, proposals) are
MXNet extension operators, which ONNX has no counterpart for; SSD's decoding and NMS are
left out on purpose (they run after the network, as above).
"""
import argparse
import os
import sys
import tempfile
import warnings

import numpy as np

TOLERANCES = {"float32": 1e-4, "float16": 1e-2}
TOLERANCE = TOLERANCES["float32"]


def register_amp_cast():
    """Teach MXNet's ONNX exporter `amp_cast`, with which every network of this project ends
    (outputs in float32 whatever the compute dtype: `models.precision`): it is ONNX's Cast,
    which the exporter knows as MXNet's `Cast` but not under this name."""
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    from mxnet.onnx.mx2onnx._op_translations._op_translations_opset12 import convert_cast
    if "amp_cast" not in MXNetGraph.registry_.get(12, {}):
        MXNetGraph.register("amp_cast")(convert_cast)


def export_onnx(net, image_shape, path, dtype="float32"):
    """Write `net` (float32 and hybridized, as `models.build_network` gives it) as an ONNX
    file at `path`, atomically, computing in `dtype` ("float32" or "float16").

    Parameters
    ----------
    image_shape : (int, int, int)
        Channels, height, width of the input; the batch dimension is left dynamic.
    """
    import onnx

    from engine.files import atomic_open
    if dtype not in TOLERANCES:
        raise ValueError(f"dtype must be one of {sorted(TOLERANCES)}, got {dtype!r}")
    with tempfile.TemporaryDirectory(prefix="onnx-export-") as tmp:
        output_shapes = _mxnet_export(net, image_shape, os.path.join(tmp, "mxnet.onnx"))
        model = onnx.load(os.path.join(tmp, "mxnet.onnx"))
        _weights_out_of_inputs(model.graph)
        _name_dimensions(model.graph, output_shapes)
        model = fold_batch_norm(model, tmp)
    if dtype == "float16":
        model = to_float16(model)
    onnx.checker.check_model(model)
    with atomic_open(path, "wb") as f:
        f.write(model.SerializeToString())
    return path


def _mxnet_export(net, image_shape, path):
    """MXNet's float32 export of `net` at `path`; returns the shapes of its outputs for one
    image."""
    import mxnet as mx
    register_amp_cast()
    outputs = net(mx.nd.zeros((1, *image_shape)))  # export needs a forward pass's graph
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    prefix = os.path.join(os.path.dirname(path), "model")
    net.export(prefix, 0)
    mx.onnx.export_model(f"{prefix}-symbol.json", f"{prefix}-0000.params", [(1, *image_shape)],
                         [np.float32], path, dynamic=True,
                         dynamic_input_shapes=[(None, *image_shape)])
    return [output.shape for output in outputs]


def _weights_out_of_inputs(graph):
    # MXNet's exporter lists every weight as a graph input too, which makes ONNX Runtime treat
    # it as replaceable at run time and skip constant folding (BatchNorm into convolutions).
    weights = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    del graph.input[:]
    graph.input.extend(inputs)


def _name_dimensions(graph, output_shapes):
    # The batch dimension is dynamic and named; the outputs' other dimensions, which the
    # exporter leaves unknown (e.g. SSD's anchor count), are fixed to what MXNet gave.
    for value in graph.input:
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    for value, shape in zip(graph.output, output_shapes):
        dims = value.type.tensor_type.shape.dim
        dims[0].dim_param = "batch"
        for dim, size in zip(dims[1:], shape[1:]):
            dim.dim_value = size


def fold_batch_norm(model, tmp):
    """`model` after ONNX Runtime's basic graph optimizations (constant folding, BatchNorm
    folded into the convolutions, no-op nodes removed): standard ONNX operators only, so the
    result runs with any provider."""
    import onnx
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = os.path.join(tmp, "folded.onnx")
    onnxruntime.InferenceSession(model.SerializeToString(), options,
                                 providers=["CPUExecutionProvider"])
    folded = onnx.load(options.optimized_model_filepath)
    # ONNX Runtime lists its own operator domains too; the graph uses none of them.
    used = {node.domain for node in folded.graph.node} | {"", "ai.onnx"}
    imports = [opset for opset in folded.opset_import if opset.domain in used]
    del folded.opset_import[:]
    folded.opset_import.extend(imports)
    return folded


def to_float16(model):
    """`model` computing in float16 with float16 inputs; outputs made float32 by the graph's
    last Cast (MXNet's amp_cast) stay float32."""
    import onnx
    from onnxconverter_common import float16
    float_outputs = {node.output[0] for node in model.graph.node
                     if node.op_type == "Cast" and _cast_target(node) == onnx.TensorProto.FLOAT}
    with warnings.catch_warnings():
        # It warns for each weight below float16's smallest normal number (set to 1e-7).
        warnings.simplefilter("ignore", UserWarning)
        model = float16.convert_float_to_float16(model, keep_io_types=False)
    for value in model.graph.output:
        if value.name in float_outputs:
            value.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    return model


def _cast_target(node):
    return next(attr.i for attr in node.attribute if attr.name == "to")


def check_onnx(net, path, image_shape, batch_sizes, seed=0):
    """Run the ONNX file with ONNX Runtime (CPU) and `net` with MXNet on the same random
    images at each batch size.

    Returns
    -------
    list of (batch, difference, scale)
        Per batch size, for the output where the difference weighs most against its scale:
        max |ONNX - MXNet| and max |MXNet|.
    """
    import mxnet as mx

    from deploy.onnx_runtime import OnnxModel
    model = OnnxModel(path, device="cpu")
    dtype = model.input_dtype
    rng = np.random.default_rng(seed)
    results = []
    for batch in batch_sizes:
        images = rng.standard_normal((batch, *image_shape)).astype(dtype)
        got = model(images)
        expected = net(mx.nd.array(images.astype(np.float32)))
        expected = expected if isinstance(expected, (list, tuple)) else [expected]
        pairs = []
        for g, e in zip(got, expected):
            e = e.asnumpy()
            if g.shape != e.shape:
                raise AssertionError(f"ONNX output {g.shape} != MXNet output {e.shape}")
            pairs.append((float(np.abs(g.astype(np.float32) - e).max()),
                          float(np.abs(e).max())))
        diff, scale = max(pairs, key=lambda p: p[0] / (1 + p[1]))
        results.append((batch, diff, scale))
    return results


def passes(results, tolerance=TOLERANCE):
    return all(diff <= tolerance * (1 + scale) for _, diff, scale in results)


def parse_args(argv=None):
    import models
    from engine.cli import image_shape, int_list
    p = argparse.ArgumentParser(prog="python -m deploy.onnx_export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="checkpoint directory, model.params or PREFIX-NNNN.params")
    p.add_argument("--arch", required=True,
                   choices=models.list_models("classification") + models.list_models("detection"))
    p.add_argument("--num-classes", type=int, default=1000,
                   help="classes of the network (a detector: object classes; default 1000)")
    p.add_argument("--image-shape", type=image_shape,
                   help="C,H,W of the input (default 3,224,224; a detector: its own size)")
    p.add_argument("--dtype", choices=sorted(TOLERANCES), default="float32",
                   help="what the file computes in and takes as input (default float32); "
                        "its outputs are float32 either way")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--check-batches", type=int_list, default=[1, 8],
                   help="batch sizes of the ONNX Runtime check (default 1,8)")
    args = p.parse_args(argv)
    args.detection = models.model_task(args.arch) == "detection"
    if args.image_shape is None:
        args.image_shape = ((3, *models.get_model(args.arch, classes=1).image_size)
                            if args.detection else (3, 224, 224))
    return args


def main(argv=None):
    args = parse_args(argv)
    import mxnet as mx

    import models
    from engine.checkpoint import CheckpointError
    from engine.weights import load_weights
    extra = {"image_size": tuple(args.image_shape[1:])} if args.detection else {}
    net = models.build_network(args.arch, args.num_classes, "NCHW", args.image_shape,
                               "float32", mx.cpu(), **extra)
    try:
        load_weights(net, args.checkpoint, mx.cpu())
    except CheckpointError as error:
        print(f"onnx_export: error: {error}", file=sys.stderr)
        return 2
    export_onnx(net, args.image_shape, args.out, args.dtype)
    results = check_onnx(net, args.out, args.image_shape, args.check_batches)
    for batch, diff, scale in results:
        print(f"onnx_export: batch {batch}: max |ONNX Runtime - MXNet| = {diff:.3g} "
              f"(outputs up to {scale:.3g})")
    tolerance = TOLERANCES[args.dtype]
    if not passes(results, tolerance):
        print(f"onnx_export: error: {args.out} differs from MXNet by more than {tolerance} x "
              f"(1 + max |output|)", file=sys.stderr)
        return 1
    print(f"onnx_export: wrote {args.out} ({args.dtype}, dynamic batch; checked with ONNX "
          f"Runtime CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
