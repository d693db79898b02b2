#!/usr/bin/env bash
# Mask R-CNN R-50-FPN on 8 GPU(s), 2 images per GPU (the recipe's global batch of 16), float16:
# convolutions and dense layers in float16, BatchNorm, RoIAlign, targets and losses in float32,
# float32 master weights and dynamic loss scaling (NVIDIA's AMP O1 does the same).
# The recipe (seed 000, maskrcnn-benchmark's e2e_mask_rcnn_R_50_FPN_1x) is the
# instance_segmentation task's default (engine/options.py): 90,000 steps, lr 0.02 for 16
# images (scaled with the global batch), 500 warm-up steps from a third, x0.1 at steps 60,000
# and 80,000, momentum 0.9, weight decay 1e-4, shorter side 800 / longer at most 1333.
# Start the backbone from an ImageNet classifier of this project:
#   ./examples/MRCNN_FP16_8GPU.sh --data-root /data/coco2017 \
#       --backbone-weights workspace/checkpoints/epoch-0090/model.params [flags]
cd "$(dirname "$0")/.." && exec ./runner -n 8 -b 2 --dtype float16 --arch maskrcnn_r50_fpn "$@"
