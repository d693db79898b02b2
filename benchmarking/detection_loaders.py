"""The SSD training data path alone, side by side: the project's DALI pipeline against gluoncv's.

Both read the same COCO-layout training split (``annotations/instances_train2017.json`` and
``train2017/`` under the data root) on the same cores, and both end with per-anchor training
targets for the same anchors (`models.ssd.retinanet_anchors` at the image size, the network's):

=====================  =====================================================================
loader                 what it is
=====================  =====================================================================
``dali-cpu``           `data.coco_pipelines.ssd_train_pipeline` through
                       `data.coco_loaders.build_coco_loader` on DALI CPU threads
                       (IoU-constrained crop fused into decoding, resize, colour jitter, flip,
                       normalise, boxes padded), then the targets the training step makes
                       (`engine.tasks.ssd.SSDTask.targets`: `models.ssd_loss.encode_targets`,
                       crowd regions ignored) in this process
``dali-cpu-pipeline``  the DALI pipeline alone, without the targets: where the time of
                       ``dali-cpu`` goes (not comparable with gluoncv's, which has targets)
``dali-gpu``           ``dali-cpu`` with GPU decoding and the targets on the GPU (needs MXNet
                       that sees a GPU)
``gluoncv``            gluoncv's own SSD data path, as its ``train_ssd.py`` builds it: a
                       ``COCODetection`` over the same json and images,
                       ``SSDDefaultTrainTransform`` with the anchors (colour distortion, random
                       expansion, constrained crop, resize, flip, normalise,
                       ``SSDTargetGenerator``) in a Gluon ``DataLoader`` with worker processes,
                       batched by ``Tuple(Stack(), Stack(), Stack())``
=====================  =====================================================================

Each library applies its own SSD recipe (gluoncv adds random expansion and matches with its
bipartite + maximum matcher); both do the work a training step needs from its data. The
loaders take turns over several rounds (`benchmarking.loaders.time_in_turns`), gluoncv first
in each round (it forks its workers before DALI starts threads); a turn ends when every array
of its last batch is computed.
"""
import contextlib
import io
import os
import tempfile

import numpy as np

from benchmarking.loaders import LoaderSkipped, prepared_start, time_in_turns
from benchmarking.stats import ratio
from data.streams import endless

LOADERS = ("gluoncv", "dali-cpu", "dali-cpu-pipeline", "dali-gpu")
DESCRIPTIONS = {"dali-cpu": "DALI SSD pipeline (CPU) + encode_targets",
                "dali-cpu-pipeline": "the same without targets (where the time goes)",
                "dali-gpu": "DALI SSD pipeline (GPU) + encode_targets",
                "gluoncv": "gluoncv SSDDefaultTrainTransform + targets, DataLoader"}
TRAIN_SPLIT = "train2017"
_NO_DATA = "the loader produced no batch (fewer training images than one batch?)"


def center_anchors(anchors):
    """Corner anchors (N, 4) [x1, y1, x2, y2] as gluoncv's SSD nets give them to
    ``SSDDefaultTrainTransform``: (1, N, 4) [centre x, centre y, width, height]."""
    anchors = np.asarray(anchors, np.float32)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    return np.concatenate([centres, anchors[:, 2:] - anchors[:, :2]], axis=1)[None]


