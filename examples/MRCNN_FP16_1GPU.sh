#!/usr/bin/env bash
# Mask R-CNN R-50-FPN on 1 GPU, 2 images, float16: the recipe at an eighth of its global batch,
# so 8x its steps, as maskrcnn-benchmark scales its schedule (lr 0.0025 follows from the batch).
# See MRCNN_FP16_8GPU.sh for the recipe. --accumulate 8 instead keeps the recipe's steps and
# effective batch of 16 with the memory of 2 images.
#   ./examples/MRCNN_FP16_1GPU.sh --data-root /data/coco2017 --backbone-weights CKPT [flags]
cd "$(dirname "$0")/.." && exec ./runner -n 1 -b 2 --dtype float16 --arch maskrcnn_r50_fpn \
  --num-steps 720000 --lr-decay-steps 480000,640000 --warmup-steps 4000 "$@"
