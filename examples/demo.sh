#!/usr/bin/env bash
# The demo run of `make demo`: generate the demo image set, pack it with im2rec, train
# ResNet-18 v1.5 on it on CPU with 2 workers (Horovod over Gloo) and DALI's CPU pipeline,
# evaluating after every epoch.
#
#   examples/demo.sh [DATA_DIR] [WORKSPACE] [more runner / train.py flags]
#
# DATA_DIR (default demo_data/classification) receives images/ and rec/; WORKSPACE (default
# workspace/demo) the logs, checkpoints and exported model. Data already there is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-demo_data/classification}
workspace=${2:-workspace/demo}
shift $(( $# < 2 ? $# : 2 ))
python=.venv/bin/python

$python -m data.demo classification --out "$data/images" --no-progress
mkdir -p "$data/rec"
for split in train val; do
  $python -m data.im2rec --list --recursive "$data/rec/$split" "$data/images/$split"
  $python -m data.im2rec --pass-through --no-progress --num-thread "$(nproc)" \
    "$data/rec/$split" "$data/images/$split"
done

exec ./runner -n 2 -b 32 --arch resnet18_v1.5 --num-classes 10 --image-shape 3,64,64 \
  --num-epochs 8 --warmup-epochs 1 --min-random-area 0.25 \
  --data-root "$data/rec" --workspace "$workspace" "$@"
