#!/usr/bin/env bash
# The trainer's device check in one script, one table out. Run it here on CPU first, so it is
# known to work, then on the GPU machine with a CUDA build (scripts/build-gpu.sh; docs/gpu.md):
#
#   bench/gpu-check.sh --prepare bench-out/gpu-data            # here: synthetic shards (needs full dfer)
#   bench/gpu-check.sh --device cpu --quick --data bench-out/gpu-data
#   DFER_CACHE=gpu/cache LD_LIBRARY_PATH=gpu/lib:<PyTorch's nvidia/cu13/lib> \
#     bench/gpu-check.sh --device cuda --dfer gpu/dfer --data gpu-data   # on the GPU
#
# What travels to the GPU machine: scripts/build-gpu.sh's two archives, bench/, and the
# --prepare folder (12 MB); bench/gpu-session.sh runs this and the demo pipeline in one go.
#
# Steps: (1) CLIP parity against transformers' CLIPModel on the same seeded ViT-B/16 weights
# (f32, tolerance 1e-4), then with dfer's image tower in half precision (bf16 on CUDA, f16 on
# CPU, which has no bf16 matmul in candle) within 2x transformers' own half-precision error
# (skipped with a stated reason when transformers is not importable);
# (2) bench/train_bench.sh's dfer-vs-PyTorch table; (3) `dfer train` for 2 epochs of ViT-B/16
# (random weights, frozen image tower) on the synthetic shards, timed, with the held-out WAR.
# --quick (for the CPU rehearsal) keeps every step but makes them small: the tiny arch in step 3
# and two recipe:batch pairs in step 2.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
device=cpu dfer=target/release/dfer python=${PYTHON:-python3} data="" quick=0 out=bench-out/gpu-check
while [[ $# -gt 0 ]]; do
  case $1 in
    --prepare) data=$2; mode=prepare; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --dfer) dfer=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    -h|--help) sed -n 2,16p "$0"; exit 0 ;;
    *) echo "gpu-check: unknown argument $1" >&2; exit 2 ;;
  esac
done

if [[ ${mode:-check} == prepare ]]; then
  # 24 DFEW-layout clips with faces (no edge cases), 224 px crops, JPEG shards: ~10 MB to carry.
  rm -rf "$data" && mkdir -p "$data"
  "$dfer" -q synth --layout dfew --clips 24 --out "$data/dataset" --seed 7 --max-height 360 --max-frames 48
  "$dfer" -q manifest --dataset dfew --root "$data/dataset" -o "$data/clips.parquet"
  "$dfer" -q prep --manifest "$data/clips.parquet" --out "$data/prep"
  rm -rf "$data/dataset"
  du -sh "$data"
  exit 0
fi

[[ -x $dfer ]] || { echo "gpu-check: $dfer is not an executable dfer" >&2; exit 2; }
[[ -f $data/clips.parquet && -d $data/prep/shards ]] ||
  { echo "gpu-check: --data $data has no clips.parquet and prep/shards (make them with --prepare)" >&2; exit 2; }
mkdir -p "$out"
rows=()
row() { rows+=("| $1 | $2 | $3 |"); }

# 1. CLIP parity.
if "$python" -c 'import transformers, safetensors' 2>/dev/null; then
  start=$SECONDS
  if "$python" "$here/clip_parity.py" --dfer "$dfer" --device "$device" --out "$out/parity" > "$out/parity.log" 2>&1
  then verdict=OK; else verdict=FAILED; fi
  row "CLIP parity, ViT-B/16 f32 (tolerance 1e-4)" "$verdict: $(grep -o 'worst [0-9.e+-]*' "$out/parity.log" || echo 'no result')" \
    "$((SECONDS - start)) s"
  half=bf16
  [[ $device == cpu ]] && half=f16
  start=$SECONDS
  if "$python" "$here/clip_parity.py" --dfer "$dfer" --device "$device" --dtype $half --out "$out/parity-$half" \
    > "$out/parity-$half.log" 2>&1
  then verdict=OK; else verdict=FAILED; fi
  row "CLIP parity, image tower $half (within 2x transformers' own $half error)" \
    "$verdict: transformers' own $(grep -o "max |$half - f32| = [0-9.e+-]*" "$out/parity-$half.log" | grep -o '[0-9.e+-]*$' || echo '?'), dfer $(grep -o 'image_embeds.*max |ours - transformers f32| = [0-9.e+-]*' "$out/parity-$half.log" | grep -o '[0-9.e+-]*$' || echo '?') (max abs difference from f32)" \
    "$((SECONDS - start)) s"
else
  row "CLIP parity, ViT-B/16 f32" "not run: transformers / safetensors not importable by $python" "-"
fi

# 2. dfer vs PyTorch training step.
pairs=()
[[ $quick == 1 ]] && pairs=(cached:8 frozen:1)
start=$SECONDS
"$here/train_bench.sh" --device "$device" --dfer "$dfer" --python "$python" "${pairs[@]}" | tee "$out/train_bench.md"
row "train-step table (above)" "$(grep -cE '^[|] (cached|frozen|finetune) ' "$out/train_bench.md" | tr -d ' ') rows" "$((SECONDS - start)) s"

# 3. Two epochs of dfer train on the synthetic shards.
arch=vit-b16
[[ $quick == 1 ]] && arch=tiny
data_abs=$(cd "$data" && pwd)
cat > "$out/train.toml" <<EOF
[data]
manifest = "$data_abs/clips.parquet"
shards = "$data_abs/prep/shards"
fold = 1

[model]
arch = "$arch"

[train]
device = "$device"
epochs = 2
batch_size = 8
EOF
rm -rf "$out/run"
start=$SECONDS
"$dfer" -q train --config "$out/train.toml" --run "$out/run" > "$out/train.log" 2>&1 ||
  { cat "$out/train.log" >&2; echo "gpu-check: dfer train failed" >&2; exit 1; }
war=$("$python" -c "import json; l=[json.loads(x) for x in open('$out/run/metrics.jsonl')]; print(round(l[-1]['test_war'],1))" 2>/dev/null || echo '?')
row "dfer train, $arch, 2 epochs, $device" "done, last-epoch test WAR $war %" "$((SECONDS - start)) s"

echo
echo "| check | result | time |"
echo "|---|---|---|"
printf '%s\n' "${rows[@]}"
