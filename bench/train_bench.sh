#!/usr/bin/env bash
# One OUS training step (ViT-B/16, T = 16, both streams) in dfer (candle) and in the PyTorch
# reference (bench/ous_torch.py: eager; bf16 autocast on CUDA, f32 on CPU as dfer) on the same
# machine, one after the other in this run, for each recipe:batch asked; prints seconds per step,
# dfer / PyTorch speed, dfer's host reads per step and peak memory of both.
#
# Usage: bench/train_bench.sh [--device cpu|cuda] [--dfer PATH] [--python PATH] [--steps N]
#                             [recipe:batch[:accum] ...]
#   defaults: --device cpu, --dfer target/release/dfer, --python python3, --steps 3, --warmup 2 (steps 1, warmup 0 for frozen
#   and finetune on CPU), recipes cached:8 cached:32 frozen:8 frozen:32 finetune:8 finetune:32:4
#   (accum: dfer's train.accum_steps; PyTorch runs the batch whole)
#   (on CPU finetune runs at batch 1: the ViT-B/16 backward keeps every activation of 2 × 16 frames per clip).
# Needs torch and transformers in the Python given (any transformers 4.x / 5.x).
set -euo pipefail
here=$(dirname "$0")
device=cpu dfer=target/release/dfer python=python3 steps=""
pairs=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --device) device=$2; shift 2 ;;
    --dfer) dfer=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    -h|--help) sed -n 2,13p "$0"; exit 0 ;;
    *) pairs+=("$1"); shift ;;
  esac
done
if [[ ${#pairs[@]} -eq 0 ]]; then
  if [[ $device == cpu ]]; then pairs=(cached:8 cached:32 frozen:8 frozen:32 finetune:1)
  else pairs=(cached:8 cached:32 frozen:8 frozen:32 finetune:8 finetune:32:4); fi
fi
[[ -x $dfer ]] || { echo "train_bench: $dfer is not an executable dfer (cargo build --release)" >&2; exit 2; }
field() { "$python" -c "import json,sys; print(json.loads(sys.stdin.readline())['$1'])"; }
gpu_peak() { # runs "$@" sampling GPU memory.used; prints the command's first line, then the peak MiB
  local log; log=$(mktemp)
  ( while true; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits >> "$log"; sleep 0.2; done ) &
  local sampler=$!
  "$@" | head -n 1
  kill $sampler
  sort -n "$log" | tail -n 1
}
printf '| recipe | batch | dfer s/step | PyTorch s/step | dfer / PyTorch speed | dfer host reads/step | dfer peak MiB | PyTorch peak MiB |\n'
printf '|---|---|---|---|---|---|---|---|\n'
for pair in "${pairs[@]}"; do
  IFS=: read -r recipe batch accum <<<"$pair"; accum=${accum:-1}
  n=${steps:-$([[ $device == cpu && $recipe != cached ]] && echo 1 || echo 3)}
  warm=$([[ $device == cpu && $recipe != cached ]] && echo 0 || echo 2)
  ours_cmd=("$dfer" -q bench train-step --arch vit-b16 --device "$device" --recipe "$recipe" --batch "$batch"
            --frames 16 --steps "$n" --warmup "$warm" --accum "$accum")
  theirs_cmd=("$python" "$here/ous_torch.py" --device "$device" --recipe "$recipe" --batch "$batch" --frames 16
              --steps "$n" --warmup "$warm")
  if [[ $device == cuda ]]; then
    out=$(gpu_peak "${ours_cmd[@]}"); ours=$(head -n 1 <<<"$out"); ours_mem=$(tail -n 1 <<<"$out")
  else
    ours=$("${ours_cmd[@]}" | head -n 1); ours_mem=$(field host_peak_mib <<<"$ours")
  fi
  theirs=$("${theirs_cmd[@]}")
  o=$(field seconds_per_step <<<"$ours") t=$(field seconds_per_step <<<"$theirs")
  printf '| %s | %s%s | %.3f | %.3f | %.2f× | %s | %.0f | %.0f |\n' "$recipe" "$batch" "$([[ $accum == 1 ]] || echo " (dfer in $accum parts)")" "$o" "$t" \
    "$("$python" -c "print($t / $o)")" "$(field host_reads_per_step <<<"$ours")" "$ours_mem" \
    "$(field peak_mib <<<"$theirs")"
done
echo "threads: dfer uses every core (candle's gemm, rayon); PyTorch $(field threads <<<"$theirs"). Peak memory:"
echo "on CPU the process's peak RSS for both; on CUDA dfer's is nvidia-smi memory.used (CUDA context"
echo "included), PyTorch's max_memory_allocated."
