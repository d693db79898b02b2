#!/usr/bin/env bash
# COCO box AP of an SSD320 checkpoint (pycocotools; bbox.json and the 12-line summary).
#   ./examples/SSD320_evaluate.sh CHECKPOINT --data-root /data/coco2017 [-n GPUS] [flags]
set -euo pipefail
checkpoint=${1:?usage: SSD320_evaluate.sh CHECKPOINT [runner flags]}
shift
cd "$(dirname "$0")/.." && exec ./runner --mode val --load "$checkpoint" \
  --arch ssd320_resnet50_fpn --image-shape 3,320,320 -b 32 "$@"
