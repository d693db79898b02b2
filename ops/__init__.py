"""Detection operators for MXNet, in C++ (CPU) and CUDA (GPU).

``import ops`` loads ``ops/lib/libmxops.so`` into MXNet (build it with
``python -m ops.build``) and exposes the operators as functions that take NDArrays or
Symbols, so they work in Gluon ``hybrid_forward`` as they are::

    import ops
    iou = ops.box_iou(anchors, gt)                      # mx.nd or mx.sym
    rois, scores, n = ops.select_proposals(boxes, obj, level_sizes=sizes)

The operators are also registered with MXNet as ``F.mxops_<name>`` (mxops_box_iou,
mxops_match, mxops_sample, mxops_anchors, mxops_box_encode, mxops_box_decode, mxops_nms,
mxops_proposals, mxops_polygon_masks, mxops_paste_masks). The same kernels are reachable
without MXNet through ctypes: see ``ops.abi``.
"""
import sys

from ._library import LibraryNotBuilt, build_info, load

__all__ = ["box_iou", "box_encode", "box_decode", "generate_anchors", "match_boxes",
           "sample_balanced", "seed", "rpn_targets", "nms", "select_proposals",
           "pack_polygons", "polygon_masks", "paste_masks", "load", "build_info",
           "LibraryNotBuilt"]

if sys.argv[:1] == ["-m"]:
    # `python -m ops.build` (or ops.bench) imports this package before running the module:
    # stay light so that the build need not wait for MXNet; the functions load on first use.
    def __getattr__(name):
        if name in __all__:
            from . import boxes, masks, proposals, targets
            for mod in (boxes, masks, proposals, targets):
                if hasattr(mod, name):
                    return getattr(mod, name)
        raise AttributeError("module 'ops' has no attribute {!r}".format(name))
else:
    from .boxes import box_decode, box_encode, box_iou, generate_anchors
    from .masks import pack_polygons, paste_masks, polygon_masks
    from .proposals import nms, select_proposals
    from .targets import match_boxes, rpn_targets, sample_balanced, seed
    load()
