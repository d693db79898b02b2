"""Mask R-CNN masks: targets from COCO polygons, and pasting predicted masks into the image."""
import numpy as np

from ._checks import check_array, check_same, is_nd, module_of


def pack_polygons(images):
    """Pack COCO polygons into the dense arrays :func:`polygon_masks` takes.

    Parameters
    ----------
    images : list (one per image) of lists (one per object, in gt order) of polygons, each
        a flat [x0, y0, x1, y1, ...] list as in COCO's ``segmentation`` field.

    Returns
    -------
    verts : float32 numpy array, (B, V, 2), every image's vertices, zero padded.
    polys : int32 numpy array, (B, Q, 3) rows (gt index, first vertex, vertex count), padded
        with rows of -1. V and Q are at least 1 (MXNet 1.x has no empty arrays).
    """
    per_image = []
    for objects in images:
        verts, polys = [], []
        for g, polygons in enumerate(objects):
            if isinstance(polygons, dict):
                raise ValueError("object {}: RLE segmentations are not polygons".format(g))
            for poly in polygons:
                xy = np.asarray(poly, dtype=np.float32).reshape(-1)
                if xy.size % 2:
                    raise ValueError("object {}: a polygon has an odd number of "
                                     "coordinates ({})".format(g, xy.size))
                polys.append((g, sum(len(v) for v in verts), xy.size // 2))
                verts.append(xy.reshape(-1, 2))
        per_image.append((np.concatenate(verts) if verts else np.zeros((0, 2), np.float32),
                          np.asarray(polys, np.int32).reshape(-1, 3)))
    nv = max([1] + [v.shape[0] for v, _ in per_image])
    nq = max([1] + [p.shape[0] for _, p in per_image])
    verts = np.zeros((len(images), nv, 2), np.float32)
    polys = np.full((len(images), nq, 3), -1, np.int32)
    for b, (v, p) in enumerate(per_image):
        verts[b, :v.shape[0]] = v
        polys[b, :p.shape[0]] = p
    return verts, polys


def polygon_masks(rois, matches, verts, polys, mask_size=28):
    """Binary M x M mask targets: each RoI's matched object, cropped and rasterised.

    The polygons of the matched gt are mapped into the RoI (as maskrcnn-benchmark crops
    and resizes polygons) and pixel centres are tested against them (even-odd rule; an
    object's polygons are OR-ed, as pycocotools merges them). No full-image mask is made.

    Parameters
    ----------
    rois : float32, (B, R, 4)
    matches : int32, (B, R): gt index per RoI; negative gives an all-zero mask.
    verts, polys : from :func:`pack_polygons` (as float32 / int32 NDArrays).
    mask_size : int, M (28 in Mask R-CNN).

    Returns
    -------
    float32, (B, R, M, M) of 0 and 1.
    """
    F = module_of(rois)
    check_array(rois, "rois", [("B", "R", 4)])
    check_array(matches, "matches", [("B", "R")], "int32")
    check_array(verts, "verts", [("B", "V", 2)])
    check_array(polys, "polys", [("B", "Q", 3)], "int32")
    if all(is_nd(x) for x in (rois, matches, verts, polys)):
        check_same([("rois", rois.shape[0]), ("matches", matches.shape[0]),
                    ("verts", verts.shape[0]), ("polys", polys.shape[0])], "batch sizes")
        check_same([("rois", rois.shape[1]), ("matches", matches.shape[1])], "RoI counts")
    if not 1 <= mask_size <= 1024:
        raise ValueError("mask_size must be in 1..1024, got {}".format(mask_size))
    return F.mxops_polygon_masks(rois, matches, verts, polys, mask_size=int(mask_size))


def paste_masks(masks, boxes, image_hw, threshold=0.5, column_major=False, out=None):
    """Detections' mask probabilities pasted into the image as 0/1 masks (Mask R-CNN's
    inference post-processing), all detections of one image in one call.

    Mask pixel u has its centre at ``x1 + (u + 0.5) * sx`` with
    ``sx = max(x2 - x1, 1e-3) / S`` (rows likewise); each image pixel takes the bilinear
    value of the mask at its centre, the mask being zero outside (so it fades out half a mask
    pixel beyond the outermost centres), and is 1 where that value is ``>= threshold``. The
    box is not rounded to whole pixels. The arithmetic is float32 (exact bilinear weights,
    no FMA), the same on CPU and GPU.

    Parameters
    ----------
    masks : NDArray or Symbol, float32, (N, S, S)
        Each detection's mask probabilities over its box (S <= 1024).
    boxes : NDArray or Symbol, float32, (N, 4)
        (x1, y1, x2, y2) in pixels of the image; boxes may reach outside it. A box with a
        NaN or infinite coordinate pastes nothing.
    image_hw : (int, int)
        (height, width) of the image.
    threshold : float
        > 0 (at or below 0 every pixel outside the mask would pass).
    column_major : bool
        Return (N, width, height), each plane transposed (the same values): on the host,
        ``result.transpose(2, 1, 0)`` is then the Fortran-ordered (height, width, N) array
        that pycocotools' ``mask.encode`` takes, without the copy a transpose would cost.
    out : NDArray, optional
        uint8 of the result's shape, written instead of a new array (with NDArray inputs;
        e.g. host memory shared through DLPack).

    Returns
    -------
    NDArray or Symbol, uint8, (N, height, width) (or (N, width, height)) of 0 and 1.
    """
    F = module_of(masks)
    check_array(masks, "masks", [("N", "S", "S")])
    check_array(boxes, "boxes", [("N", 4)])
    if is_nd(masks):
        if masks.shape[1] != masks.shape[2] or masks.shape[1] > 1024:
            raise ValueError("masks must have shape (N, S, S) with S <= 1024, got {}".format(
                masks.shape))
        if is_nd(boxes):
            check_same([("masks", masks.shape[0]), ("boxes", boxes.shape[0])],
                       "detection counts")
    height, width = _image_hw(image_hw)
    if not float(threshold) > 0:
        raise ValueError("threshold must be > 0, got {}".format(threshold))
    written = {}
    if out is not None:
        if not is_nd(masks) or not is_nd(out):
            raise TypeError("out takes an NDArray, with NDArray inputs")
        plane = (width, height) if column_major else (height, width)
        check_array(out, "out", [("N",) + plane], "uint8")
        check_same([("masks", masks.shape[0]), ("out", out.shape[0])], "detection counts")
        written = dict(out=out)
    return F.mxops_paste_masks(masks, boxes, image_hw=(height, width),
                               threshold=float(threshold), column_major=bool(column_major),
                               **written)


def _image_hw(image_hw):
    values = tuple(image_hw)
    if len(values) != 2 or not all(float(v) == int(v) and int(v) >= 1 for v in values):
        raise ValueError("image_hw must be (height, width), two positive integers, got "
                         "{}".format(image_hw))
    return int(values[0]), int(values[1])
