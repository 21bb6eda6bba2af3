#!/usr/bin/env bash
# Builds the trainer-only `dfer` with the CUDA backend on a machine without a GPU, and packs it
# for an NVIDIA machine that has no Rust: dist/gpu/{dfer,lib/} (stripped binary + the HDF5
# libraries it links; CUDA libraries come from the GPU machine's driver and its PyTorch install).
#
# A CUDA 13.0 toolkit (the GPU machines run driver 580, which refuses PTX from 13.1+) is
# assembled from pinned PyPI wheels into $DFER_CACHE/cuda-13.0. The linker needs libcuda.so,
# which no wheel ships: a stub exporting every driver symbol cudarc declares (each returning
# CUDA_ERROR_STUB_LIBRARY) is compiled for the link only and never shipped.
#
# Usage: scripts/build-gpu.sh            (CUDA_COMPUTE_CAP defaults to 90: H100 / H200)
set -euo pipefail
cd "$(dirname "$0")/.."
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
cargo build --release --no-default-features --features cuda --target-dir target/gpu --bin dfer

dist=dist/gpu
rm -rf "$dist" && mkdir -p "$dist/lib"
cp target/gpu/release/dfer "$dist/dfer"
strip "$dist/dfer"
# Ship the non-CUDA libraries the binary needs that a bare machine may lack (HDF5 and friends).
ldd "$dist/dfer" | awk '/=> \// {print $3}' | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libgcc_s*|libstdc++*|libpthread*|libdl.so*|librt.so*|ld-linux*) ;;
    libcuda.so*|libcublas*|libcurand*|libcudart*|libnvrtc*) ;;
    *) cp -L "$lib" "$dist/lib/" ;;
  esac
done
# The PTX of candle's kernels makes the binary large (~125 MB); compressed it travels in < 64 MiB.
tar -C dist -cf - gpu | xz -T0 -6 > dist/gpu.tar.xz
du -sh "$dist" "$dist/dfer" dist/gpu.tar.xz
echo "built $dist and dist/gpu.tar.xz (unpack with: tar -xJf gpu.tar.xz); run on the GPU machine with"
echo "  LD_LIBRARY_PATH=$dist/lib:\$(python3 -c 'import nvidia; print(list(nvidia.__path__)[0] + \"/cu13/lib\")') $dist/dfer ..."
