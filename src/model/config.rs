//! The `[model]` and `[loss]` tables of a training config: which method, the CLIP tower sizes
//! and where their weights come from (the CLIP methods), the head's sizes, and the loss weights.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::clip::{hf_config, vit_b16, TextConfig, VisionConfig};
use super::tokenizer::TokenizerChoice;
use crate::error::UsageError;
use crate::text_enum::text_enum;
use crate::weights::WeightsSource;

text_enum! {
    /// `model.method`: what is trained (on the CLIP towers, or IAL's own network).
    #[derive(Default)]
    pub enum Method("model method") {
        /// OUS (Mai et al., arXiv 2405.18769): face and masked scene streams, scene-guided.
        #[default]
        Ous = "ous",
        /// DFER-CLIP (Zhao & Patras, BMVC 2023): faces only, a temporal transformer and
        /// class-description prompts.
        DferClip = "dfer-clip",
        /// IAL (Li et al., AAAI 2023, arXiv 2208.10335): their ResNet-18-style network with GCA
        /// blocks and dynamic-static fusion, trained from scratch on 112 px faces; no CLIP towers.
        Ial = "ial",
        /// FineCLIPER (Chen et al., ACM MM 2024, arXiv 2407.02157), video only: adapters in the
        /// frozen CLIP towers, positive and negative label prompts (docs/methods.md "FineCLIPER").
        FineClip = "fineclip",
    }
}

impl Method {
    /// Whether the method is built on the CLIP towers (OUS, DFER-CLIP, FineCLIPER; not IAL).
    pub(crate) fn uses_clip(&self) -> bool {
        *self != Method::Ial
    }

