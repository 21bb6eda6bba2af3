#!/usr/bin/env bash
# The demo: a synthetic DFEW-layout dataset, its clip manifest and its summary, in demo-out/.
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
echo "demo: manifest at $out/clips.parquet"
