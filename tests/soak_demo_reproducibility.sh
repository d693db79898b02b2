#!/usr/bin/env bash
# Reproducibility soak (issue 7): the demo's 2-worker configuration (examples/demo.sh) run N
# times, with a busy loop on one core, must give bit-identical per-epoch losses every time.
#   tests/soak_demo_reproducibility.sh [N=3] [EPOCHS=3] [DIR=runs/soak-demo]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
epochs=${2:-3}
dir=${3:-runs/soak-demo}
if [ "${BUSY:-1}" = 1 ]; then ( while :; do :; done ) & fi
busy=${!:-}
mkdir -p "$dir"
trap 'kill $busy 2>/dev/null' EXIT
for i in $(seq 1 "$runs"); do
  rm -rf "$dir/ws$i"
  examples/demo.sh "$dir/data" "$dir/ws$i" --num-epochs "$epochs" --progress off \
    > "$dir/run$i.log" 2>&1
  echo "run $i done"
done
.venv/bin/python - "$dir" "$runs" <<'PY'
import json, sys
folder, runs = sys.argv[1], int(sys.argv[2])
def losses(i):
    with open(f"{folder}/ws{i}/log.jsonl") as f:
        return [(r["epoch"], r["loss"], (r.get("val") or {}).get("top1"))
                for r in map(json.loads, f) if r["event"] == "epoch"]
first = losses(1)
print("run 1 (epoch, loss, val top1):", first)
same = [losses(i) == first for i in range(2, runs + 1)]
print(f"{sum(same)} of {runs - 1} further runs identical to run 1")
sys.exit(0 if all(same) else 1)
PY
