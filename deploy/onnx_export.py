"""Export a trained classifier to ONNX, and check the file against MXNet on the same inputs.

    python -m deploy.onnx_export CHECKPOINT --arch resnet50_v1.5 --num-classes 1000 \\
        --image-shape 3,224,224 --out resnet50.onnx [--check-batches 1,8]

CHECKPOINT is a checkpoint directory (WORKSPACE/checkpoints/epoch-NNNN), its model.params, or
an exported PREFIX-NNNN.params. The ONNX file takes float32 NCHW images with a dynamic batch
dimension and gives the logits (float32); it is written atomically, its weights stored as
initializers and not as graph inputs (so that ONNX Runtime folds BatchNorm into the
convolutions). The check runs it with ONNX Runtime's CPU provider at each batch size of
--check-batches on random images and compares with MXNet's forward pass: the export passes
when max |ONNX - MXNet| <= TOLERANCE x (1 + max |MXNet|). Exit status 0 when it passes, 1 when
it does not (the file is kept, the differences printed), 2 for bad arguments or weights.

What exports: the classifiers (float32; MXNet 1.9.1's exporter at the installed onnx's opset,
19 with onnx 1.14). Not yet:
float16 files, and the detectors, whose raw class/box outputs are next (decoding and NMS then
run after the network).
"""
import argparse
import os
import sys
import tempfile

import numpy as np

TOLERANCE = 1e-4


def register_amp_cast():
    """Teach MXNet's ONNX exporter `amp_cast`, with which every network of this project ends
    (outputs in float32 whatever the compute dtype: `models.precision`): it is ONNX's Cast,
    which the exporter knows as MXNet's `Cast` but not under this name."""
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    from mxnet.onnx.mx2onnx._op_translations._op_translations_opset12 import convert_cast
    if "amp_cast" not in MXNetGraph.registry_.get(12, {}):
        MXNetGraph.register("amp_cast")(convert_cast)


def export_onnx(net, image_shape, path):
    """Write `net` (hybridized, as `models.build_network` gives it) as an ONNX file at
    `path`, atomically.

    Parameters
    ----------
    image_shape : (int, int, int)
        Channels, height, width of the input; the batch dimension is left dynamic.
    """
    import mxnet as mx
    import onnx

    from engine.files import atomic_open
    register_amp_cast()
    net(mx.nd.zeros((1, *image_shape)))  # export needs the cached graph of a forward pass
    with tempfile.TemporaryDirectory(prefix="onnx-export-") as tmp:
        prefix = os.path.join(tmp, "model")
        net.export(prefix, 0)
        staged = mx.onnx.export_model(
            f"{prefix}-symbol.json", f"{prefix}-0000.params", [(1, *image_shape)],
            [np.float32], os.path.join(tmp, "model.onnx"), dynamic=True,
            dynamic_input_shapes=[(None, *image_shape)])
        model = onnx.load(staged)
    _weights_out_of_inputs(model.graph)
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"  # dynamic, and named
    onnx.checker.check_model(model)
    with atomic_open(path, "wb") as f:
        f.write(model.SerializeToString())
    return path


def _weights_out_of_inputs(graph):
    # MXNet's exporter lists every weight as a graph input too, which makes ONNX Runtime treat
    # it as replaceable at run time and skip constant folding (BatchNorm into convolutions).
    weights = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    del graph.input[:]
    graph.input.extend(inputs)


def check_onnx(net, path, image_shape, batch_sizes, seed=0):
    """Run the ONNX file with ONNX Runtime (CPU) and `net` with MXNet on the same random
    images at each batch size; returns [(batch, max abs difference, max abs MXNet output)]."""
    import mxnet as mx
    import onnxruntime
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    rng = np.random.default_rng(seed)
    results = []
    for batch in batch_sizes:
        images = rng.standard_normal((batch, *image_shape)).astype(np.float32)
        got = session.run(None, {name: images})[0]
        expected = net(mx.nd.array(images)).asnumpy()
        if got.shape != expected.shape:
            raise AssertionError(f"ONNX output {got.shape} != MXNet output {expected.shape}")
        results.append((batch, float(np.abs(got - expected).max()),
                        float(np.abs(expected).max())))
    return results


def passes(results, tolerance=TOLERANCE):
    return all(diff <= tolerance * (1 + scale) for _, diff, scale in results)


def parse_args(argv=None):
    import models
    from engine.cli import image_shape, int_list
    p = argparse.ArgumentParser(prog="python -m deploy.onnx_export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="checkpoint directory, model.params or PREFIX-NNNN.params")
    p.add_argument("--arch", required=True, choices=models.list_models("classification"))
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--image-shape", type=image_shape, default=(3, 224, 224),
                   help="C,H,W of the input (default 3,224,224)")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--check-batches", type=int_list, default=[1, 8],
                   help="batch sizes of the ONNX Runtime check (default 1,8)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import mxnet as mx

    import models
    from engine.checkpoint import CheckpointError
    from engine.weights import load_weights
    net = models.build_network(args.arch, args.num_classes, "NCHW", args.image_shape,
                               "float32", mx.cpu())
    try:
        load_weights(net, args.checkpoint, mx.cpu())
    except CheckpointError as error:
        print(f"onnx_export: error: {error}", file=sys.stderr)
        return 2
    export_onnx(net, args.image_shape, args.out)
    results = check_onnx(net, args.out, args.image_shape, args.check_batches)
    for batch, diff, scale in results:
        print(f"onnx_export: batch {batch}: max |ONNX Runtime - MXNet| = {diff:.3g} "
              f"(outputs up to {scale:.3g})")
    if not passes(results):
        print(f"onnx_export: error: {args.out} differs from MXNet by more than {TOLERANCE} x "
              f"(1 + max |output|)", file=sys.stderr)
        return 1
    print(f"onnx_export: wrote {args.out} (dynamic batch; checked with ONNX Runtime CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
