"""COCO data: find and check a data root, map category ids, normalise annotations for DALI.

A COCO root holds, per split (``train2017``, ``val2017``)::

    ROOT/annotations/instances_<split>.json
    ROOT/<split>/<file_name of each image>

Both names can be overridden. `prepare_coco` checks them, reads the json, and writes a
*normalised* annotation file that DALI's ``fn.readers.coco`` reads directly:

- categories renumbered to the contiguous training classes 1..C (sorted by the file's ids;
  0 is the background), `CategoryMap` maps both ways;
- boxes clipped to the image; boxes with no area after clipping dropped;
- crowd annotations (``iscrowd=1``) kept with the extra category id C+1 (`crowd_label`) and
  listed after the image's other annotations; DALI keeps this order through its reader and
  ``fn.random_bbox_crop``, so a sample's rows cut to a fixed count lose crowd regions
  before objects (training tells them apart by label, and ignores anchors that overlap
  crowd regions);
- images the json lists but the disk lacks raise `CocoError`, or are left out and counted.

The normalised file goes into a cache folder given by the caller, named after the source file
and a hash of its bytes and of the options, with a sidecar (``.meta.json``: the hash, counts,
category names and ids, the image files it lists). It is written atomically and reused while
the source json is unchanged and every image it lists still exists. Evaluation reads the
*source* json: predictions carry the file's own category ids (`CategoryMap.to_category`).
"""
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field

import numpy as np

from engine.files import file_sha256, write_json

__all__ = ["CategoryMap", "CocoDataset", "CocoError", "coco_split_paths", "load_annotations",
           "normalize_annotations", "prepare_coco"]

log = logging.getLogger(__name__)

# Bump when the normalised format changes, so that old cache files are not reused.
NORMALIZED_FORMAT = 3  # 2: stats count rows_per_image; 3: polygons and vertices
CROWD_NAME = "crowd"
MISSING_POLICIES = ("error", "skip")


class CocoError(ValueError):
    """A COCO file or folder cannot be used; the message names it and says what to do."""


class CategoryMap:
    """COCO category ids (any positive integers, e.g. 1-90 with gaps) <-> classes 1..C.

    Classes follow the categories sorted by id; 0 is left for the background.

    Parameters
    ----------
    categories : list of dict
        The json's ``categories`` entries (``id`` and ``name``).
    """

    def __init__(self, categories):
        for category in categories:
            if not isinstance(category, dict) or not isinstance(category.get("id"), int):
                raise CocoError(f"category {category!r} has no integer id")
        ordered = sorted(categories, key=lambda c: c["id"])
        ids = [int(c["id"]) for c in ordered]
        if len(set(ids)) != len(ids):
            raise CocoError(f"category ids repeat: {sorted(ids)}")
        self.category_ids = tuple(ids)
        self.names = tuple(str(c.get("name", c["id"])) for c in ordered)
        self._class_of = {cid: i + 1 for i, cid in enumerate(ids)}
        self._ids = np.array((0,) + self.category_ids, dtype=np.int64)  # index 0: background

    def __repr__(self):
        return f"CategoryMap({self.num_classes} classes, ids {list(self.category_ids)})"

    @property
    def num_classes(self):
        """C, the number of object classes (without the background)."""
        return len(self.category_ids)

    def to_class(self, category_ids):
        """Training class (1..C) of each category id; a scalar gives a scalar."""
        if isinstance(category_ids, int) and category_ids in self._class_of:
            return self._class_of[category_ids]  # the per-annotation path: no numpy
        ids = np.asarray(category_ids, dtype=np.int64)
        try:
            classes = np.vectorize(self._class_of.__getitem__, otypes=[np.int64])(ids)
        except KeyError as error:
            raise CocoError(f"category id {error.args[0]} is not one of the file's "
                            f"categories {list(self.category_ids)}") from None
        return classes if ids.ndim else int(classes)

    def to_category(self, classes):
        """The file's category id of each training class (1..C); a scalar gives a scalar."""
        classes = np.asarray(classes, dtype=np.int64)
        if np.any((classes < 1) | (classes > self.num_classes)):
            bad = classes[(classes < 1) | (classes > self.num_classes)]
            raise CocoError(f"class indices {sorted(set(bad.ravel().tolist()))} are outside "
                            f"1..{self.num_classes}")
        ids = self._ids[classes]
        return ids if classes.ndim else int(ids)

    def to_json(self):
        """The categories as ``[{"id", "name"}]``, as in the source file."""
        return [{"id": i, "name": n} for i, n in zip(self.category_ids, self.names)]

    @classmethod
    def from_annotation_file(cls, path):
        """The map of a COCO json file (its ``categories``)."""
        return cls(load_annotations(path)["categories"])


