#!/usr/bin/env bash
# ResNet-50 v1.5 on 8 GPU(s), batch 208 per GPU, float16 with float32 master weights and dynamic loss scaling; NHWC for Tensor Cores.
# NVIDIA's recipe: 90 epochs, SGD momentum 0.875, lr 0.256 per 256 images with 5 warm-up
# epochs and cosine decay, label smoothing 0.1, weight decay 1/32768.
#   ./examples/RN50_FP16_8GPU.sh [--data-root DIR] [other runner / train.py flags]
cd "$(dirname "$0")/.." && exec ./runner -n 8 -b 208 --dtype float16 --layout NHWC --arch resnet50_v1.5 "$@"
