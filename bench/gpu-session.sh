#!/usr/bin/env bash
# One GPU session in one script, for an NVIDIA machine without Rust: the full CUDA build of
# scripts/build-gpu.sh (unpacked under DEST: DEST/gpu/{dfer,lib,cache}) runs the demo pipeline
# with training on CUDA, then bench/gpu-check.sh (CLIP parity, the dfer-vs-PyTorch step table,
# two epochs of ViT-B/16). Logs and tables go to OUT.
#
#   tar -xJf dist/gpu-lib.tar.xz -C DEST; tar -xJf dist/gpu-bin.tar.xz -C DEST
#   bench/gpu-session.sh DEST OUT [DEMO_DIR [DATA]]     (from the repository root)
#
# `dfer synth` encodes with the `ffmpeg` program, which a bare GPU machine lacks: DEMO_DIR is a
# folder where `dfer run pipelines/demo.toml` ran its CPU stages (with DEMO_SET below) on another
# machine, at the same absolute path (a pipeline's stamps name its paths), so here only training,
# evaluation and the report run; DATA is `bench/gpu-check.sh --prepare`'s folder, made likewise.
# The demo's frames are 112 px, so that its shards travel in under 64 MiB with the binary.
#
# CUDA's libraries come from the machine: the driver's libcuda and the cuBLAS, cuRAND and NVRTC
# of PyTorch's nvidia wheels (found by file name under the `nvidia` package).
set -uo pipefail
dest=${1:?usage: bench/gpu-session.sh DEST OUT [DEMO_DIR [DATA]]}
out=${2:?usage: bench/gpu-session.sh DEST OUT [DEMO_DIR [DATA]]}
repo=$(pwd)
demo_dir=${3:-$repo}
data=${4:-}
demo_set=(--set prep.face_size=112 --set prep.scene_size=112 --set train.device=cuda)
mkdir -p "$out"
dfer=$dest/gpu/dfer
[[ -x $dfer && -d $dest/gpu/lib && -d $dest/gpu/cache ]] ||
  { echo "gpu-session: $dest/gpu lacks dfer, lib/ or cache/: unpack both archives there" >&2; exit 2; }
cuda_dirs=$(python3 - <<'PY'
import glob, os
import nvidia
names = ("libcublas.so.13", "libcublasLt.so.13", "libcurand.so.10", "libnvrtc.so.13", "libcudart.so.13")
dirs = sorted({os.path.dirname(p) for d in nvidia.__path__ for n in names for p in glob.glob(f"{d}/**/{n}", recursive=True)})
print(":".join(dirs))
PY
)
driver=""
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu; do
  [[ -e $d/libcuda.so.1 ]] && { driver=$d; break; }
done
export DFER_CACHE=$dest/gpu/cache
export LD_LIBRARY_PATH=$dest/gpu/lib:$cuda_dirs${driver:+:$driver}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# candle's kernels arrive as PTX, compiled by the driver on first use: keep every module cached.
export CUDA_CACHE_MAXSIZE=4294967296
# Some container file systems refuse the file locks HDF5 takes; dfer opens each file from one writer.
export HDF5_USE_FILE_LOCKING=FALSE
{ nvidia-smi; echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"; "$dfer" --version; } > "$out/machine.txt" 2>&1
cat "$out/machine.txt"

# 1. The demo pipeline, training on CUDA (synth, manifest and prep on the CPU, here or before).
start=$SECONDS
(cd "$demo_dir" && "$dfer" run pipelines/demo.toml "${demo_set[@]}") > "$out/demo.log" 2>&1
demo_rc=$?
echo "demo pipeline on cuda: exit $demo_rc in $((SECONDS - start)) s" | tee -a "$out/summary.md"
tail -n 25 "$out/demo.log"
for f in report.json runs/fold1/metrics.jsonl runs/fold1/report.json; do
  [[ -f $demo_dir/demo-out/$f ]] && cp "$demo_dir/demo-out/$f" "$out/demo-${f//\//-}"
done

# 2. The trainer's device check.
start=$SECONDS
if [[ -z $data ]]; then
  data=$(mktemp -d)/gpu-data
  bench/gpu-check.sh --prepare "$data" --dfer "$dfer" > "$out/gpu-check-prepare.log" 2>&1 ||
    { tail -n 20 "$out/gpu-check-prepare.log"; echo "gpu-session: --prepare failed" >&2; exit 1; }
fi
bench/gpu-check.sh --device cuda --dfer "$dfer" --data "$data" --out "$(mktemp -d)/check" 2>&1 |
  tee "$out/gpu-check.md"
echo "gpu-check: exit ${PIPESTATUS[0]} in $((SECONDS - start)) s" | tee -a "$out/summary.md"