@dataclass
class CocoDataset:
    """One prepared split: what the pipelines and the evaluator need.

    Attributes
    ----------
    image_dir : str
        Folder of the image files (DALI's `file_root`).
    annotation_file : str
        The normalised json (DALI's `annotations_file`).
    source_file : str
        The original json; evaluation compares predictions with it.
    categories : CategoryMap
        The source file's categories.
    stats : dict
        Counts of what normalisation did (see `normalize_annotations`).
    reused : bool
        True when the cached normalised file was reused.
    """
    image_dir: str
    annotation_file: str
    source_file: str
    categories: CategoryMap
    stats: dict = field(default_factory=dict)
    reused: bool = False

    @property
    def num_classes(self):
        return self.categories.num_classes

    @property
    def crowd_label(self):
        """The category id of crowd regions in the normalised file (C + 1)."""
        return self.categories.num_classes + 1

    @property
    def num_images(self):
        return self.stats["images"]

    def check_max_boxes(self, max_boxes):
        """Count, and log a warning about, images whose rows (objects, then crowd regions)
        would be cut to `max_boxes`.

        The count is taken from the annotation file, so it is an upper bound: random crops
        only remove boxes. Crowd regions come after the objects, so they are cut first.

        Returns
        -------
        (int, int)
            Images with more than `max_boxes` rows, and rows beyond `max_boxes` in all.
        """
        images, rows = _over(self.stats["rows_per_image"], max_boxes)
        if images:
            log.warning("%d image(s) of %s hold more than max_boxes=%d objects and crowd "
                        "regions (up to %d); %d beyond it are cut from the training targets "
                        "(crowd regions first); raise --max-boxes to keep them", images,
                        self.source_file, max_boxes, self.stats["max_rows_per_image"], rows)
        return images, rows


    def check_max_polygons(self, max_polygons, max_vertices):
        """Log a warning about images whose polygons or vertices would be cut (their objects
        then train without a mask target from the cut polygons), and about objects without
        polygons. Needs a file normalised with ``keep_segmentation=True``.

        Returns
        -------
        (int, int)
            Images with more than `max_polygons` polygons, and with more than `max_vertices`
            vertices.
        """
        polygons, _ = _over(self.stats["polygons_per_image"], max_polygons)
        vertices, _ = _over(self.stats["vertices_per_image"], max_vertices)
        for images, limit, flag, most in (
                (polygons, max_polygons, "--max-polygons", "max_polygons_per_image"),
                (vertices, max_vertices, "--max-vertices", "max_vertices_per_image")):
            if images:
                log.warning("%d image(s) of %s hold more than %s=%d (up to %d); the polygons "
                            "beyond it are left out of the mask targets; raise %s to keep "
                            "them", images, self.source_file, flag[2:].replace("-", "_"),
                            limit, self.stats[most], flag)
        if self.stats.get("objects_without_polygons"):
            log.warning("%d object(s) of %s have no polygon segmentation (RLE or none): they "
                        "train boxes with an empty mask target",
                        self.stats["objects_without_polygons"], self.source_file)
        return polygons, vertices


def _over(histogram, limit):
    counts = {int(k): v for k, v in histogram.items()}
    return (sum(n for k, n in counts.items() if k > limit),
            sum((k - limit) * n for k, n in counts.items() if k > limit))


