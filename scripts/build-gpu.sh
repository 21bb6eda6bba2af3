#!/usr/bin/env bash
# Builds `dfer` with the CUDA backend on a machine without a GPU, and packs it for an NVIDIA
# machine that has no Rust. By default the full binary (every subcommand: synth, manifest, prep,
# train, eval, report, run), packed in two archives, each under 64 MiB:
#   dist/gpu-lib.tar.xz   gpu/lib/: the FFmpeg, HDF5 and libjpeg-turbo libraries it links, with
#                         their dependencies (what a bare machine may lack; glibc excepted)
#   dist/gpu-bin.tar.xz   gpu/dfer (stripped) and gpu/cache/: ONNX Runtime, the CenterFace
#                         detector, the face photographs and CLIP's BPE merges (DFER_CACHE there)
# --trainer-only builds the binary without FFmpeg and ONNX Runtime (train, eval, report, embed,
# inspect; no run or prep) into one smaller archive, dist/gpu-trainer.tar.xz.
# CUDA libraries come from the GPU machine (its driver, and its toolkit or PyTorch's wheels).
#
# A CUDA 13.0 toolkit (the GPU machines run driver 580, which refuses PTX from 13.1+) is
# assembled from pinned PyPI wheels into $DFER_CACHE/cuda-13.0. The linker needs libcuda.so,
# which no wheel ships: a stub exporting every driver symbol cudarc declares (each returning
# CUDA_ERROR_STUB_LIBRARY) is compiled for the link only and never shipped.
#
# Usage: scripts/build-gpu.sh [--trainer-only]   (CUDA_COMPUTE_CAP defaults to 90: H100 / H200)
set -euo pipefail
cd "$(dirname "$0")/.."
trainer_only=0
case "${1:-}" in
  --trainer-only) trainer_only=1 ;;
  "") ;;
  *) echo "usage: $0 [--trainer-only]" >&2; exit 2 ;;
esac
cache=${DFER_CACHE:-$HOME/.cache/dfer}
cuda="$cache/cuda-13.0"
wheels=(
  nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-nvrtc==13.0.88
  nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 nvidia-cublas==13.1.0.3 nvidia-curand==10.4.0.35
)

if [[ ! -x "$cuda/bin/nvcc" ]]; then
  echo "assembling a CUDA 13.0 toolkit in $cuda"
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" "${wheels[@]}"
  rm -rf "$cuda.partial" && mkdir -p "$cuda.partial"
  for w in "$tmp"/*.whl; do
    unzip -q -o "$w" 'nvidia/cu13/*' -d "$tmp/unpacked"
  done
  cp -a "$tmp/unpacked/nvidia/cu13/." "$cuda.partial/"
  chmod +x "$cuda.partial"/bin/* "$cuda.partial"/nvvm/bin/* 2>/dev/null || true
  # Unversioned names for the linker (libcublas.so.13 -> libcublas.so, ...).
  for so in "$cuda.partial"/lib/lib*.so.*; do
    base=${so%%.so.*}.so
    [[ -e "$base" ]] || ln -s "$(basename "$so")" "$base"
  done
  [[ -e "$cuda.partial/lib64" ]] || ln -s lib "$cuda.partial/lib64"
  rm -rf "$tmp"
  mv "$cuda.partial" "$cuda"
fi

# The driver stub, built from cudarc's own list of driver functions.
cargo fetch --quiet
cudarc=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -maxdepth 1 -type d -name 'index.crates.io-*' \
  -exec find {} -maxdepth 1 -type d -name 'cudarc-*' \; | sort | tail -n 1)
stubs="$cuda/lib/stubs"
if [[ ! -e "$stubs/libcuda.so" ]]; then
  mkdir -p "$stubs"
  grep -oE 'pub (unsafe )?fn cu[A-Za-z0-9_]+' "$cudarc/src/driver/sys/mod.rs" | awk '{print $NF}' | sort -u |
    awk '{print "int " $1 "(void) { return 34; }"}' > "$stubs/libcuda_stub.c"
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stubs/libcuda.so" "$stubs/libcuda_stub.c"
fi

export CUDA_ROOT="$cuda" CUDA_HOME="$cuda" CUDA_PATH="$cuda"
export PATH="$cuda/bin:$PATH"
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CUDARC_CUDA_VERSION=13000
export LIBRARY_PATH="$cuda/lib:$stubs${LIBRARY_PATH:+:$LIBRARY_PATH}"
export CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-$(nproc)}
features=(--features cuda)
[[ $trainer_only == 1 ]] && features=(--no-default-features --features cuda)
cargo build --release "${features[@]}" --target-dir target/gpu --bin dfer

dist=dist/gpu
rm -rf "$dist" dist/gpu-*.tar.xz && mkdir -p "$dist/lib"
cp target/gpu/release/dfer "$dist/dfer"
strip "$dist/dfer"
# Ship the non-CUDA libraries the binary needs that a bare machine may lack.
ldd "$dist/dfer" | awk '/=> \// {print $3}' | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libgcc_s*|libstdc++*|libpthread*|libdl.so*|librt.so*|ld-linux*) ;;
    libcuda.so*|libcublas*|libcurand*|libcudart*|libnvrtc*) ;;
    *) cp -L "$lib" "$dist/lib/" ;;
  esac
done
pack() { local out=$1; shift; tar -C dist -cf - "$@" | xz -T0 -9 > "$out"; }
if [[ $trainer_only == 1 ]]; then
  pack dist/gpu-trainer.tar.xz gpu
else
  # The assets prep and synth read from DFER_CACHE (scripts/setup.sh --assets installs them here).
  mkdir -p "$dist/cache"
  for f in libonnxruntime.so.1.31.1 centerface.onnx astronaut.png camera.png lfw_subset.npy \
    bpe_simple_vocab_16e6.txt.gz; do
    [[ -f $cache/$f ]] || { echo "build-gpu: $cache/$f is missing: run scripts/setup.sh --assets" >&2; exit 1; }
    cp "$cache/$f" "$dist/cache/"
  done
  pack dist/gpu-lib.tar.xz gpu/lib
  pack dist/gpu-bin.tar.xz gpu/dfer gpu/cache
fi
du -sh "$dist" "$dist/dfer" dist/gpu-*.tar.xz
cuda_lib='$(python3 -c "import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], \"cu13/lib\"))")'
echo "built $dist; unpack each archive with tar -xJf, then run on the GPU machine with"
echo "  DFER_CACHE=$dist/cache LD_LIBRARY_PATH=$dist/lib:$cuda_lib $dist/dfer ..."
