#!/usr/bin/env bash
# The SSD demo of `make demo-ssd`, on CPU: a small SSD (ResNet-18 v1.5 + a 64-channel FPN,
# 128x128) trained on the demo detection set by 2 workers, its backbone started from the
# classifier that `make demo` trained on the demo image set (as users start detectors from
# their own ImageNet classifiers); evaluated with pycocotools at the end, whose summary it prints.
#
#   examples/CPU_SSD_DEMO.sh [DATA_DIR] [WORKSPACE] [more runner / train.py flags]
#
# DATA_DIR (default demo_data/detection) receives the COCO-format set; WORKSPACE (default
# workspace/ssd-demo) the logs, checkpoints, bbox.json and the exported model. The classifier
# is CLASSIFIER (default workspace/demo/checkpoints/epoch-0008); examples/demo.sh makes it
# when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-demo_data/detection}
workspace=${2:-workspace/ssd-demo}
shift $(( $# < 2 ? $# : 2 ))
classifier=${CLASSIFIER:-workspace/demo/checkpoints/epoch-0008}
if [ ! -d "$classifier" ]; then
  echo "CPU_SSD_DEMO: no classifier at $classifier; training it first (examples/demo.sh)"
  examples/demo.sh demo_data/classification workspace/demo
fi
.venv/bin/python -m data.demo detection --out "$data" --train-images 256 --val-images 64 \
  --size 128 --no-progress
exec ./runner -n 2 -b 8 --arch ssd128_resnet18_fpn64 --image-shape 3,128,128 \
  --data-root "$data" --workspace "$workspace" --backbone-weights "$classifier" \
  --num-steps 1500 --epoch-steps 500 --warmup-steps 50 --lr 0.32 "$@"