def coco_split_paths(root, split, annotation_file=None, image_dir=None):
    """The annotation file and image folder of `split` under `root`, checked to exist.

    Parameters
    ----------
    root : str
        The COCO root folder.
    split : str
        ``train2017``, ``val2017``, ...
    annotation_file, image_dir : str, optional
        Overrides of ``annotations/instances_<split>.json`` and ``<split>``; relative paths
        are taken under `root`.

    Returns
    -------
    (str, str)
        The annotation file and the image folder.

    Raises
    ------
    CocoError
        Naming the missing folder or file and what is expected there.
    """
    if not os.path.isdir(root):
        raise CocoError(f"COCO root {root!r} is not a directory; pass the folder that holds "
                        f"annotations/instances_{split}.json and {split}/ (make a small one "
                        f"with `python -m data.demo detection --out DIR`)")
    annotation_file = os.path.join(root, annotation_file or
                                   os.path.join("annotations", f"instances_{split}.json"))
    image_dir = os.path.join(root, image_dir or split)
    if not os.path.isfile(annotation_file):
        raise CocoError(f"annotation file {annotation_file} does not exist; put COCO's "
                        f"instances_{split}.json there or pass annotation_file")
    if not os.path.isdir(image_dir):
        raise CocoError(f"image folder {image_dir} does not exist; unpack the {split} images "
                        f"there or pass image_dir")
    return annotation_file, image_dir


def load_annotations(path):
    """Read a COCO json file and check its top-level structure.

    Raises
    ------
    CocoError
        When the file cannot be read, is not valid JSON (naming the position and the JSON
        error), or lacks ``images``, ``annotations`` or ``categories`` lists.
    """
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
    except OSError as error:
        raise CocoError(f"cannot read annotation file {path}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise CocoError(f"annotation file {path} is not valid JSON: {error.msg} at line "
                        f"{error.lineno} column {error.colno}; the file is damaged or "
                        f"truncated, download or generate it again") from None
    except UnicodeDecodeError as error:
        raise CocoError(f"annotation file {path} is not UTF-8 text ({error.reason}); is it "
                        f"a JSON file?") from None
    if not isinstance(doc, dict):
        raise CocoError(f"annotation file {path} holds a JSON {type(doc).__name__}, not the "
                        f"COCO object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise CocoError(f"annotation file {path} has no {key!r} list; is it a COCO "
                            f"instances file?")
    if not doc["categories"]:
        raise CocoError(f"annotation file {path} lists no categories")
    return doc


def _check_image_entries(images, source):
    for image in images:
        if not (isinstance(image, dict)
                and all(k in image for k in ("id", "file_name", "width", "height"))
                and isinstance(image["width"], (int, float)) and image["width"] > 0
                and isinstance(image["height"], (int, float)) and image["height"] > 0):
            raise CocoError(f"{source}: image entry {image!r} needs id, file_name and "
                            f"positive width and height")


def _missing_files(images, image_dir):
    return [im["file_name"] for im in images
            if not os.path.isfile(os.path.join(image_dir, im["file_name"]))]


