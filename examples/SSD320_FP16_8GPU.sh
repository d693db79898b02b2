#!/usr/bin/env bash
# SSD320 v1.2 (ResNet-50 v1.5 + FPN, focal loss) on 8 GPU(s), batch 32 per GPU, float16 with float32
# master weights and dynamic loss scaling.
# NVIDIA's recipe, the detection task's defaults (engine/options.py): 12,500 steps, SGD momentum
# 0.9, lr 0.16 per 256 images (scaled with the global batch), 1,000 warm-up steps from
# 0.0693312, cosine decay, 320x320; COCO 2017 in its own layout.
#   ./examples/SSD320_FP16_8GPU.sh --data-root /data/coco2017 [--backbone-weights CKPT] [flags]
cd "$(dirname "$0")/.." && exec ./runner -n 8 -b 32 --dtype float16 --arch ssd320_resnet50_fpn "$@"
