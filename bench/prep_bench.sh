#!/usr/bin/env bash
# Prep benchmark (a benchmark, not a test). Two fixed synthetic sets of BENCH_CLIPS clips each
# (640x360 and 1280x720, 25 fps, 70-80 frames, seed 7):
#   slow   today's motion: the face drifts between two points, the camera pans slowly;
#   fast   `--motion fast,zoom,shake,cut,cross`: crossings faster than the face's width per
#          second, zooms, camera shake, cuts to a face-free shot, two faces crossing.
# Per set it measures side by side
#   1. dfer prep (default settings, all cores): time, clips/s, peak memory;
#   2. dfer prep with det_every = 1 (every stored frame detected): the accuracy reference;
#   3. the careful Python pipeline of bench/python_prep.py (multiprocessing, all cores);
#   4. the decode floor: `ffmpeg -threads 1 -i CLIP -f null -` summed over clips / cores;
# and prints clips dropped compared with every-frame detection, the share of frames within
# IoU 0.5 of it, box accuracy against the synthetic truth, and the ratios to Python and to
# the decode floor.
# Usage: bench/prep_bench.sh   (BENCH_CLIPS=100, BENCH_OUT=bench-out; BENCH_BUILD=debug uses the
# debug binary instead of building a release one)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${BENCH_CLIPS:-100}
OUT=${BENCH_OUT:-bench-out}
CORES=$(nproc)
CACHE="${DFER_CACHE:-$HOME/.cache/dfer}"
mkdir -p "$OUT"

scripts/setup.sh --assets >/dev/null
if [[ ${BENCH_BUILD:-release} == debug ]]; then
  echo "bench: building dfer (debug)"
  cargo build --quiet
  DFER=target/debug/dfer
else
  echo "bench: building dfer (release)"
  cargo build --release --quiet
  DFER=target/release/dfer
fi

if [[ ! -x $OUT/venv/bin/python ]]; then
  echo "bench: creating the Python environment"
  python3 -m venv "$OUT/venv"
  "$OUT/venv/bin/pip" install --quiet numpy==2.2.6 opencv-python-headless==4.12.0.88 onnxruntime==1.31.1 onnx==1.19.1 h5py==3.15.1
fi
PY=$OUT/venv/bin/python

now() { date +%s.%N; }
peak_mb() { awk '/Maximum resident set size/ {printf "%.0f", $6/1024}' "$1"; }

# Runs dfer prep on set $1 into $2 with config text $3; prints its wall seconds.
run_dfer() {
  local dir=$OUT/$1 out=$2
  rm -rf "$out"
  printf '%b' "$3" >"$out.toml"
  local t0 rc=0
  t0=$(now)
  # Exit code 1 means some clips failed (recorded in prep.parquet); the comparison counts them.
  /usr/bin/time -v $DFER -q prep --manifest "$dir/clips.parquet" --out "$out" --config "$out.toml" >"$out.log" 2>"$out.time" || rc=$?
  [[ $rc -le 1 ]] || { cat "$out.time" >&2; exit "$rc"; }
  python3 -c "print($(now) - $t0)"
}

bench_set() {
  local name=$1 motion=$2 dir=$OUT/$1
  local data=$dir/data-$N
  mkdir -p "$dir"
  if [[ ! -f $data/synth_truth.jsonl ]]; then
    echo "bench[$name]: synthesising $N clips (motion $motion)"
    rm -rf "$data"
    $DFER -q synth --layout dfew --clips "$N" --out "$data" --seed 7 --sizes 640x360,1280x720 --fps 25 \
      --min-frames 70 --max-frames 80 --no-face-frames --motion "$motion"
  fi
  $DFER -q manifest --dataset dfew --root "$data" -o "$dir/clips.parquet"

  echo "bench[$name]: dfer prep, defaults ($CORES threads)"
  local t_dfer t_every t_py t_dec
  t_dfer=$(run_dfer "$name" "$dir/dfer" "")
  echo "bench[$name]: dfer prep, det_every = 1"
  t_every=$(run_dfer "$name" "$dir/every" "det_every = 1\n")

  echo "bench[$name]: Python pipeline ($CORES processes)"
  rm -f "$dir/python.h5"
  t0=$(now)
  /usr/bin/time -v "$PY" bench/python_prep.py --root "$data" --model "$CACHE/centerface.onnx" --out "$dir/python.h5" \
    --workers "$CORES" >"$dir/python.json" 2>"$dir/python.time"
  t_py=$(python3 -c "print($(now) - $t0)")

  echo "bench[$name]: decode floor (ffmpeg -threads 1, one clip at a time)"
  t0=$(now)
  for f in "$data"/Clip/original/*.mp4; do ffmpeg -nostdin -loglevel error -threads 1 -i "$f" -f null -; done
  t_dec=$(python3 -c "print(($(now) - $t0) / $CORES)")

  "$PY" bench/accuracy.py --truth "$data" --dfer "$dir/dfer/shards" --reference "$dir/every/shards" \
    --python "$dir/python.h5" >"$dir/accuracy.json"
  "$PY" - "$name" "$N" "$t_dfer" "$t_every" "$t_py" "$t_dec" "$dir/accuracy.json" "$CORES" \
    "$(peak_mb "$dir/dfer.time")" "$(peak_mb "$dir/every.time")" "$(peak_mb "$dir/python.time")" <<'PYEOF'
import json, sys
name, n = sys.argv[1], int(sys.argv[2])
t_dfer, t_every, t_py, t_dec = map(float, sys.argv[3:7])
acc, cores = json.load(open(sys.argv[7])), sys.argv[8]
mem = {"dfer": sys.argv[9], "every": sys.argv[10], "python": sys.argv[11]}
agree = acc["dfer_vs_reference"]
print(f"\nset {name}: {n} clips, {cores} cores")
print(f"{'pipeline':<30}{'seconds':>9}{'clips/s':>9}{'truth IoU>=0.5':>16}{'peak MB':>9}")
rows = [("dfer prep (defaults)", t_dfer, "dfer", "dfer"), ("dfer prep (det_every = 1)", t_every, "reference", "every"),
        ("Python (OpenCV+onnxruntime)", t_py, "python", "python")]
for label, t, key, m in rows:
    print(f"{label:<30}{t:>9.1f}{n / t:>9.2f}{acc[key]['iou_ge_0.5'] * 100:>15.1f}%{mem[m]:>9}")
print(f"{'decode floor (ffmpeg)':<30}{t_dec:>9.1f}{n / t_dec:>9.2f}")
print(f"dfer defaults vs det_every = 1: {agree['dropped']} of {agree['reference_clips']} clips dropped, "
      f"{agree['within_iou_0.5'] * 100:.2f}% of {agree['reference_frames_with_box']} boxed frames within IoU 0.5, "
      f"{agree['boxes_where_reference_has_none']} boxes where it has none")
print(f"dfer vs Python: {t_py / t_dfer:.2f}x faster; dfer vs decode floor: {t_dfer / t_dec:.2f}x the floor")
PYEOF
}

bench_set slow slow
bench_set fast fast,zoom,shake,cut,cross
