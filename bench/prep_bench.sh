#!/usr/bin/env bash
# Prep benchmark (a benchmark, not a test). Four fixed synthetic sets of BENCH_CLIPS clips each
# (640x360 and 1280x720, 25 fps, 70-80 frames, seed 7):
#   slow    the face drifts between two points, the camera pans slowly;
#   fast    `--motion fast,zoom,shake,cut,cross`: crossings faster than the face's width per
#           second, zooms, camera shake, cuts to a face-free shot, two faces crossing;
#   moving  `--motion curve,pan`: continuous curved motion, a fast camera pan;
#   film    `--motion letterbox,small,dark,compressed,occlusion,second`: film-like footage.
# Per set it measures side by side
#   1. dfer prep (default settings, all cores): time, clips/s, peak memory; and its peak memory
#      with 8 threads whatever the cores (the goal: at most 1 GB);
#   2. dfer prep with det_every = 1, det_search_every = 1 (every stored frame searched whole):
#      the accuracy reference;
#   3. the careful Python pipeline of bench/python_prep.py (multiprocessing, all cores);
#   4. the decode floor: `ffmpeg -threads 1 -i CLIP -f null -`, CORES clips at a time;
# and prints one table: speed beside accuracy (clips dropped compared with every-frame
# detection, the share of its boxed frames within IoU 0.5, box accuracy against the synthetic
# truth), the ratios to Python and to the decode floor, and peak memory. Python keeps the frames
# dfer keeps (bench/python_prep.py --store-frames 64, dfer's default).
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
  DFER=${CARGO_TARGET_DIR:-target}/debug/dfer
else
  echo "bench: building dfer (release)"
  cargo build --release --quiet
  DFER=${CARGO_TARGET_DIR:-target}/release/dfer
fi

if [[ ! -x $OUT/venv/bin/python ]]; then
  echo "bench: creating the Python environment"
  python3 -m venv "$OUT/venv"
  "$OUT/venv/bin/pip" install --quiet numpy==2.2.6 opencv-python-headless==4.12.0.88 onnxruntime==1.31.1 onnx==1.19.1 h5py==3.15.1
fi
PY=$OUT/venv/bin/python

now() { date +%s.%N; }
peak_mb() { awk '/Maximum resident set size/ {printf "%.0f", $6/1024}' "$1"; }

# Runs dfer prep on set $1 into $2 with config text $3 and the flags after it; prints its wall
# seconds.
run_dfer() {
  local dir=$OUT/$1 out=$2
  rm -rf "$out"
  printf '%b' "$3" >"$out.toml"
  local t0 rc=0
  t0=$(now)
  # Exit code 1 means some clips failed (recorded in prep.parquet); the comparison counts them.
  /usr/bin/time -v $DFER -q prep --manifest "$dir/clips.parquet" --out "$out" --config "$out.toml" "${@:4}" \
    >"$out.log" 2>"$out.time" || rc=$?
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
  echo "bench[$name]: dfer prep, defaults, 8 threads"
  run_dfer "$name" "$dir/dfer8" "" --threads 8 >/dev/null
  cmp -s "$dir/dfer/shards/00000.h5" "$dir/dfer8/shards/00000.h5" || { echo "8 threads wrote other shards" >&2; exit 1; }
  echo "bench[$name]: dfer prep, every stored frame searched whole"
  t_every=$(run_dfer "$name" "$dir/every" "det_every = 1\ndet_search_every = 1\n")

  echo "bench[$name]: Python pipeline ($CORES processes)"
  rm -f "$dir/python.h5"
  t0=$(now)
  /usr/bin/time -v "$PY" bench/python_prep.py --root "$data" --model "$CACHE/centerface.onnx" --out "$dir/python.h5" \
    --workers "$CORES" --store-frames 64 >"$dir/python.json" 2>"$dir/python.time"
  t_py=$(python3 -c "print($(now) - $t0)")

  echo "bench[$name]: decode floor (ffmpeg -threads 1, $CORES clips at a time)"
  t0=$(now)
  # As many decoders at once as the other pipelines use cores, timed by the wall clock like
  # them (dividing a serial sum by the cores would assume cores this machine may not deliver).
  printf '%s\0' "$data"/Clip/original/*.mp4 |
    xargs -0 -P "$CORES" -I{} ffmpeg -nostdin -loglevel error -threads 1 -i {} -f null -
  t_dec=$(python3 -c "print($(now) - $t0)")

  "$PY" bench/accuracy.py --truth "$data" --dfer "$dir/dfer/shards" --reference "$dir/every/shards" \
    --python "$dir/python.h5" >"$dir/accuracy.json"
  "$PY" - "$name" "$N" "$t_dfer" "$t_every" "$t_py" "$t_dec" "$dir/accuracy.json" "$CORES" \
    "$(peak_mb "$dir/dfer.time")" "$(peak_mb "$dir/python.time")" "$(peak_mb "$dir/dfer8.time")" \
    >>"$OUT/summary.jsonl" <<'PYEOF'
import json, sys
name, n = sys.argv[1], int(sys.argv[2])
t_dfer, t_every, t_py, t_dec = map(float, sys.argv[3:7])
acc = json.load(open(sys.argv[7]))
agree = acc["dfer_vs_reference"]
print(json.dumps({
    "set": name, "clips": n, "cores": int(sys.argv[8]), "dfer_s": t_dfer, "every_s": t_every, "python_s": t_py,
    "floor_s": t_dec, "dfer_mb": int(sys.argv[9]), "python_mb": int(sys.argv[10]), "dfer8_mb": int(sys.argv[11]),
    "dropped": agree["dropped"], "within": agree["within_iou_0.5"], "extra": agree["boxes_where_reference_has_none"],
    "truth_dfer": acc["dfer"]["iou_ge_0.5"], "truth_every": acc["reference"]["iou_ge_0.5"],
    "truth_python": acc["python"]["iou_ge_0.5"],
}))
PYEOF
}

rm -f "$OUT/summary.jsonl"
bench_set slow slow
bench_set fast fast,zoom,shake,cut,cross
bench_set moving curve,pan
bench_set film letterbox,small,dark,compressed,occlusion,second
"$PY" - "$OUT/summary.jsonl" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"\n{rows[0]['clips']} clips per set, {rows[0]['cores']} cores; seconds of wall time")
print("| set | dfer | every frame | Python | decode floor | dfer vs Python | dfer vs floor | dropped vs every frame "
      "| within IoU 0.5 of every frame | boxes where every frame has none | truth IoU >= 0.5: dfer / every / Python "
      "| peak MB: dfer / Python | dfer peak MB, 8 threads |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['set']} | {r['dfer_s']:.1f} | {r['every_s']:.1f} | {r['python_s']:.1f} | {r['floor_s']:.1f} "
          f"| {r['python_s'] / r['dfer_s']:.2f}x | {r['dfer_s'] / r['floor_s']:.2f}x | {r['dropped']} "
          f"| {100 * r['within']:.2f} % | {r['extra']} "
          f"| {100 * r['truth_dfer']:.1f} / {100 * r['truth_every']:.1f} / {100 * r['truth_python']:.1f} % "
          f"| {r['dfer_mb']} / {r['python_mb']} | {r['dfer8_mb']} |")
PYEOF
