#!/usr/bin/env bash
# The trainer's loader on one core (`dfer bench loader`: read, decode, random resized crop to
# 224 px and flip of face and scene, T = 16) for one or more dfer binaries on the same shards,
# runs alternating so that load drifts hit every binary alike; prints each run and, per
# binary, the median and range in frames/s per core.
#   bench/loader_bench.sh SHARDS DFER [DFER2 ...]     (BENCH_RUNS=7)
set -euo pipefail
RUNS=${BENCH_RUNS:-7}
SHARDS=${1:?usage: bench/loader_bench.sh SHARDS DFER [DFER2 ...]}
shift
[[ $# -ge 1 ]] || { echo "usage: bench/loader_bench.sh SHARDS DFER [DFER2 ...]" >&2; exit 2; }
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for run in $(seq 1 "$RUNS"); do
  for bin in "$@"; do
    fps=$("$bin" bench loader --shards "$SHARDS" --frames 16 --size 224 |
      python3 -c 'import json,sys; print(round(json.load(sys.stdin)["frames_per_s_per_core"]))')
    echo "run $run  $bin  $fps"
    echo "$bin $fps" >>"$results"
  done
done
python3 - "$results" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    b, fps = line.split()
    runs.setdefault(b, []).append(int(fps))
print(f"{'binary':40} {'median':>7} {'min':>6} {'max':>6}  frames/s per core")
for b, v in runs.items():
    print(f"{b:40} {statistics.median(v):7.0f} {min(v):6} {max(v):6}")
PY
