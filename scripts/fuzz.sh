#!/usr/bin/env bash
# Fuzzes dfer's readers of untrusted input with cargo-fuzz (libFuzzer), each target for a
# bounded time:
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 120 s; all four targets)
# Targets (fuzz/fuzz_targets): split_files, dataset_toml, pipeline_toml, onnx_patch. Seeds are
# the shipped descriptions and pipelines, the CenterFace model (scripts/setup.sh --assets) and
# the split files of a synthetic dataset of each layout. Crashes land in fuzz/artifacts/TARGET/
# and make the script exit 1; each found is fixed and kept as a unit test next to the code.
# Needs the nightly toolchain (rustup toolchain install nightly); installs cargo-fuzz if absent.
# Built without a sanitizer (-s none): the code is safe Rust, and the aim is panics, overflows
# (debug assertions are on), runaway memory and hangs.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-120}
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(split_files dataset_toml pipeline_toml onnx_patch)

rustup toolchain list | grep '^nightly' >/dev/null || { echo "fuzz: needs the nightly toolchain: rustup toolchain install nightly" >&2; exit 2; }
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

corpus=fuzz/corpus
mkdir -p "$corpus"/{split_files,dataset_toml,pipeline_toml,onnx_patch}
cp data-manifests/*.toml "$corpus/dataset_toml/"
cp pipelines/*.toml "$corpus/pipeline_toml/"
model="${DFER_CACHE:-$HOME/.cache/dfer}/centerface.onnx"
[[ -f $model ]] || { echo "fuzz: $model missing: run scripts/setup.sh --assets" >&2; exit 2; }
cp "$model" "$corpus/onnx_patch/"

# Split-file seeds: byte 0 picks the description (0 dfew, 1 ferv39k, 2 mafw), then each split
# file of a synthetic dataset, in the order the fuzz target writes them, joined by 0xFF.
cargo build --quiet --bin dfer
seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
for pick in 0 1 2; do
  layout=$(echo dfew ferv39k mafw | cut -d' ' -f$((pick + 1)))
  target/debug/dfer -q synth --layout "$layout" --clips 12 --out "$seeds/$layout" --seed 1 \
    --max-height 240 --max-frames 16 --lfw-faces 1 >/dev/null
  python3 - "$pick" "data-manifests/$layout.toml" "$seeds/$layout" "$corpus/split_files/$layout" <<'PY'
import sys, tomllib, pathlib
pick, desc, root, out = int(sys.argv[1]), tomllib.load(open(sys.argv[2], "rb")), pathlib.Path(sys.argv[3]), sys.argv[4]
s = desc["splits"]
files = [p.replace("{fold}", str(f)) for f in range(1, s.get("folds", 1) + 1) for p in (s["train"], s["test"])]
open(out, "wb").write(bytes([pick]) + b"\xff".join((root / f).read_bytes() for f in files))
PY
done

echo "fuzz: building targets (first build takes a while)"
cargo +nightly fuzz build -s none
failed=0
for t in "${targets[@]}"; do
  log=$(mktemp)
  if cargo +nightly fuzz run -s none "$t" "$corpus/$t" -- -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 >"$log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    echo "fuzz: $t: $runs inputs in ${secs} s, no crash"
  else
    failed=1
    echo "fuzz: $t: FAILED; the end of its log:"
    tail -n 30 "$log"
  fi
  rm -f "$log"
done
exit $failed