def gluoncv_dataset(data_root, split=TRAIN_SPLIT, kind="COCODetection"):
    """gluoncv's ``COCODetection`` (SSD: boxes) or ``COCOInstance`` (Mask R-CNN: boxes and
    polygons) over a COCO-layout folder with any categories.

    gluoncv's classes insist on COCO's 80 category names and find images through their
    ``coco_url``; this subclass takes the json's own categories (in the file's order, as
    gluoncv numbers them) and finds images by ``file_name`` in the split's folder.

    Raises
    ------
    LoaderSkipped
        When gluoncv cannot be imported here.
    """
    try:
        from gluoncv import data as gluoncv_data
    except Exception as error:  # ImportError, or gluoncv refusing a torch >= 2 next to it
        raise LoaderSkipped(f"gluoncv is not importable here ({error})") from None
    import json

    from data.coco import coco_split_paths
    source, image_dir = coco_split_paths(data_root, split)
    with open(source) as f:
        names = [str(c.get("name", c["id"])) for c in json.load(f)["categories"]]
    base = getattr(gluoncv_data, kind)

    class FolderDataset(base):
        CLASSES = names

        def _parse_image_path(self, entry):  # COCODetection's hook
            return os.path.join(image_dir, entry["file_name"])

    urls = _coco_urls(split) if kind == "COCOInstance" else contextlib.nullcontext()
    with urls, contextlib.redirect_stdout(io.StringIO()):  # pycocotools' progress lines
        return FolderDataset(root=data_root, splits=[f"instances_{split}"])


@contextlib.contextmanager
def _coco_urls(split):
    """While gluoncv's ``COCOInstance`` reads its json, every image has the ``coco_url``
    ``<split>/<file_name>``: that class builds image paths from the url's last two parts
    (the root, then those), which COCO's own json has and a COCO-layout folder's need not."""
    from pycocotools.coco import COCO
    original = COCO.loadImgs

    def with_urls(coco, ids=()):
        return [dict(entry, coco_url=f"{split}/{entry['file_name']}")
                for entry in original(coco, ids)]
    COCO.loadImgs = with_urls
    try:
        yield
    finally:
        COCO.loadImgs = original


def gluoncv_batches(dataset, batch_size, anchors, image_size, workers):
    """Endless batches of gluoncv's SSD training data path over `dataset`, and a note.

    Parameters
    ----------
    dataset : from `gluoncv_dataset`
    batch_size : int
    anchors : numpy.ndarray, (N, 4) corner anchors in pixels
    image_size : int
    workers : int
        ``DataLoader`` worker processes.
    """
    import mxnet as mx
    from gluoncv.data.batchify import Stack, Tuple
    from gluoncv.data.transforms.presets.ssd import SSDDefaultTrainTransform
    transform = SSDDefaultTrainTransform(image_size, image_size,
                                         mx.nd.array(center_anchors(anchors)))
    loader = mx.gluon.data.DataLoader(dataset.transform(transform), batch_size, shuffle=True,
                                      batchify_fn=Tuple(Stack(), Stack(), Stack()),
                                      last_batch="rollover", num_workers=workers)
    batches = ({"data": data, "cls_targets": cls_targets, "box_targets": box_targets}
               for data, cls_targets, box_targets in endless(loader, no_data=_NO_DATA))
    return batches, f"{workers} worker processes"


def dali_batches(name, dataset, batch_size, anchors, image_size, threads):
    """Endless batches of the project's SSD training pipeline with their anchor targets, as
    the training step makes them (crowd regions of the dataset's label ignored), and a note.

    Parameters
    ----------
    name : str
        "dali-cpu", "dali-gpu", or "dali-cpu-pipeline" (the pipeline's batches alone).
    dataset : data.coco.CocoDataset
        The prepared training split.
    anchors : numpy.ndarray, (N, 4) corner anchors in pixels
    image_size, threads : int
    """
    import mxnet as mx

    from data.coco_loaders import CocoLoaderConfig, build_coco_loader
    from engine.tasks.ssd import SSDTask
    gpu = name == "dali-gpu"
    if gpu and mx.context.num_gpus() == 0:
        raise LoaderSkipped("MXNet sees no GPU here")
    ctx = mx.gpu(0) if gpu else mx.cpu()
    config = CocoLoaderConfig(backend="dali-gpu" if gpu else "dali-cpu", batch_size=batch_size,
                              image_size=image_size, num_threads=threads,
                              device_id=0 if gpu else None)
    loader = build_coco_loader(config, dataset, "train")
    if name == "dali-cpu-pipeline":
        return endless(loader, no_data=_NO_DATA), f"{threads} DALI threads"
    task = SSDTask(ctx, image_size, mx.nd.array(anchors, ctx=ctx),
                   crowd_label=dataset.crowd_label)

    def batches():
        for batch in endless(loader, no_data=_NO_DATA):
            cls_targets, box_targets = task.targets(batch)
            yield {"data": batch["data"], "cls_targets": cls_targets, "box_targets": box_targets}
    threads_here = os.environ.get("OMP_NUM_THREADS", "MXNet's default")
    return batches(), (f"{threads} DALI threads; targets in this process "
                       f"(OMP_NUM_THREADS {threads_here})")


