#!/usr/bin/env bash
# The demo: `dfer run pipelines/demo.toml` (a synthetic DFEW-layout dataset, its clip manifest,
# face/scene shards, a tiny OUS trained on fold 1 on the CPU, its evaluation and a report, all
# in demo-out/), then summaries of what each stage wrote. Run it again and every stage is
# skipped as up to date. (`make demo` runs it after setup; DEMO_OUT=dir writes elsewhere.)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${DEMO_OUT:-demo-out}
# The first build of dfer and its dependencies takes minutes; cargo shows its progress.
cargo build
dfer=target/debug/dfer
# Exit code 1 is expected: the edge cases include a truncated clip, a zero-byte clip and a clip
# with no face, which manifest and prep record and skip.
$dfer run pipelines/demo.toml --set "pipeline.out=$out" || [[ $? == 1 ]]
$dfer inspect "$out/clips.parquet"
$dfer inspect "$out/prep/shards/00000.h5" --grid "$out/contact-sheet.png"
$dfer inspect "$out/runs/fold1" --plot "$out/runs/fold1/curves.png"
$dfer inspect pipelines/demo.toml --set "pipeline.out=$out"
echo "demo: manifest $out/clips.parquet, shards $out/prep/shards, table $out/prep/prep.parquet"
echo "demo: contact sheet $out/contact-sheet.png, exported frames and annotation lists in $out/frames"
echo "demo: run $out/runs/fold1 (report.json, confusion.png, curves.png, metrics.jsonl), summary $out/report.json"
# The results once more, last: a second `dfer run` finds every stage up to date.
$dfer run pipelines/demo.toml --set "pipeline.out=$out" || [[ $? == 1 ]]
