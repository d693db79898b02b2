#!/usr/bin/env bash
# ResNet-50 v1.5 in float32 on a CPU-only machine: 2 worker processes (Horovod over Gloo),
# batch 32 each, DALI's CPU pipeline. A GPU-less way to try the full recipe on small data.
#   ./examples/CPU_RN50_2WORKERS.sh --data-root DIR [--num-epochs N] [other flags]
cd "$(dirname "$0")/.." && exec ./runner -n 2 -b 32 --dtype float32 --data-backend dali-cpu \
  --arch resnet50_v1.5 "$@"
