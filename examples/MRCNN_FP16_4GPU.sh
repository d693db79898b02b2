#!/usr/bin/env bash
# Mask R-CNN R-50-FPN on 4 GPU(s), 2 images per GPU, float16: the recipe at half its global
# batch (8), so twice its steps, as maskrcnn-benchmark scales its schedule (the learning rate
# follows the global batch by itself: 0.01). See MRCNN_FP16_8GPU.sh for the recipe.
#   ./examples/MRCNN_FP16_4GPU.sh --data-root /data/coco2017 --backbone-weights CKPT [flags]
cd "$(dirname "$0")/.." && exec ./runner -n 4 -b 2 --dtype float16 --arch maskrcnn_r50_fpn \
  --num-steps 180000 --lr-decay-steps 120000,160000 --warmup-steps 1000 "$@"
