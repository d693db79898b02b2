#!/usr/bin/env bash
# The Mask R-CNN demo of `make demo-mrcnn`, on CPU: the small Mask R-CNN (ResNet-18 v1.5, FPN
# of 64 channels, 2x256 box head, 4x64 mask head) trained on the demo detection set (its
# polygons) at 128x128 by 2 workers, its backbone started from the classifier that `make demo`
# trained; evaluated with pycocotools (boxes and masks) at the end.
#
#   examples/CPU_MRCNN_DEMO.sh [DATA_DIR] [WORKSPACE] [more runner / train.py flags]
#
# DATA_DIR (default demo_data/detection) receives the COCO-format set; WORKSPACE (default
# workspace/mrcnn-demo) the logs, checkpoints, bbox.json, segm.json and the exported parts. The
# classifier is CLASSIFIER (default workspace/demo/checkpoints/epoch-0008); examples/demo.sh
# makes it when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-demo_data/detection}
workspace=${2:-workspace/mrcnn-demo}
shift $(( $# < 2 ? $# : 2 ))
classifier=${CLASSIFIER:-workspace/demo/checkpoints/epoch-0008}
if [ ! -d "$classifier" ]; then
  echo "CPU_MRCNN_DEMO: no classifier at $classifier; training it first (examples/demo.sh)"
  examples/demo.sh demo_data/classification workspace/demo
fi
.venv/bin/python -m data.demo detection --out "$data" --train-images 256 --val-images 64 \
  --size 128 --no-progress
# 128 RoIs per image instead of 512: the demo's images hold 1-6 objects. --lr 0.08 per 16
# images (0.02 for the 4 of a step: 4x the recipe's rate per image, for a short run); 0.16
# diverged in the warm-up on some machines.
exec ./runner -n 2 -b 2 --arch maskrcnn_r18_fpn --min-size 128 --max-size 128 \
  --roi-batch-size 128 --data-root "$data" --workspace "$workspace" \
  --backbone-weights "$classifier" --num-steps 600 --epoch-steps 200 --warmup-steps 50 \
  --lr 0.08 --lr-decay-steps 450 "$@"
