#!/usr/bin/env bash
# The demo: a synthetic DFEW-layout dataset, its clip manifest, face/scene shards and their
# summaries, then a tiny OUS trained on fold 1 on the CPU and evaluated, all in demo-out/.
# (`make demo` runs it after setup.)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${DEMO_OUT:-demo-out}
cargo build --quiet
dfer=target/debug/dfer
rm -rf "$out"
mkdir -p "$out"
$dfer synth --layout dfew --clips 70 --out "$out/dataset" --seed 1 --edge-cases --max-height 480 --max-frames 48
# Exit code 1 is expected here: the edge cases include a truncated and a zero-byte clip.
$dfer manifest --dataset dfew --root "$out/dataset" -o "$out/clips.parquet" || [[ $? == 1 ]]
$dfer inspect "$out/clips.parquet"
# Exit code 1 again: the edge cases include a clip with no face and the two broken files.
$dfer prep --manifest "$out/clips.parquet" --out "$out/prep" --export-frames "$out/frames" || [[ $? == 1 ]]
$dfer inspect "$out/prep/shards/00000.h5" --grid "$out/contact-sheet.png"
# A tiny OUS (32 px CLIP-like towers with random weights, image tower fine-tuned) on fold 1.
cat > "$out/train.toml" <<'TOML'
[data]
manifest = "clips.parquet"
shards = "prep/shards"
fold = 1

[model]
arch = "tiny"
heads = 4
n_ctx = 4
sim_dim = 16

[train]
epochs = 10
batch_size = 8
lr = 0.003
finetune_image = true
lr_image = 0.001
warmup_epochs = 0.5

[aug]
crop_area = [0.6, 1.0]
jitter = 0.1
TOML
$dfer train --config "$out/train.toml" --run "$out/runs/fold1"
$dfer eval --run "$out/runs/fold1"
$dfer inspect "$out/runs/fold1"
echo "demo: manifest $out/clips.parquet, shards $out/prep/shards, table $out/prep/prep.parquet"
echo "demo: contact sheet $out/contact-sheet.png, exported frames and annotation lists in $out/frames"
echo "demo: run $out/runs/fold1 (report.json, confusion.png, curves.png, metrics.jsonl)"
