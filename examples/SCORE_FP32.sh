#!/usr/bin/env bash
# Evaluate a checkpoint in float32 on one GPU: top-1 and top-5 on the validation set.
#   ./examples/SCORE_FP32.sh CHECKPOINT [--data-root DIR] [other flags]
# CHECKPOINT is WORKSPACE/checkpoints/epoch-NNNN, or an exported PREFIX-NNNN.params.
if [ $# -lt 1 ]; then
  echo "usage: $0 CHECKPOINT [runner / train.py flags]" >&2
  exit 2
fi
checkpoint=$1
shift
cd "$(dirname "$0")/.." && exec ./runner -n 1 -b 208 --dtype float32 --arch resnet50_v1.5 \
  --mode val --load "$checkpoint" "$@"
