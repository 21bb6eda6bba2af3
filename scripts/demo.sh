#!/usr/bin/env bash
# The demo: a synthetic DFEW-layout dataset, its clip manifest, face/scene shards and their
# summaries, in demo-out/.
# (Later stages join this script as they land; `make demo` runs it after setup.)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${DEMO_OUT:-demo-out}
cargo build --quiet
dfer=target/debug/dfer
rm -rf "$out"
mkdir -p "$out"
$dfer synth --layout dfew --clips 28 --out "$out/dataset" --seed 1 --edge-cases --max-height 480 --max-frames 48
# Exit code 1 is expected here: the edge cases include a truncated and a zero-byte clip.
$dfer manifest --dataset dfew --root "$out/dataset" -o "$out/clips.parquet" || [[ $? == 1 ]]
$dfer inspect "$out/clips.parquet"
# Exit code 1 again: the edge cases include a clip with no face and the two broken files.
$dfer prep --manifest "$out/clips.parquet" --out "$out/prep" --export-frames "$out/frames" || [[ $? == 1 ]]
$dfer inspect "$out/prep/shards/00000.h5" --grid "$out/contact-sheet.png"
echo "demo: manifest $out/clips.parquet, shards $out/prep/shards, table $out/prep/prep.parquet"
echo "demo: contact sheet $out/contact-sheet.png, exported frames and annotation lists in $out/frames"
