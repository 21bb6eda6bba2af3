#!/usr/bin/env bash
# Shard pixel encodings side by side on one synthetic DFEW: bytes per clip, prep clips/s, the
# training loader's frames/s on one core (read + decode + augment + normalise, 224 px), one
# training epoch from pixels (tiny OUS, so the loader dominates), the feature cache's one pixel
# pass (dfer embed), and the mean absolute pixel error against raw (h5py + Pillow).
#   bench/shard_bench.sh [DFER] [CLIPS]      e.g. bench/shard_bench.sh target/debug/dfer 30
# Needs scripts/setup.sh --assets (the readers' Python venv).
set -euo pipefail
DFER=${1:-target/release/dfer}
CLIPS=${2:-30}
OUT=bench-out/shards
PY="${DFER_CACHE:-$HOME/.cache/dfer}/py/bin/python"
rm -rf "$OUT" && mkdir -p "$OUT"
secs() { local t0=$(date +%s.%N); "$@" >/dev/null 2>&1; echo "$(date +%s.%N) - $t0" | bc; }

"$DFER" synth --layout dfew --clips "$CLIPS" --out "$OUT/dfew" --seed 11 --max-height 480 --max-frames 75 >/dev/null 2>&1
"$DFER" manifest --dataset dfew --root "$OUT/dfew" -o "$OUT/clips.parquet" --source video >/dev/null 2>&1

printf '%-6s %12s %10s %9s %14s %10s %9s %10s\n' encoding bytes/clip ratio clips/s loader_fps/core epoch_s embed_s mean_err
raw_bytes=0
for enc in raw gzip jpeg; do
  printf 'encoding = "%s"\n' "$enc" > "$OUT/$enc.toml"
  prep_s=$(secs "$DFER" prep --manifest "$OUT/clips.parquet" --out "$OUT/$enc" --config "$OUT/$enc.toml" --threads 2)
  n=$("$PY" -c "import h5py,glob,sys; print(sum(len(h5py.File(p,'r')['label']) for p in glob.glob(sys.argv[1]+'/*.h5')))" "$OUT/$enc/shards")
  bytes=$(( $(du -cb "$OUT/$enc"/shards/*.h5 | tail -1 | cut -f1) / n ))
  [[ $enc == raw ]] && raw_bytes=$bytes
  fps=$("$DFER" bench loader --shards "$OUT/$enc/shards" --frames 16 --size 224 | "$PY" -c 'import json,sys; print(round(json.load(sys.stdin)["frames_per_s_per_core"]))')
  cat > "$OUT/$enc-train.toml" <<TOML
[data]
manifest = "clips.parquet"
shards = "$enc/shards"
[model]
arch = "tiny"
heads = 4
n_ctx = 4
sim_dim = 16
[train]
epochs = 1
batch_size = 8
loader_threads = 2
TOML
  epoch_s=$(secs "$DFER" train --config "$OUT/$enc-train.toml" --run "$OUT/$enc-run")
  embed_s=$(secs "$DFER" embed --config "$OUT/$enc-train.toml" --out "$OUT/$enc-features" --views 1)
  err=$([[ $enc == raw ]] && echo 0 || "$PY" bench/shard_error.py "$OUT/raw/shards" "$OUT/$enc/shards")
  printf '%-6s %12d %9.1fx %9.2f %14d %10.1f %9.1f %10s\n' "$enc" "$bytes" "$(echo "$raw_bytes / $bytes" | bc -l)" \
    "$(echo "$n / $prep_s" | bc -l)" "$fps" "$epoch_s" "$embed_s" "$err"
done
