#!/usr/bin/env bash
# One OUS training step (ViT-B/16, T = 16, both streams) in dfer (candle, bf16 image tower) and
# in the PyTorch reference (bench/ous_torch.py, eager + bf16 autocast) on the same GPU, for the
# frozen, fine-tuned and feature-cache recipes; prints clips/s, peak memory and the ratio, and
# the time to 20 epochs of a DFEW fold with and without the cache.
# Usage (on the GPU machine): bench/train_bench.sh [path/to/dfer] [batch]
set -euo pipefail
dfer=${1:-dist/gpu/dfer}
batch=${2:-8}
here=$(dirname "$0")
peak_of() { # runs "$@", sampling the GPU memory used; prints the command's stdout then "peak_mib N"
  local log; log=$(mktemp)
  ( while true; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits >> "$log"; sleep 0.2; done ) &
  local sampler=$!
  "$@"
  kill $sampler
  echo "peak_mib $(sort -n "$log" | tail -n 1)"
}
declare -A ours theirs ours_mem
for recipe in frozen finetune cached; do
  out=$(peak_of "$dfer" bench train-step --arch vit-b16 --device cuda --recipe $recipe --batch "$batch" --frames 16)
  ours[$recipe]=$(echo "$out" | head -n 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["clips_per_s"])')
  ours_mem[$recipe]=$(echo "$out" | awk '/^peak_mib/ {print $2}')
  theirs[$recipe]=$(python3 "$here/ous_torch.py" --recipe $recipe --batch "$batch" --frames 16)
done
printf '%-9s %14s %14s %12s %14s %8s\n' recipe "dfer clips/s" "torch clips/s" "dfer MiB*" "torch MiB" ratio
for recipe in frozen finetune cached; do
  t=${theirs[$recipe]}
  tc=$(echo "$t" | python3 -c 'import json,sys; print(json.load(sys.stdin)["clips_per_s"])')
  tm=$(echo "$t" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["peak_mib"]))')
  printf '%-9s %14.1f %14.1f %12s %14s %8.2f\n' $recipe "${ours[$recipe]}" "$tc" "${ours_mem[$recipe]}" "$tm" \
    "$(python3 -c "print(${ours[$recipe]} / $tc)")"
done
echo "* dfer memory: whole-GPU memory.used sampled by nvidia-smi (includes the CUDA context); torch: max_memory_allocated"
# 20 epochs of 9,000 training clips; the cache costs one frozen forward pass over 11,700 clips
# (bounded above by a frozen training step per clip).
python3 - "${ours[frozen]}" "${ours[cached]}" "$(echo "${theirs[frozen]}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["clips_per_s"])')" <<'PY'
import sys
frozen, cached, torch_frozen = map(float, sys.argv[1:])
ours = 11700 / frozen + 20 * 9000 / cached
torch = 20 * 9000 / torch_frozen
print(f"20 epochs (9,000 clips/epoch): dfer with cache {ours/60:.1f} min, PyTorch frozen {torch/60:.1f} min, {torch/ours:.1f}x")
PY
