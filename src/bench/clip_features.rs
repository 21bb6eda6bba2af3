//! CLIP features for a numeric parity check against Hugging Face `transformers`
//! (`bench/clip_parity.py`): the towers as dfer builds and loads them, on given inputs.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{DType, Tensor};

use crate::model::clip::{hf_config, vit_b16, TextTower, VisionTower};
use crate::model::params::ParamStore;
use crate::model::ComputeDevice;
use crate::text_enum::text_enum;
use crate::weights::WeightsSource;

text_enum! {
    /// The dtype the image tower computes in for `clip-features` (the text tower stays f32).
    pub enum TowerDtype("tower dtype") {
        F32 = "f32",
        /// What training uses on CUDA.
        Bf16 = "bf16",
        /// Half precision candle's CPU matmul has (it has no bf16), to rehearse the check on CPU.
        F16 = "f16",
    }
}

impl TowerDtype {
    fn dtype(self) -> DType {
        match self {
            TowerDtype::F32 => DType::F32,
            TowerDtype::Bf16 => DType::BF16,
            TowerDtype::F16 => DType::F16,
        }
    }
}

/// What `clip-features` computes on, and how.
pub(crate) struct FeatureRun<'a> {
    pub weights: &'a WeightsSource,
    /// safetensors with `pixel_values [N, 3, S, S]` and `input_ids [M, L]`.
    pub inputs: &'a Path,
    pub device: &'a ComputeDevice,
    pub eot_id: u32,
    pub dtype: TowerDtype,
}

/// Runs CLIP towers loaded from `r.weights` (Hugging Face names; sizes from its `config.json`,
/// else ViT-B/16) on `r.inputs` and writes `image_embeds` and `text_embeds` (unnormalised, as
/// `get_image_features` / `get_text_features`) to `out`. The image tower runs as the frozen
/// tower does in training: weights cast once to `r.dtype`, softmax and LayerNorm statistics in
/// f32.
pub(crate) fn clip_features(r: &FeatureRun, out: &Path) -> Result<()> {
    let result = clip_feature_tensors(r)?;
    candle_core::safetensors::save(&result, out).with_context(|| format!("writing {}", out.display()))
}

fn clip_feature_tensors(r: &FeatureRun) -> Result<HashMap<String, Tensor>> {
    let (weights, inputs, eot_id) = (r.weights, r.inputs, r.eot_id);
    let (device, _) = r.device.open()?;
    let files = crate::weights::resolve(weights)?;
    let (v, t, e) = match &files.config {
        Some(c) => hf_config(c)?,
        None => vit_b16(),
    };
    let mut store = ParamStore::new(&device, 0);
    let vision = VisionTower::new(&mut store, "", &v, e)?;
    let text = TextTower::new(&mut store, "", &t, e)?;
    store.load_prefixed(&files.weights, "")?;
    let io = candle_core::safetensors::load(inputs, &device)
        .with_context(|| format!("{}: not a readable safetensors file", inputs.display()))?;
    let get = |n: &str| io.get(n).with_context(|| format!("{}: has no tensor {n}", inputs.display()));
    let pixels = get("pixel_values")?.to_dtype(DType::F32)?;
    let ids: Vec<Vec<u32>> = get("input_ids")?.to_dtype(DType::U32)?.to_vec2()?;
    let dtype = r.dtype.dtype();
    let image = vision.detached(dtype)?.forward(&pixels.to_dtype(dtype)?, 0)?.embeds.to_dtype(DType::F32)?;
    let text = text.forward_ids(&ids, eot_id)?;
    Ok([("image_embeds".to_string(), image), ("text_embeds".to_string(), text)].into_iter().collect())
}