def normalize_annotations(doc, source="annotations", drop_images=(), keep_segmentation=False):
    """The normalised COCO document (see the module docstring) and counts of what changed.

    Parameters
    ----------
    doc : dict
        A COCO document, as `load_annotations` returns it.
    source : str
        Its file name, for error messages.
    drop_images : collection of str
        File names of images to leave out, with their annotations.
    keep_segmentation : bool
        Copy the objects' polygon ``segmentation`` fields (not clipped); crowd regions' RLE
        masks are left out (training ignores what lies inside their boxes), and so are the
        RLE masks of objects, which are counted (``objects_without_polygons``): DALI's
        polygon reader cannot read them.

    Returns
    -------
    (dict, dict)
        The document and ``stats``: ``images``, ``objects``, ``crowd``, ``clipped``,
        ``dropped_zero_area``, ``dropped_unknown_image``, ``empty_images``,
        ``objects_per_image``, ``crowd_per_image`` and ``rows_per_image`` (objects and
        crowd regions; histograms: count -> images), ``max_objects_per_image``,
        ``max_rows_per_image``; with `keep_segmentation` also ``polygons_per_image`` and
        ``vertices_per_image`` (histograms), their maxima, and ``objects_without_polygons``.
    """
    _check_image_entries(doc["images"], source)
    categories = CategoryMap(doc["categories"])
    crowd_label = categories.num_classes + 1
    drop_images = set(drop_images)
    images = [im for im in doc["images"] if im["file_name"] not in drop_images]
    sizes = {im["id"]: (float(im["width"]), float(im["height"])) for im in images}
    stats = dict(clipped=0, dropped_zero_area=0, dropped_unknown_image=0)
    kept = []
    for order, ann in enumerate(doc["annotations"]):
        if ann.get("image_id") not in sizes:
            stats["dropped_unknown_image"] += 1  # a left-out image's, or a dangling one
            continue
        box = _clipped_box(ann, sizes[ann["image_id"]], source, stats)
        if box is None:
            continue
        crowd = int(bool(ann.get("iscrowd", 0)))
        label = crowd_label if crowd else _class_of(categories, ann, source)
        out = dict(id=ann.get("id", order + 1), image_id=ann["image_id"], category_id=label,
                   bbox=box, area=float(ann.get("area", box[2] * box[3])), iscrowd=crowd)
        if keep_segmentation and not crowd:
            _keep_polygons(ann, out, stats)
        kept.append((ann["image_id"], crowd, order, out))
    # Crowd regions after the objects of their image: the pipeline slices them off there.
    kept.sort(key=lambda item: item[:3])
    annotations = [item[3] for item in kept]
    objects, crowds = _per_image_counts(images, kept)
    rows = [objects[i] + crowds[i] for i in objects]
    stats.update(images=len(images), objects=sum(objects.values()),
                 crowd=sum(crowds.values()),
                 empty_images=sum(1 for im in images if not objects[im["id"]]),
                 objects_per_image=_histogram(objects.values()),
                 crowd_per_image=_histogram(crowds.values()),
                 rows_per_image=_histogram(rows),
                 max_objects_per_image=max(objects.values(), default=0),
                 max_rows_per_image=max(rows, default=0))
    if keep_segmentation:
        stats.update(_polygon_counts(images, kept))
    out_categories = [dict(id=i + 1, name=name) for i, name in enumerate(categories.names)]
    out_categories.append(dict(id=crowd_label, name=CROWD_NAME))
    normalized = dict(
        info=dict(description=f"normalised from {os.path.basename(source)}: categories "
                              f"1..{categories.num_classes}, crowd regions category "
                              f"{crowd_label}, boxes clipped", format=NORMALIZED_FORMAT),
        images=[dict(id=im["id"], file_name=im["file_name"], width=im["width"],
                     height=im["height"]) for im in images],
        annotations=annotations, categories=out_categories,
        source_categories=categories.to_json())
    return normalized, stats


def _keep_polygons(ann, out, stats):
    """Copy an object's polygons into its normalised annotation `out`; count it when it has
    none DALI can read (an RLE mask, or no segmentation)."""
    polygons = ann.get("segmentation")
    if isinstance(polygons, list) and polygons:
        out["segmentation"] = polygons
    else:
        stats["objects_without_polygons"] = stats.get("objects_without_polygons", 0) + 1


def _polygon_counts(images, kept):
    polygons = {im["id"]: 0 for im in images}
    vertices = dict(polygons)
    for image_id, _, _, ann in kept:
        for polygon in ann.get("segmentation", ()):
            polygons[image_id] += 1
            vertices[image_id] += len(polygon) // 2
    return dict(polygons_per_image=_histogram(polygons.values()),
                vertices_per_image=_histogram(vertices.values()),
                max_polygons_per_image=max(polygons.values(), default=0),
                max_vertices_per_image=max(vertices.values(), default=0))


def _clipped_box(ann, size, source, stats):
    """`ann`'s box clipped to the image as [x, y, w, h], or None when no area is left."""
    box = ann.get("bbox")
    if not (isinstance(box, list) and len(box) == 4
            and all(isinstance(v, (int, float)) for v in box)):
        raise CocoError(f"{source}: annotation {ann.get('id')} has bbox {box!r}; COCO boxes "
                        f"are [x, y, width, height]")
    width, height = size
    x1, y1 = min(max(box[0], 0.0), width), min(max(box[1], 0.0), height)
    x2 = min(max(box[0] + box[2], 0.0), width)
    y2 = min(max(box[1] + box[3], 0.0), height)
    if x2 <= x1 or y2 <= y1:
        stats["dropped_zero_area"] += 1
        return None
    clipped = [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]
    if not np.allclose(clipped, box):
        stats["clipped"] += 1
    return clipped