    /// Why the method cannot train from a cache of frozen image-tower features, when it cannot.
    pub(crate) fn feature_cache_refusal(&self) -> Option<&'static str> {
        match self {
            Method::Ous | Method::DferClip => None,
            Method::Ial => Some("it has no CLIP towers and trains its whole network on pixels"),
            Method::FineClip => Some("its adapters sit inside the image tower, which therefore runs at every step"),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModelConfig {
    /// `ous` (Mai et al., the default), `dfer-clip` (Zhao & Patras' face-only baseline) or `ial`
    /// (Li et al.'s network, no CLIP towers: the CLIP settings below are refused with it).
    #[serde(default)]
    pub method: Method,
    /// `vit-b16` (the paper's backbone, CLIP ViT-B/16), `tiny` (ours: 32 px, for tests and the
    /// demo) or `config` (the sizes in the `config.json` of `clip_weights`).
    #[serde(default)]
    pub arch: Arch,
    /// Prompt context length (OUS: ours, CoOp uses 4–16; DFER-CLIP: 8 in the paper's scripts).
    #[serde(default = "default_n_ctx")]
    pub n_ctx: usize,
    /// Depth of OUS's Frame Encoder (ours: the paper names the module, not its size) or of
    /// DFER-CLIP's temporal transformer (paper's scripts: 1).
    #[serde(default = "one")]
    pub frame_encoder_layers: usize,
    /// Heads of OUS's Frame Encoder and Type Fusion Encoder (ours) or of DFER-CLIP's temporal
    /// transformer (paper: 8).
    #[serde(default = "default_heads")]
    pub heads: usize,
    /// Early image-tower blocks read by the Polarity Encoder (paper: the first four).
    #[serde(default = "default_polarity_blocks")]
    pub polarity_blocks: usize,
    /// Cross-type attention blocks in the Type Fusion Encoder (ours).
    #[serde(default = "default_fusion_blocks")]
    pub fusion_blocks: usize,
    /// Learnable queries of the Type Fusion Encoder, N(0, 1) initialised (paper: Gaussian; count ours).
    #[serde(default = "default_fusion_queries")]
    pub fusion_queries: usize,
    /// Width of the `L_sim` projections (ours).
    #[serde(default = "default_sim_dim")]
    pub sim_dim: usize,
    /// OUS's scene stream (off = face-only ablation: no scene frames, `L_sim`, `L_pol`).
    /// DFER-CLIP reads faces only, whatever this says.
    #[serde(default = "yes")]
    pub use_scene: bool,
    /// The Polarity Encoder and `L_pol` (needs the scene stream).
    #[serde(default = "yes")]
    pub use_polarity: bool,
    /// `auto` (the weights' `tokenizer.json`, else CLIP's BPE; the word vocabulary without
    /// weights), `clip`, `words` (random-weight towers only) or the path of a `tokenizer.json`.
    #[serde(default = "auto")]
    pub tokenizer: TokenizerChoice,
    /// CLIP weights with Hugging Face `openai/clip-vit-base-patch16` names: a `model.safetensors`,
    /// a folder holding one, or `hf:owner/name[@revision]` (absent: random initialisation).
    #[serde(default)]
    pub clip_weights: Option<WeightsSource>,
    /// A light channel gate on the face frames' pooled features before temporal modelling
    /// (`frame_gate.rs`), for either CLIP method (ours: off): modelled on Li et al.'s GCA, which
    /// is not this (their network is `method = "ial"`).
    #[serde(default)]
    pub frame_gate: bool,
    /// The key this gate had before it was renamed (`gca`): read only to be refused by name
    /// ([`ModelConfig::renamed_keys`]), never written.
    #[serde(default, rename = "gca", skip_serializing)]
    pub old_gca: Option<toml::Value>,
    /// DFER-CLIP's class descriptions: a TOML file of `label = "description"` (absent: the
    /// built-in file of `data-manifests/descriptions/` that describes every label).
    #[serde(default)]
    pub descriptions: Option<PathBuf>,
    /// How pixels reach the image tower: `clip` (CLIP's mean / std, ours) or `unit` (divided by
    /// 255 only, as DFER-CLIP's loader does).
    #[serde(default)]
    pub normalise: Normalise,
    /// FineCLIPER's adapters: the bottleneck width as a share of the tower's width (ours, as
    /// AIM's 0.25; the paper does not give it). Only `fineclip` reads it.
    #[serde(default = "quarter")]
    pub adapter_ratio: f64,
    /// FineCLIPER's scale s of the adapter beside each MLP (paper: 0.5, best of 0.3 / 0.5 / 0.7).
    #[serde(default = "half")]
    pub adapter_scale: f64,
    /// FineCLIPER's description stream: a JSON Lines file of one description per clip
    /// (`video_descriptions.rs`); absent, the stream is off (the paper's "video only" row).
    #[serde(default)]
    pub video_descriptions: Option<PathBuf>,
    /// FineCLIPER's landmark stream, our substitute for the paper's landmark and parsing inputs:
    /// the face frames with the detector's five points drawn on (`train/points.rs`), through the
    /// image tower with adapters of their own. Needs dfer's crops (`prep.face_crops = "detect"`).
    #[serde(default)]
    pub landmarks: bool,
    /// Seed of the parameter initialisation.
    #[serde(default)]
    pub seed: u64,
}

fn quarter() -> f64 {
    0.25
}

text_enum! {
    /// `model.normalise`: the pixel values the image tower reads.
    #[derive(Default)]
    pub enum Normalise("normalise") {
        /// `(v / 255 − mean) / std` with CLIP's mean and std.
        #[default]
        Clip = "clip",
        /// `v / 255`.
        Unit = "unit",
    }
}

fn auto() -> TokenizerChoice {
    TokenizerChoice::Auto
}

text_enum! {
    /// `model.arch`: the sizes of the CLIP towers.
    #[derive(Default)]
    pub enum Arch("model arch") {
        /// CLIP ViT-B/16.
        #[default]
        VitB16 = "vit-b16",
        /// Small towers for tests.
        Tiny = "tiny",
        /// The sizes in the weights' own `config.json`.
        Config = "config",
    }
}
fn default_n_ctx() -> usize {
    8
}
fn one() -> usize {
    1
}
fn default_heads() -> usize {
    8
}
fn default_polarity_blocks() -> usize {
    4
}
fn default_fusion_blocks() -> usize {
    2
}
fn default_fusion_queries() -> usize {
    4
}
fn default_sim_dim() -> usize {
    256
}
fn yes() -> bool {
    true
}

impl Default for ModelConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

impl ModelConfig {
    /// The CLIP tower sizes and the joint embedding width of `arch`; `config` is the Hugging Face
    /// `config.json` that came with the weights, which must agree with a named arch.
    pub(crate) fn towers(&self, config: Option<&Path>) -> Result<(VisionConfig, TextConfig, usize)> {
        let named = match self.arch {
            Arch::VitB16 => vit_b16(),
            Arch::Tiny => (
                VisionConfig { image_size: 32, patch_size: 8, width: 48, layers: 4, heads: 4, mlp: 96 },
                TextConfig { vocab_size: 64, context_length: 16, width: 32, layers: 2, heads: 4, mlp: 64 },
                32,
            ),
            Arch::Config => {
                let Some(path) = config else {
                    bail!(UsageError::new(
                        "model.arch = \"config\" takes the tower sizes from the config.json of model.clip_weights, \
                         and there is none: give clip_weights as a Hugging Face folder or hf:owner/name"
                    ));
                };
                return hf_config(path);
            }
        };
        if let Some(path) = config {
            if hf_config(path)? != named {
                bail!(UsageError::new(format!(
                    "{}: these weights are not model.arch = \"{}\" (the towers differ); set model.arch = \"config\" \
                     to take their sizes from this file",
                    path.display(),
                    self.arch.as_str()
                )));
            }
        }
        Ok(named)
    }

    /// The CLIP settings (towers, prompts, the CLIP methods' heads) that differ from their
    /// defaults, by key: a method without CLIP towers refuses them.
    pub(crate) fn clip_settings(&self) -> Vec<&'static str> {
        let d = ModelConfig::default();
        [
            ("arch", self.arch != d.arch),
            ("n_ctx", self.n_ctx != d.n_ctx),
            ("frame_encoder_layers", self.frame_encoder_layers != d.frame_encoder_layers),
            ("heads", self.heads != d.heads),
            ("polarity_blocks", self.polarity_blocks != d.polarity_blocks),
            ("fusion_blocks", self.fusion_blocks != d.fusion_blocks),
            ("fusion_queries", self.fusion_queries != d.fusion_queries),
            ("sim_dim", self.sim_dim != d.sim_dim),
            ("use_scene", self.use_scene != d.use_scene),
            ("use_polarity", self.use_polarity != d.use_polarity),
            ("tokenizer", self.tokenizer != d.tokenizer),
            ("clip_weights", self.clip_weights.is_some()),
            ("frame_gate", self.frame_gate),
            ("descriptions", self.descriptions.is_some()),
            ("adapter_ratio", self.adapter_ratio != d.adapter_ratio),
            ("adapter_scale", self.adapter_scale != d.adapter_scale),
            ("video_descriptions", self.video_descriptions.is_some()),
            ("landmarks", self.landmarks),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect()
    }

    /// Keys renamed since they were written: a refusal naming the new key, when one is set.
    pub(crate) fn renamed_keys(&self) -> Option<String> {
        self.old_gca.as_ref().map(|_| {
            "model.gca is now model.frame_gate: it is a light gate on the CLIP towers' pooled frame features, \
             not Li et al.'s global convolution-attention block, which model.method = \"ial\" builds"
                .to_string()
        })
    }

    /// Whether the model reads scene frames (OUS with its scene stream on).
    pub(crate) fn uses_scene(&self) -> bool {
        self.method == Method::Ous && self.use_scene
    }

    /// Early image-tower blocks the model reads from the scene frames (OUS's Polarity Encoder).
    pub(crate) fn early_blocks(&self) -> usize {
        if self.uses_scene() && self.use_polarity {
            self.polarity_blocks
        } else {
            0
        }
    }
}

/// Loss weights (`λ`); defaults are ours, the paper does not state them in its summary.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct LossWeights {
    #[serde(default = "half")]
    pub sim: f64,
    #[serde(default = "half")]
    pub pol: f64,
    #[serde(default = "half")]
    pub global: f64,
    /// Weight of the intensity-aware loss on the final logits ([`super::ial`]; Li et al.'s
    /// code uses 0.1). 0, the default (ours), leaves it out.
    #[serde(default)]
    pub ial: f64,
    /// IAL's auxiliary classifiers on the GCA blocks of layers 2 and 3: the weights of their
    /// cross-entropies (Li et al.'s code: 0.05 and 0; the second is computed, at weight 0, as
    /// theirs is). Only `model.method = "ial"` has them.
    #[serde(default = "gca_aux")]
    pub gca_aux: [f64; 2],
}

/// Li et al.'s weights of the auxiliary losses of layers 2 and 3.
pub(crate) const GCA_AUX: [f64; 2] = [0.05, 0.0];

fn gca_aux() -> [f64; 2] {
    GCA_AUX
}

fn half() -> f64 {
    0.5
}

impl Default for LossWeights {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}
