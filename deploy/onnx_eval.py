"""Validation accuracy of an exported classifier through ONNX Runtime, as `train.py --mode
val` measures it with MXNet, optionally side by side with MXNet on the same batches.

    python -m deploy.onnx_eval resnet50-fp16.onnx --data-root DIR
    python -m deploy.onnx_eval resnet50-fp16.onnx --data-root DIR \\
        --compare workspace/checkpoints/epoch-0090 --arch resnet50_v1.5

Every image of DATA_ROOT/val.rec is read once, decoded by DALI (on the GPU when ONNX Runtime
has its CUDA provider, else on CPU threads), resized so that the shorter side is
--resize-shorter (default: 256/224 of the input height, as train.py) and centre-cropped to the
model's input. Prints top-1 and top-5 and writes them to --output as JSON.

--compare runs the checkpoint's network in MXNet (CPU, float32) on the very same float32
batches and prints its top-1 too, and the share of images where both predict the same class.
The export then passes when the classes agree on at least 99% of the images (a float32 file)
or the two top-1 differ by at most 0.2 points (a float16 file), and the exit status is 1 when
it does not. Exit status 2 for bad arguments or data.
"""
import argparse
import json
import sys

import numpy as np

MIN_AGREEMENT_FLOAT32 = 0.99  # share of images with the same predicted class
MAX_TOP1_GAP_FLOAT16 = 0.2  # percentage points


def evaluate(model, data_root, batch_size, threads, resize_shorter=None, compare=None,
             on_batch=None):
    """Top-1 and top-5 (%) of `model` (`deploy.onnx_runtime.OnnxModel`) over the validation
    split of `data_root`.

    Parameters
    ----------
    compare : callable, optional
        Float32 NCHW images (numpy) -> logits (numpy), run on the same batches; adds
        ``reference_top1``, ``reference_top5`` and ``agreement`` (share of images whose
        predicted classes are the same).
    on_batch : callable, optional
        Called with the number of images done after every batch.
    """
    from deploy.onnx_data import next_batch, num_images, val_pipeline
    # Float32 batches on the host: the reference sees exactly the images the model sees
    # (a float16 model casts them when they are bound).
    pipe = val_pipeline(data_root, model.input_shape, np.float32, batch_size, False, threads,
                        resize_shorter)
    total, done = num_images(pipe), 0
    hits = {"top1": 0, "top5": 0, "reference_top1": 0, "reference_top5": 0, "agreement": 0}
    while done < total:
        images, labels = next_batch(pipe, on_gpu=False)
        count = min(len(labels), total - done)  # the last batch is padded with repeats
        images, labels = images[:count], labels[:count]
        predicted = _count_hits(hits, "", model(images)[0], labels)
        if compare is not None:
            reference = _count_hits(hits, "reference_", compare(images), labels)
            hits["agreement"] += int((predicted == reference).sum())
        done += count
        if on_batch is not None:
            on_batch(done)
    result = {"images": total, "top1": 100.0 * hits["top1"] / total,
              "top5": 100.0 * hits["top5"] / total}
    if compare is not None:
        result.update(reference_top1=100.0 * hits["reference_top1"] / total,
                      reference_top5=100.0 * hits["reference_top5"] / total,
                      agreement=hits["agreement"] / total)
    return result


def _count_hits(hits, prefix, logits, labels):
    logits = np.asarray(logits, dtype=np.float32)
    top5 = np.argsort(-logits, axis=1, kind="stable")[:, :5]
    hits[prefix + "top1"] += int((top5[:, 0] == labels).sum())
    hits[prefix + "top5"] += int((top5 == labels[:, None]).any(axis=1).sum())
    return top5[:, 0]


def export_passes(result, dtype):
    """Whether an export of `dtype` matches MXNet well enough (module docstring)."""
    if dtype == "float16":
        return abs(result["top1"] - result["reference_top1"]) <= MAX_TOP1_GAP_FLOAT16
    return result["agreement"] >= MIN_AGREEMENT_FLOAT32


def mxnet_reference(checkpoint, arch, num_classes, image_shape):
    """The checkpoint's network in MXNet (CPU, float32), as images -> logits on numpy."""
    import mxnet as mx

    import models
    from engine.weights import load_weights
    net = models.build_network(arch, num_classes, "NCHW", image_shape, "float32", mx.cpu())
    load_weights(net, checkpoint, mx.cpu())
    return lambda images: net(mx.nd.array(images)).asnumpy()


def parse_args(argv=None):
    from engine.cli import positive_int
    p = argparse.ArgumentParser(prog="python -m deploy.onnx_eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("onnx", help="the exported classifier (python -m deploy.onnx_export)")
    p.add_argument("--data-root", required=True, help="folder with val.rec and val.idx")
    p.add_argument("--batch-size", type=positive_int, default=50, help="default 50")
    p.add_argument("--resize-shorter", type=positive_int,
                   help="shorter side before the centre crop (default: 256/224 of the "
                        "input height, as train.py)")
    p.add_argument("--compare", metavar="CHECKPOINT",
                   help="also run this checkpoint (or .params) in MXNet on the same batches")
    p.add_argument("--arch", help="the checkpoint's network (with --compare)")
    p.add_argument("--output", help="write the results to this JSON file")
    args = p.parse_args(argv)
    if args.compare and not args.arch:
        p.error("--compare needs the checkpoint's --arch")
    return args


def main(argv=None):
    args = parse_args(argv)
    from tqdm import tqdm

    from benchmarking.machine import cpu_cores
    from data.files import DataError
    from deploy.onnx_runtime import OnnxModel
    from engine.files import write_json
    model = OnnxModel(args.onnx, threads=cpu_cores())
    classes = model.session.get_outputs()[0].shape[-1]
    compare = None
    if args.compare:
        from engine.checkpoint import CheckpointError
        try:
            compare = mxnet_reference(args.compare, args.arch, classes, model.input_shape)
        except (CheckpointError, ValueError) as error:
            print(f"onnx_eval: error: --compare: {error}", file=sys.stderr)
            return 2
    try:
        with tqdm(desc="onnx_eval", unit="img", file=sys.stderr) as bar:
            result = evaluate(model, args.data_root, args.batch_size, cpu_cores(),
                              args.resize_shorter, compare,
                              on_batch=lambda done: bar.update(done - bar.n))
    except DataError as error:
        print(f"onnx_eval: error: {error}", file=sys.stderr)
        return 2
    dtype = np.dtype(model.input_dtype).name
    print(f"onnx_eval: {args.onnx} ({dtype}, ONNX Runtime on {model.device}): top-1 "
          f"{result['top1']:.2f}% top-5 {result['top5']:.2f}% over {result['images']} images")
    status = 0
    if compare is not None:
        print(f"onnx_eval: MXNet ({args.compare}): top-1 {result['reference_top1']:.2f}% "
              f"top-5 {result['reference_top5']:.2f}%; same class on "
              f"{100 * result['agreement']:.2f}% of the images")
        if not export_passes(result, dtype):
            print(f"onnx_eval: error: the export does not match MXNet (float32: classes agree "
                  f"on >= {100 * MIN_AGREEMENT_FLOAT32:.0f}%; float16: top-1 within "
                  f"{MAX_TOP1_GAP_FLOAT16} points)", file=sys.stderr)
            status = 1
    if args.output:
        write_json(args.output, dict(result, onnx=args.onnx, dtype=dtype))
    return status


if __name__ == "__main__":
    sys.exit(main())
