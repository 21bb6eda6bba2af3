//! The scene-guided OUS model (Mai et al., arXiv 2405.18769), as README "dfer train" describes it.
//! The paper's full text is not public: every setting below says whether it is the paper's
//! (from its architecture figure and summary) or our choice.
//!
//! Face frames and masked scene frames go through one shared CLIP image tower. Faces: LSTM →
//! Frame Encoder (transformer with a class token). Scenes: LSTM → Frames Mean. `L_sim` pulls conv +
//! FC projections of both together; the Polarity Encoder reads the first blocks' hidden states of
//! the scene frames (`L_pol`); the Type Fusion Encoder's learnable Gaussian queries (shared by
//! all its blocks) attend to face tokens, scene token and polarity feature; the fused feature is
//! matched against CoOp prompts through the CLIP text tower (`L_cont`), plus `L_global`.

use std::path::Path;

use anyhow::{bail, ensure, Result};
use candle_core::{DType, Module, Tensor, D};
use candle_nn::loss::cross_entropy;
use candle_nn::ops::softmax;
use serde::{Deserialize, Serialize};

use super::clip::{
    hf_config, normalize, vit_b16, ClipAttention, ClipEncoderLayer, TextConfig, TextTower, VisionConfig, VisionOutput,
    VisionTower,
};
use super::ial::intensity_aware_loss;
use super::layers::{quick_gelu, LayerNorm, Linear, Lstm, TemporalConv};
use super::params::{Group, ParamStore, Scope};
use super::prompts::{PromptLearner, PromptTokens};
use super::tokenizer::TokenizerChoice;
use crate::error::UsageError;
use crate::text_enum::text_enum;
use crate::weights::WeightsSource;

/// Images per pass of the frozen image tower (ours): each image is independent, and a batch of
/// 32 clips × 16 frames in one pass made ~2 GB attention tensors per layer whose allocation cost
/// more than their arithmetic (measured: README "Training (CPU)").
const FROZEN_CHUNK: usize = 64;

/// The frozen tower over `images` `FROZEN_CHUNK` at a time (no graph is built, so nothing is lost).
fn forward_in_chunks(tower: &VisionTower, images: &Tensor, early: usize) -> Result<VisionOutput> {
    let n = images.dim(0)?;
    if n <= FROZEN_CHUNK {
        return tower.forward(images, early);
    }
    let mut embeds = Vec::new();
    let mut early_parts = Vec::new();
    for start in (0..n).step_by(FROZEN_CHUNK) {
        let out = tower.forward(&images.narrow(0, start, FROZEN_CHUNK.min(n - start))?, early)?;
        embeds.push(out.embeds);
        early_parts.extend(out.early);
    }
    let early = if early_parts.is_empty() { None } else { Some(Tensor::cat(&early_parts, 0)?) };
    Ok(VisionOutput { embeds: Tensor::cat(&embeds, 0)?, early })
}

