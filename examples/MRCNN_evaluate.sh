#!/usr/bin/env bash
# COCO box and mask AP of a Mask R-CNN checkpoint (pycocotools; bbox.json, segm.json with RLE
# masks in the original images, both 12-line summaries).
#   ./examples/MRCNN_evaluate.sh CHECKPOINT --data-root /data/coco2017 [-n GPUS] [flags]
set -euo pipefail
checkpoint=${1:?usage: MRCNN_evaluate.sh CHECKPOINT [runner flags]}
shift
cd "$(dirname "$0")/.." && exec ./runner --mode val --load "$checkpoint" \
  --arch maskrcnn_r50_fpn -b 2 "$@"
