#!/usr/bin/env bash
# Soak of the 2-worker paths on a busy machine (issue 7): runs the Horovod equivalence test and
# the Distributed collectives test N times while a busy loop takes one core, and counts failures.
#   tests/soak_two_workers.sh [N=20] [LOG=soak.log]
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
log=${2:-soak.log}
( while :; do :; done ) &   # keep one core busy
busy=$!
trap 'kill $busy 2>/dev/null' EXIT
failures=0
for i in $(seq 1 "$runs"); do
  if .venv/bin/python -m pytest -q -p no:cacheprovider tests/engine/test_horovod.py \
       "tests/engine/test_distributed.py::test_collectives_meet_whatever_each_rank_passes" \
       >"$log.run$i" 2>&1; then
    echo "run $i: passed" | tee -a "$log"; rm -f "$log.run$i"
  else
    failures=$((failures + 1)); echo "run $i: FAILED (see $log.run$i)" | tee -a "$log"
  fi
done
echo "$failures failures in $runs runs" | tee -a "$log"
[ "$failures" -eq 0 ]