/// Number of polarity classes (positive, neutral, negative), as in the dataset descriptions.
pub(crate) const POLARITIES: usize = 3;
/// Names of the CLIP tower parameters start with this (the rest is the Hugging Face name).
pub(crate) const CLIP_PREFIX: &str = "clip";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct OusConfig {
    /// `vit-b16` (the paper's backbone, CLIP ViT-B/16), `tiny` (ours: 32 px, for tests and the
    /// demo) or `config` (the sizes in the `config.json` of `clip_weights`).
    #[serde(default)]
    pub arch: Arch,
    /// Prompt context length (ours; CoOp uses 4–16).
    #[serde(default = "default_n_ctx")]
    pub n_ctx: usize,
    /// Frame Encoder depth (ours: the paper names the module, not its size).
    #[serde(default = "one")]
    pub frame_encoder_layers: usize,
    /// Heads of the Frame Encoder and the Type Fusion Encoder (ours).
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
    /// The scene stream (off = face-only ablation: no scene frames, `L_sim`, `L_pol`).
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
    /// Seed of the parameter initialisation.
    #[serde(default)]
    pub seed: u64,
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

impl Default for OusConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

impl OusConfig {
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
}

/// Per-frame image-tower outputs of a batch: what the feature cache stores.
pub(crate) struct Features {
    /// `V_f [B, T, E]`.
    pub face: Tensor,
    /// `V_s [B, T, E]` (absent in the face-only ablation).
    pub scene: Option<Tensor>,
    /// Token means of the first `polarity_blocks` blocks on the scene frames, averaged over frames `[B, P, W]`.
    pub early: Option<Tensor>,
}

/// Head outputs for a batch.
pub(crate) struct Outputs {
    /// Scaled cosine similarities to the class prompts `[B, K]` (the prediction).
    pub logits: Tensor,
    pub polarity_logits: Option<Tensor>,
    pub global_logits: Tensor,
    /// `L_sim` for the batch (scalar), when the scene stream is on.
    pub sim: Option<Tensor>,
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
    /// code uses 0.1). 0, the default (ours), leaves it out, and is not written into saved
    /// configs, so their hashes stay as they were.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ial: f64,
}

fn half() -> f64 {
    0.5
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl Default for LossWeights {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

/// Total loss and its parts (scalar tensors, read back once per step by the runner).
pub(crate) struct Losses {
    pub total: Tensor,
    pub parts: Vec<(&'static str, Tensor)>,
}

impl Losses {
    /// Every loss times `w` (a part's share of its batch, under gradient accumulation).
    pub(crate) fn scaled(self, w: f64) -> Result<Losses> {
        let parts = self.parts.into_iter().map(|(n, t)| Ok((n, (t * w)?))).collect::<Result<_>>()?;
        Ok(Losses { total: (self.total * w)?, parts })
    }

    /// The same values without their graph, so a part's activations are freed after its
    /// backward (the logged losses would otherwise hold the whole graph alive).
    pub(crate) fn detached(self) -> Losses {
        Losses { total: self.total.detach(), parts: self.parts.into_iter().map(|(n, t)| (n, t.detach())).collect() }
    }

    /// The sum of two parts' losses (same loss terms in the same order).
    pub(crate) fn plus(self, other: &Losses) -> Result<Losses> {
        let parts = self
            .parts
            .into_iter()
            .zip(&other.parts)
            .map(|((n, a), (_, b))| Ok((n, (a + b)?)))
            .collect::<Result<_>>()?;
        Ok(Losses { total: (self.total + &other.total)?, parts })
    }
}

pub(crate) struct Ous {
    cfg: OusConfig,
    frames: usize,
    vision: VisionTower,
    /// The same tower on untracked weights, for the frozen recipe.
    vision_frozen: VisionTower,
    /// The text tower is always frozen (CoOp): untracked weights.
    text: TextTower,
    prompts: PromptLearner,
    face_lstm: Lstm,
    scene_lstm: Lstm,
    frame_cls: Tensor,
    frame_pos: Tensor,
    /// CLIP encoder layers (`layer_norm1`, `self_attn`, `layer_norm2`, `mlp`).
    frame_encoder: Vec<ClipEncoderLayer>,
    sim_conv: TemporalConv,
    sim_face: Linear,
    sim_scene: Linear,
    pol_proj: Linear,
    pol_head: Linear,
    queries: Tensor,
    fusion: Vec<TypeFusionBlock>,
    fusion_ln: LayerNorm,
    video_proj: Linear,
    global_head: Linear,
}

impl Ous {
    /// Builds the model with seeded random weights and CLIP towers of the given sizes; `frames` is T.
    pub(crate) fn new(
        store: &mut ParamStore,
        cfg: &OusConfig,
        (vcfg, tcfg, e): &(VisionConfig, TextConfig, usize),
        frames: usize,
        tokens: PromptTokens,
    ) -> Result<Self> {
        let e = *e;
        ensure!(cfg.use_scene || !cfg.use_polarity, "use_polarity needs use_scene");
        ensure!(cfg.polarity_blocks <= vcfg.layers, "polarity_blocks exceeds the image tower's depth");
        ensure!(e % cfg.heads == 0, "embedding width {e} is not a multiple of heads = {}", cfg.heads);
        let vision = VisionTower::new(store, CLIP_PREFIX, vcfg, e)?;
        let text = TextTower::new(store, CLIP_PREFIX, tcfg, e)?.detached()?;
        let vision_frozen = vision.detached(DType::F32)?;
        let prompts = PromptLearner::new(store, tokens, tcfg.width)?;
        let k = prompts.classes();
        let mut s = store.scope("ous", Group::Head);
        let std = (e as f64).powf(-0.5);
        let face_lstm = Lstm::new(&mut s, "face_lstm", e, e)?;
        let scene_lstm = Lstm::new(&mut s, "scene_lstm", e, e)?;
        let (frame_cls, frame_pos, frame_encoder) = {
            let mut f = s.sub("frame_encoder");
            let cls = f.normal("cls", &[e], 0.02)?;
            let pos = f.normal("pos", &[frames + 1, e], 0.02)?;
            let mut layers = f.sub("layers");
            let blocks = (0..cfg.frame_encoder_layers)
                .map(|i| ClipEncoderLayer::new(&mut layers, &i.to_string(), e, cfg.heads, 4 * e))
                .collect::<Result<Vec<_>>>()?;
            (cls, pos, blocks)
        };
        let mut sim = s.sub("similarity");
        let sim_conv = TemporalConv::new(&mut sim, "conv", e, e, 3)?;
        let sim_face = Linear::new(&mut sim, "face_fc", e, cfg.sim_dim, true, std)?;
        let sim_scene = Linear::new(&mut sim, "scene_fc", e, cfg.sim_dim, true, std)?;
        let mut pol = s.sub("polarity");
        let pin = cfg.polarity_blocks * vcfg.width;
        let pol_proj = Linear::new(&mut pol, "proj", pin, e, true, (pin as f64).powf(-0.5))?;
        let pol_head = Linear::new(&mut pol, "head", e, POLARITIES, true, std)?;
        let mut fu = s.sub("type_fusion");
        let queries = fu.normal("queries", &[cfg.fusion_queries, e], 1.0)?;
        let fusion = {
            let mut b = fu.sub("blocks");
            (0..cfg.fusion_blocks)
                .map(|i| TypeFusionBlock::new(&mut b, &i.to_string(), e, cfg.heads))
                .collect::<Result<_>>()?
        };
        let fusion_ln = LayerNorm::new(&mut fu, "ln", e, 1e-5)?;
        let video_proj = Linear::new(&mut fu, "proj", e, e, true, std)?;
        let gin = e + if cfg.use_polarity { POLARITIES } else { 0 };
        let global_head = Linear::new(&mut s, "global_head", gin, k, true, (gin as f64).powf(-0.5))?;
        Ok(Self {
            cfg: cfg.clone(),
            frames,
            vision,
            vision_frozen,
            text,
            prompts,
            face_lstm,
            scene_lstm,
            frame_cls,
            frame_pos,
            frame_encoder,
            sim_conv,
            sim_face,
            sim_scene,
            pol_proj,
            pol_head,
            queries,
            fusion,
            fusion_ln,
            video_proj,
            global_head,
        })
    }

    pub(crate) fn config(&self) -> &OusConfig {
        &self.cfg
    }

    /// Holds the frozen image tower's weights in `dtype`: the tower's compute dtype when it is
    /// not trained (cast once, after the weights are loaded), f32 when it is (the copy then
    /// shares the trained weights' storage and follows every update).
    pub(crate) fn set_frozen_tower_dtype(&mut self, dtype: DType) -> Result<()> {
        self.vision_frozen = self.vision.detached(dtype)?;
        Ok(())
    }

    /// The dtype the frozen image tower's weights are held in.
    #[cfg(test)]
    pub(crate) fn frozen_tower_dtype(&self) -> DType {
        self.vision_frozen.weights_dtype()
    }

    /// Early blocks the polarity encoder needs from the image tower (0 when it is off).
    pub(crate) fn early_blocks(&self) -> usize {
        if self.cfg.use_polarity {
            self.cfg.polarity_blocks
        } else {
            0
        }
    }

    /// Runs the image tower over `face [B, T, 3, S, S]` and `scene` (same shape). `dtype` is the
    /// compute type of the tower (bf16 on CUDA); outputs are f32. `train_image` = false runs the
    /// frozen tower, which builds no graph.
    pub(crate) fn encode(
        &self,
        face: &Tensor,
        scene: Option<&Tensor>,
        dtype: DType,
        train_image: bool,
    ) -> Result<Features> {
        let tower = if train_image { &self.vision } else { &self.vision_frozen };
        let (b, t, c, h, w) = face.dims5()?;
        let run = |images: &Tensor, early: usize| -> Result<VisionOutput> {
            let images = images.reshape((b * t, c, h, w))?.to_dtype(dtype)?;
            if train_image {
                tower.forward(&images, early)
            } else {
                forward_in_chunks(tower, &images, early)
            }
        };
        let f = run(face, 0)?.embeds.to_dtype(DType::F32)?.reshape((b, t, ()))?;
        let (scene, early) = match scene {
            Some(s) if self.cfg.use_scene => {
                let out = run(s, self.early_blocks())?;
                let early = match out.early {
                    Some(x) => Some(x.to_dtype(DType::F32)?.reshape((b, t, self.cfg.polarity_blocks, ()))?.mean(1)?),
                    None => None,
                };
                (Some(out.embeds.to_dtype(DType::F32)?.reshape((b, t, ()))?), early)
            }
            _ => (None, None),
        };
        Ok(Features { face: f, scene, early })
    }

    /// Class text features through the learnable prompts `[K, E]`.
    pub(crate) fn class_features(&self) -> Result<Tensor> {
        self.prompts.class_features(&self.text)
    }

    /// Everything after the image tower.
    pub(crate) fn head(&self, x: &Features, text: &Tensor) -> Result<Outputs> {
        let t = x.face.dim(1)?;
        ensure!(t == self.frames, "model was built for T = {}, batch has {t} frames", self.frames);
        let tokens = self.face_stream(&x.face)?;
        let mut memory = vec![tokens.clone()];
        let mut sim = None;
        let mut polarity = None;
        if let (true, Some(scene)) = (self.cfg.use_scene, &x.scene) {
            let scene_token = self.scene_stream(scene)?;
            memory.push(scene_token.unsqueeze(1)?);
            sim = Some(self.similarity(&tokens, &scene_token)?);
            if let (true, Some(early)) = (self.cfg.use_polarity, &x.early) {
                let (feature, logits) = self.polarity(early)?;
                memory.push(feature.unsqueeze(1)?);
                polarity = Some(logits);
            }
        }
        let video = self.type_fusion(&Tensor::cat(&memory, 1)?)?;
        let (logits, global_logits) = self.classify(&video, text, polarity.as_ref())?;
        Ok(Outputs { logits, polarity_logits: polarity, global_logits, sim })
    }

    /// Face stream: LSTM, then the Frame Encoder over `[CLS; frames]` with position embeddings →
    /// tokens `[B, 1 + T, E]`.
    pub(crate) fn face_stream(&self, face: &Tensor) -> Result<Tensor> {
        self.frame_encoder(&self.face_lstm(face)?)
    }

    /// The face stream's LSTM over `V_f [B, T, E]`.
    pub(crate) fn face_lstm(&self, face: &Tensor) -> Result<Tensor> {
        self.face_lstm.forward(face)
    }

    /// The Frame Encoder over `[CLS; face]` with position embeddings → tokens `[B, 1 + T, E]`.
    pub(crate) fn frame_encoder(&self, face: &Tensor) -> Result<Tensor> {
        let (b, _, e) = face.dims3()?;
        let cls = self.frame_cls.reshape((1, 1, e))?.repeat((b, 1, 1))?;
        let mut tokens = Tensor::cat(&[&cls, face], 1)?.broadcast_add(&self.frame_pos)?;
        for block in &self.frame_encoder {
            tokens = block.forward(&tokens, None)?;
        }
        Ok(tokens)
    }

    /// Scene stream: LSTM, then Frames Mean → `[B, E]`.
    pub(crate) fn scene_stream(&self, scene: &Tensor) -> Result<Tensor> {
        Ok(self.scene_lstm.forward(scene)?.mean(1)?)
    }

    /// `L_sim`: temporal conv + FC on the face tokens, FC on the scene token, cosine pulled to 1.
    pub(crate) fn similarity(&self, tokens: &Tensor, scene_token: &Tensor) -> Result<Tensor> {
        let t = tokens.dim(1)? - 1;
        let conv = self.sim_conv.forward(&tokens.narrow(1, 1, t)?)?.mean(1)?;
        let zf = normalize(&self.sim_face.forward(&conv)?)?;
        let zs = normalize(&self.sim_scene.forward(scene_token)?)?;
        Ok((1.0 - (zf * zs)?.sum(1)?.mean_all()?)?)
    }

    /// Polarity Encoder on the early-block means `[B, P, W]` → (feature `[B, E]`, logits `[B, 3]`).
    pub(crate) fn polarity(&self, early: &Tensor) -> Result<(Tensor, Tensor)> {
        let feature = quick_gelu(&self.pol_proj.forward(&early.flatten_from(1)?)?)?;
        let logits = self.pol_head.forward(&feature)?;
        Ok((feature, logits))
    }

    /// Type Fusion Encoder: the same learnable queries enter every block over `memory`; outputs
    /// are summed, averaged over queries and projected → video feature `[B, E]`.
    pub(crate) fn type_fusion(&self, memory: &Tensor) -> Result<Tensor> {
        let b = memory.dim(0)?;
        let q = self.queries.unsqueeze(0)?.repeat((b, 1, 1))?;
        let mut fused = self.fusion[0].forward(&q, memory)?;
        for block in &self.fusion[1..] {
            fused = (fused + block.forward(&q, memory)?)?;
        }
        Ok(self.video_proj.forward(&self.fusion_ln.forward(&fused.mean(1)?)?)?)
    }

    /// Scaled cosine similarities of the video feature to the class features, and `L_global`'s
    /// logits (its classifier is conditioned on the predicted polarity distribution: ours).
    pub(crate) fn classify(
        &self,
        video: &Tensor,
        text: &Tensor,
        polarity: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        let scale = self.text.logit_scale.exp()?;
        let logits = normalize(video)?.matmul(&normalize(text)?.t()?)?.broadcast_mul(&scale)?;
        let global_in = match polarity {
            Some(p) => Tensor::cat(&[video, &softmax(p, D::Minus1)?], 1)?,
            None => video.clone(),
        };
        Ok((logits, self.global_head.forward(&global_in)?))
    }

    /// `L_cont + λ_sim L_sim + λ_pol L_pol + λ_glob L_global` (`+ λ_ial L_IAL` when asked).
    pub(crate) fn losses(&self, out: &Outputs, labels: &Tensor, polarity: &Tensor, w: &LossWeights) -> Result<Losses> {
        let cont = cross_entropy(&out.logits, labels)?;
        let global = cross_entropy(&out.global_logits, labels)?;
        let mut total = (&cont + (&global * w.global)?)?;
        let mut parts = vec![("cont", cont), ("global", global)];
        if let Some(sim) = &out.sim {
            total = (total + (sim * w.sim)?)?;
            parts.push(("sim", sim.clone()));
        }
        if let Some(p) = &out.polarity_logits {
            let pol = cross_entropy(p, polarity)?;
            total = (total + (&pol * w.pol)?)?;
            parts.push(("pol", pol));
        }
        if w.ial > 0.0 {
            let ial = intensity_aware_loss(&out.logits, labels)?;
            total = (total + (&ial * w.ial)?)?;
            parts.push(("ial", ial));
        }
        Ok(Losses { total, parts })
    }
}

/// `type_fusion.blocks.N`: the learnable queries attend to a memory (`cross_attn`, CLIP's
/// attention used as cross-attention), then a feed-forward layer.
struct TypeFusionBlock {
    ln_q: LayerNorm,
    ln_kv: LayerNorm,
    cross_attn: ClipAttention,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl TypeFusionBlock {
    fn new(s: &mut Scope, name: &str, dim: usize, heads: usize) -> Result<Self> {
        let mut s = s.sub(name);
        let std = (dim as f64).powf(-0.5);
        Ok(Self {
            ln_q: LayerNorm::new(&mut s, "ln_q", dim, 1e-5)?,
            ln_kv: LayerNorm::new(&mut s, "ln_kv", dim, 1e-5)?,
            cross_attn: ClipAttention::new(&mut s, "cross_attn", dim, heads)?,
            ln2: LayerNorm::new(&mut s, "ln2", dim, 1e-5)?,
            fc1: Linear::new(&mut s, "fc1", dim, 4 * dim, true, std)?,
            fc2: Linear::new(&mut s, "fc2", 4 * dim, dim, true, std / 2.0)?,
        })
    }

    fn forward(&self, queries: &Tensor, memory: &Tensor) -> Result<Tensor> {
        let attended = self.cross_attn.forward(&self.ln_q.forward(queries)?, &self.ln_kv.forward(memory)?, None)?;
        let x = (queries + attended)?;
        let h = self.fc2.forward(&quick_gelu(&self.fc1.forward(&self.ln2.forward(&x)?)?)?)?;
        Ok((x + h)?)
    }
}
