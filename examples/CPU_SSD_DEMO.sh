#!/usr/bin/env bash
# A small SSD (ResNet-18 + FPN, 256x256) on the demo detection set, on CPU: makes the data
# (python -m data.demo detection), trains 2 workers for 300 steps, prints the COCO summary.
# Slow on CPU: 7.4 s per step of 2 x 8 images on a 2-core machine (about 40 minutes in all);
# the accuracy it reaches has not been measured yet.
#   ./examples/CPU_SSD_DEMO.sh [DATA_DIR] [WORKSPACE] [flags]
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-demo_data/detection}
workspace=${2:-workspace/ssd-demo}
shift $(( $# < 2 ? $# : 2 ))
.venv/bin/python -m data.demo detection --out "$data" --no-progress
exec ./runner -n 2 -b 8 --dtype float32 --data-backend dali-cpu --arch ssd256_resnet18_fpn \
  --image-shape 3,256,256 --data-root "$data" --workspace "$workspace" --num-steps 300 \
  --epoch-steps 100 --warmup-steps 50 --lr 0.16 --momentum 0.9 --wd 4e-4 "$@"