def compare_detection_loaders(data_root, batch_size, image_size, threads, warmup_batches,
                              round_batches, rounds, names=LOADERS, on_result=None,
                              on_round=None):
    """Time the SSD training data paths of `names` in turns on the training split.

    Parameters
    ----------
    data_root : str
        COCO-layout folder (``annotations/instances_train2017.json``, ``train2017/``).
    batch_size, image_size : int
    threads : int
        DALI threads, and gluoncv's worker processes.
    warmup_batches, round_batches, rounds : int
        As in `benchmarking.loaders.time_in_turns`.
    names : sequence of str
        Loaders of `LOADERS`.
    on_result, on_round : callable, optional
        As in `benchmarking.loaders.compare_loaders`.

    Returns
    -------
    list of dict
        Rows ``{"mode": "loader", "loader", "batch_size", "status", "img_per_s", "note",
        "round_img_per_s", "ratio_to_gluoncv"}`` in the order of `names`.
    """
    import ops  # noqa: F401  (load the ops/ library before MXNet runs: see train.py)
    from data.coco import prepare_coco
    from models.ssd import retinanet_anchors
    anchors = retinanet_anchors(image_size)
    with tempfile.TemporaryDirectory(prefix="benchmark-coco-") as cache:
        dataset = prepare_coco(data_root, TRAIN_SPLIT, cache)

        def start(name):
            if name == "gluoncv":
                return _gluoncv_start(data_root, batch_size, anchors, image_size, threads)
            return lambda: dali_batches(name, dataset, batch_size, anchors, image_size, threads)
        return time_gluoncv_first(names, start, batch_size, warmup_batches, round_batches,
                                  rounds, on_result, on_round)


def _gluoncv_start(data_root, batch_size, anchors, image_size, workers):
    """The gluoncv loader's start function; its dataset (pycocotools' index of the json) is
    made once, outside the timed turns, as the DALI side's normalised json is."""
    return prepared_start(lambda: gluoncv_dataset(data_root),
                          lambda dataset: gluoncv_batches(dataset, batch_size, anchors,
                                                          image_size, workers))


def time_gluoncv_first(names, start, batch_size, warmup_batches, round_batches, rounds,
                       on_result=None, on_round=None):
    """Time the loaders of `names` in turns (`benchmarking.loaders.time_in_turns`), gluoncv's
    first in each round (they fork their workers before DALI starts threads); ``start(name)``
    gives a loader's start function, set up in that order. Returns the rows in the order of
    `names`, with ``ratio_to_gluoncv``."""
    gluoncv_first = sorted(names, key=lambda n: not n.startswith("gluoncv"))
    starts = {name: start(name) for name in gluoncv_first}
    timed = time_in_turns(starts, batch_size, warmup_batches, round_batches, rounds,
                          on_result, on_round)
    return add_gluoncv_ratios([timed[name] for name in names])


def add_gluoncv_ratios(rows):
    """Add each loader's images/s over gluoncv's (``ratio_to_gluoncv``)."""
    rates = {r["loader"]: r.get("img_per_s") for r in rows if r.get("status") == "ok"}
    for row in rows:
        if row.get("status") == "ok":
            row["ratio_to_gluoncv"] = ratio(row["img_per_s"], rates.get("gluoncv"))
    return rows