def _class_of(categories, ann, source):
    try:
        return categories.to_class(ann.get("category_id"))
    except (CocoError, TypeError):
        raise CocoError(f"{source}: annotation {ann.get('id')} has category_id "
                        f"{ann.get('category_id')!r}, which is not among the file's "
                        f"categories {list(categories.category_ids)}") from None


def _per_image_counts(images, kept):
    objects = {im["id"]: 0 for im in images}
    crowds = dict(objects)
    for image_id, crowd, _, _ in kept:
        (crowds if crowd else objects)[image_id] += 1
    return objects, crowds


def _histogram(counts):
    values, numbers = np.unique(np.fromiter(counts, dtype=np.int64), return_counts=True)
    return {str(v): int(n) for v, n in zip(values, numbers)}  # str keys: JSON objects


def prepare_coco(root, split, cache_dir, annotation_file=None, image_dir=None,
                 missing_images="error", keep_segmentation=False):
    """Check a COCO split and give its normalised annotation file, made or reused.

    Parameters
    ----------
    root, split, annotation_file, image_dir
        As in `coco_split_paths`.
    cache_dir : str
        Folder for the normalised json and its sidecar (created when absent).
    missing_images : str
        What to do with images the json lists but `image_dir` lacks: ``"error"`` (raise
        `CocoError` naming them and their count) or ``"skip"`` (leave them out, logging the
        count; ``stats["skipped_missing"]`` has their names).
    keep_segmentation : bool
        Keep the polygon masks in the normalised file (Mask R-CNN).

    Returns
    -------
    CocoDataset
    """
    if missing_images not in MISSING_POLICIES:
        raise ValueError(f"missing_images must be one of {MISSING_POLICIES}, "
                         f"not {missing_images!r}")
    source, image_dir = coco_split_paths(root, split, annotation_file, image_dir)
    options = dict(format=NORMALIZED_FORMAT, missing_images=missing_images,
                   keep_segmentation=bool(keep_segmentation))
    digest = file_sha256(source)
    key = hashlib.sha256(json.dumps([digest, options], sort_keys=True).encode()).hexdigest()
    stem = os.path.splitext(os.path.basename(source))[0]
    target = os.path.join(cache_dir, f"{stem}.{key[:16]}.json")
    meta_path = target[: -len(".json")] + ".meta.json"
    meta = _reusable_meta(meta_path, target, key, image_dir)
    if meta is not None:
        return CocoDataset(image_dir, target, source, CategoryMap(meta["categories"]),
                           meta["stats"], reused=True)
    doc = load_annotations(source)
    _check_image_entries(doc["images"], source)
    missing = _missing_files(doc["images"], image_dir)
    if missing and missing_images == "error":
        raise CocoError(f"{len(missing)} of the {len(doc['images'])} images listed in "
                        f"{source} are missing under {image_dir} (first: "
                        f"{', '.join(missing[:5])}); restore them, pass the right image_dir, "
                        f"or pass missing_images='skip' to leave them out")
    if missing:
        log.warning("%d of the %d images listed in %s are missing under %s and are left "
                    "out (first: %s)", len(missing), len(doc["images"]), source, image_dir,
                    ", ".join(missing[:5]))
    normalized, stats = normalize_annotations(doc, source, missing, keep_segmentation)
    stats["skipped_missing"] = missing
    # The big file first, its sidecar last: a sidecar is only there for a complete file.
    write_json(target, normalized)
    write_json(meta_path, dict(key=key, source=source, source_sha256=digest, options=options,
                               categories=doc["categories"], stats=stats,
                               file_names=[im["file_name"] for im in normalized["images"]]))
    return CocoDataset(image_dir, target, source, CategoryMap(doc["categories"]), stats)


def _reusable_meta(meta_path, target, key, image_dir):
    """The sidecar when the cached file matches `key`, its images all still exist and none
    it skipped has come back."""
    try:
        with open(meta_path) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    if meta.get("key") != key or not os.path.isfile(target):
        return None
    if any(not os.path.isfile(os.path.join(image_dir, name)) for name in meta["file_names"]):
        return None  # an image went missing since: check and normalise again
    if any(os.path.isfile(os.path.join(image_dir, name))
           for name in meta["stats"]["skipped_missing"]):
        return None  # a skipped image is back: take it in
    return meta

