#!/usr/bin/env bash
# Prep benchmark (a benchmark, not a test): on one fixed synthetic set, measures side by side
#   1. dfer prep (release build, default settings, all cores),
#   2. the careful Python pipeline of bench/python_prep.py (multiprocessing, all cores),
#   3. the decode floor: `ffmpeg -threads 1 -i CLIP -f null -` summed over clips / cores,
# with face-box accuracy against the synthetic ground truth for both pipelines, and prints
# the ratios. Usage: bench/prep_bench.sh  (BENCH_CLIPS=200 BENCH_OUT=bench-out by default)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${BENCH_CLIPS:-200}
OUT=${BENCH_OUT:-bench-out}
CORES=$(nproc)
CACHE="${DFER_CACHE:-$HOME/.cache/dfer}"
mkdir -p "$OUT"

scripts/setup.sh --assets >/dev/null
echo "bench: building dfer (release)"
cargo build --release --quiet
DFER=target/release/dfer

if [[ ! -x $OUT/venv/bin/python ]]; then
  echo "bench: creating the Python environment"
  python3 -m venv "$OUT/venv"
  "$OUT/venv/bin/pip" install --quiet numpy==2.2.6 opencv-python-headless==4.12.0.88 onnxruntime==1.31.1 onnx==1.19.1 h5py==3.15.1
fi
PY=$OUT/venv/bin/python

DATA=$OUT/data-$N
if [[ ! -f $DATA/synth_truth.jsonl ]]; then
  echo "bench: synthesising $N clips (640x360 and 1280x720, 25 fps, 70-80 frames)"
  rm -rf "$DATA"
  $DFER -q synth --layout dfew --clips "$N" --out "$DATA" --seed 7 --sizes 640x360,1280x720 --fps 25 \
    --min-frames 70 --max-frames 80 --no-face-frames
fi
$DFER -q manifest --dataset dfew --root "$DATA" -o "$OUT/clips.parquet"

now() { date +%s.%N; }
peak_mb() { awk '/Maximum resident set size/ {printf "%.0f", $6/1024}' "$1"; }

echo "bench: dfer prep ($CORES threads)"
rm -rf "$OUT/dfer"
t0=$(now)
# Exit code 1 means some clips failed (recorded in prep.parquet); the accuracy check counts them.
rc=0
/usr/bin/time -v $DFER -q prep --manifest "$OUT/clips.parquet" --out "$OUT/dfer" 2>"$OUT/dfer.time" || rc=$?
[[ $rc -le 1 ]] || { cat "$OUT/dfer.time"; exit "$rc"; }
t_dfer=$(python3 -c "print($(now) - $t0)")

echo "bench: Python pipeline ($CORES processes)"
rm -f "$OUT/python.h5"
t0=$(now)
/usr/bin/time -v "$PY" bench/python_prep.py --root "$DATA" --model "$CACHE/centerface.onnx" --out "$OUT/python.h5" \
  --workers "$CORES" >"$OUT/python.json" 2>"$OUT/python.time"
t_py=$(python3 -c "print($(now) - $t0)")

echo "bench: decode floor (ffmpeg -threads 1, one clip at a time)"
t0=$(now)
for f in "$DATA"/Clip/original/*.mp4; do ffmpeg -nostdin -loglevel error -threads 1 -i "$f" -f null -; done
t_dec=$(python3 -c "print(($(now) - $t0) / $CORES)")

acc=$("$PY" bench/accuracy.py --truth "$DATA" --dfer "$OUT/dfer/shards" --python "$OUT/python.h5")
"$PY" - "$N" "$t_dfer" "$t_py" "$t_dec" "$acc" "$(peak_mb "$OUT/dfer.time")" "$(peak_mb "$OUT/python.time")" "$CORES" <<'PYEOF'
import json, sys
n, t_dfer, t_py, t_dec = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
acc, mem_dfer, mem_py, cores = json.loads(sys.argv[5]), sys.argv[6], sys.argv[7], sys.argv[8]
print(f"\n{n} clips, {cores} cores")
print(f"{'pipeline':<28}{'seconds':>9}{'clips/s':>9}{'IoU>=0.5':>10}{'peak MB':>9}")
print(f"{'dfer prep':<28}{t_dfer:>9.1f}{n / t_dfer:>9.2f}{acc['dfer']['iou_ge_0.5'] * 100:>9.1f}%{mem_dfer:>9}")
print(f"{'Python (OpenCV+onnxruntime)':<28}{t_py:>9.1f}{n / t_py:>9.2f}{acc['python']['iou_ge_0.5'] * 100:>9.1f}%{mem_py:>9}")
print(f"{'decode floor (ffmpeg)':<28}{t_dec:>9.1f}{n / t_dec:>9.2f}")
print(f"\ndfer vs Python: {t_py / t_dfer:.2f}x faster; dfer vs decode floor: {t_dfer / t_dec:.2f}x the floor")
PYEOF
