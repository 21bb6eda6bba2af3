#!/usr/bin/env bash
# JPEG shards: what the encoder costs prep and what the decoder costs the loader, for one or two
# dfer binaries side by side (e.g. before and after a change), runs alternating so that load
# drifts hit both alike. On the prep benchmark's slow set (60 clips, 640x360 and 1280x720, 25 fps,
# seed 7) it times `dfer prep` with encoding = "raw" and "jpeg" (2 threads); on the JPEG shards
# it times `dfer bench loader` (one core,
# 224 px, T = 16) and, with the last binary, `dfer bench jpeg-layout` (vlen vs flat bytes).
#   bench/jpeg_bench.sh DFER [DFER2]     (BENCH_RUNS=3, BENCH_OUT=bench-out/jpeg)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${BENCH_OUT:-bench-out/jpeg}
RUNS=${BENCH_RUNS:-3}
BINS=("$@")
[[ ${#BINS[@]} -ge 1 ]] || { echo "usage: bench/jpeg_bench.sh DFER [DFER2]" >&2; exit 2; }
mkdir -p "$OUT"
DATA=$OUT/data
if [[ ! -f $DATA/synth_truth.jsonl ]]; then
  "${BINS[0]}" -q synth --layout dfew --clips 60 --out "$DATA" --seed 7 --sizes 640x360,1280x720 --fps 25 \
    --min-frames 70 --max-frames 80 --no-face-frames
fi
"${BINS[0]}" -q manifest --dataset dfew --root "$DATA" -o "$OUT/clips.parquet"
now() { date +%s.%N; }
printf '%-28s %-6s %4s %9s %14s\n' binary enc run prep_s loader_fps/core
for run in $(seq 1 "$RUNS"); do
  for i in "${!BINS[@]}"; do
    bin=${BINS[$i]}
    for enc in raw jpeg; do
      out=$OUT/b$i-$enc
      rm -rf "$out"
      printf 'encoding = "%s"\n' "$enc" >"$out.toml"
      t0=$(now)
      "$bin" -q prep --manifest "$OUT/clips.parquet" --out "$out" --config "$out.toml" --threads 2
      t=$(python3 -c "print(round($(now) - $t0, 2))")
      fps=""
      if [[ $enc == jpeg ]]; then
        fps=$("$bin" bench loader --shards "$out/shards" --frames 16 --size 224 |
          python3 -c 'import json,sys; print(round(json.load(sys.stdin)["frames_per_s_per_core"]))')
      fi
      printf '%-28s %-6s %4s %9s %14s\n' "$bin" "$enc" "$run" "$t" "$fps"
    done
  done
done
last=$(( ${#BINS[@]} - 1 ))
echo
echo "JPEG layouts on the frames of $OUT/b$last-jpeg/shards (best of 5 passes):"
"${BINS[$last]}" bench jpeg-layout --shards "$OUT/b$last-jpeg/shards" --work "$OUT/layout"
