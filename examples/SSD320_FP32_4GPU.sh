#!/usr/bin/env bash
# SSD320 v1.2 (ResNet-50 v1.5 + FPN, focal loss) on 4 GPU(s), batch 32 per GPU, float32.
# NVIDIA's recipe: 12,500 steps, SGD momentum 0.9, lr 0.16 per 256 images (scaled with the
# global batch), 1,000 warm-up steps from 0.0693312, cosine decay; weight decay 4e-4 (the L2
# weight of TensorFlow's config for this model family) not on BatchNorm and biases; COCO 2017.
#   ./examples/SSD320_FP32_4GPU.sh --data-root /data/coco2017 [--backbone-weights CKPT] [flags]
cd "$(dirname "$0")/.." && exec ./runner -n 4 -b 32 --dtype float32 --arch ssd320_resnet50_fpn \
  --image-shape 3,320,320 --num-steps 12500 --epoch-steps 1250 --lr 0.16 --momentum 0.9 \
  --wd 4e-4 --warmup-steps 1000 --warmup-begin-lr 0.0693312 --lr-schedule cosine "$@"
