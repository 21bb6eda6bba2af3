//! The CLIP image and text towers (Radford et al. 2021), with the parameter names of the
//! Hugging Face `openai/clip-vit-base-patch16` safetensors so real weights load by name.
//! Follows `transformers`' `CLIPVisionTransformer` / `CLIPTextTransformer`: pre-norm blocks,
//! quick-GELU, pooled image feature = `post_layernorm(CLS)`, pooled text feature = the
//! end-of-text token, both through a bias-free projection. The Rust types and fields carry the
//! checkpoint's names: `encoder.layers.N` is a [`ClipEncoderLayer`] with `layer_norm1`,
//! `self_attn` ([`ClipAttention`]: `q_proj`, `k_proj`, `v_proj`, `out_proj`), `layer_norm2` and
//! `mlp` (`ClipMlp`: `fc1`, `fc2`).

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use candle_core::{DType, Module, Tensor, D};
use serde::{Deserialize, Serialize};

use super::adapter::{BlockAdapter, TowerAdapters};
use super::layers::{quick_gelu, softmax_last, Bias, LayerNorm, Linear};
use super::params::{Group, ParamStore, Scope};
use crate::error::UsageError;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct VisionConfig {
    pub image_size: usize,
    pub patch_size: usize,
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub mlp: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct TextConfig {
    pub vocab_size: usize,
    pub context_length: usize,
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub mlp: usize,
}

/// ViT-B/16 as in `openai/clip-vit-base-patch16`'s `config.json`.
pub(crate) fn vit_b16() -> (VisionConfig, TextConfig, usize) {
    (
        VisionConfig { image_size: 224, patch_size: 16, width: 768, layers: 12, heads: 12, mlp: 3072 },
        TextConfig { vocab_size: 49408, context_length: 77, width: 512, layers: 12, heads: 8, mlp: 2048 },
        512,
    )
}

/// CLIP's text context: the position embedding of every released CLIP has 77 rows.
pub(crate) const MAX_CONTEXT: usize = 77;

/// Tower sizes and joint width from a Hugging Face CLIP `config.json` (missing keys take
/// `transformers`' defaults, as `CLIPConfig` does). Refuses what these towers cannot run.
pub(crate) fn hf_config(path: &Path) -> Result<(VisionConfig, TextConfig, usize)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let c: HfClip = serde_json::from_str(&text)
        .map_err(|e| UsageError::new(format!("{}: not a CLIP config.json: {e}", path.display())))?;
    let (t, v) = (&c.text_config, &c.vision_config);
    for (tower, act) in [("text", &t.hidden_act), ("vision", &v.hidden_act)] {
        if act != "quick_gelu" {
            bail!(UsageError::new(format!(
                "{}: {tower}_config.hidden_act is {act:?}; dfer's CLIP towers use quick_gelu",
                path.display()
            )));
        }
    }
    if t.max_position_embeddings > MAX_CONTEXT {
        bail!(UsageError::new(format!(
            "{}: text_config.max_position_embeddings is {}, over CLIP's context length of {MAX_CONTEXT}",
            path.display(),
            t.max_position_embeddings
        )));
    }
    Ok((
        VisionConfig {
            image_size: v.image_size,
            patch_size: v.patch_size,
            width: v.hidden_size,
            layers: v.num_hidden_layers,
            heads: v.num_attention_heads,
            mlp: v.intermediate_size,
        },
        TextConfig {
            vocab_size: t.vocab_size,
            context_length: t.max_position_embeddings,
            width: t.hidden_size,
            layers: t.num_hidden_layers,
            heads: t.num_attention_heads,
            mlp: t.intermediate_size,
        },
        c.projection_dim,
    ))
}

/// The parts of `CLIPConfig` that size the towers.
#[derive(Deserialize)]
struct HfClip {
    #[serde(default)]
    text_config: HfText,
    #[serde(default)]
    vision_config: HfVision,
    #[serde(default = "default_projection")]
    projection_dim: usize,
}

fn default_projection() -> usize {
    512
}

#[derive(Deserialize)]
#[serde(default)]
struct HfText {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_attention_heads: usize,
    num_hidden_layers: usize,
    max_position_embeddings: usize,
    hidden_act: String,
}

impl Default for HfText {
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_attention_heads: 8,
            num_hidden_layers: 12,
            max_position_embeddings: 77,
            hidden_act: "quick_gelu".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(default)]
struct HfVision {
    hidden_size: usize,
    intermediate_size: usize,
    num_attention_heads: usize,
    num_hidden_layers: usize,
    image_size: usize,
    patch_size: usize,
    hidden_act: String,
}

impl Default for HfVision {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_attention_heads: 12,
            num_hidden_layers: 12,
            image_size: 224,
            patch_size: 32,
            hidden_act: "quick_gelu".into(),
        }
    }
}

pub(crate) struct VisionTower {
    class_embedding: Tensor,
    patch_embedding: Tensor,
    position_embedding: Tensor,
    pre_layrnorm: LayerNorm,
    encoder: ClipEncoder,
    post_layernorm: LayerNorm,
    visual_projection: Linear,
    cfg: VisionConfig,
}

/// What the image tower returns for `N` images.
pub(crate) struct VisionOutput {
    /// Projected pooled features `[N, embed_dim]` (`get_image_features`).
    pub embeds: Tensor,
    /// Mean over tokens of the outputs of the first `k` blocks, `[N, k, width]`.
    pub early: Option<Tensor>,
}

impl VisionTower {
    pub(crate) fn new(store: &mut ParamStore, prefix: &str, cfg: &VisionConfig, embed_dim: usize) -> Result<Self> {
        ensure!(cfg.image_size.is_multiple_of(cfg.patch_size), "image_size must be a multiple of patch_size");
        let mut root = store.scope(prefix, Group::ImageEncoder);
        let visual_projection = Linear::new(&mut root, "visual_projection", cfg.width, embed_dim, Bias::Without, 0.02)?;
        let mut s = root.sub("vision_model");
        let std = (cfg.width as f64).powf(-0.5);
        let tokens = (cfg.image_size / cfg.patch_size).pow(2) + 1;
        let (class_embedding, patch_embedding, position_embedding) = {
            let mut e = s.sub("embeddings");
            let class = e.normal("class_embedding", &[cfg.width], std)?;
            let patch =
                e.sub("patch_embedding").normal("weight", &[cfg.width, 3, cfg.patch_size, cfg.patch_size], 0.02)?;
            let pos = e.sub("position_embedding").normal("weight", &[tokens, cfg.width], 0.02)?;
            (class, patch, pos)
        };
        let pre_layrnorm = LayerNorm::new(&mut s, "pre_layrnorm", cfg.width, 1e-5)?;
        let encoder = ClipEncoder::new(&mut s, cfg.layers, cfg.width, cfg.heads, cfg.mlp)?;
        let post_layernorm = LayerNorm::new(&mut s, "post_layernorm", cfg.width, 1e-5)?;
        Ok(Self {
            class_embedding,
            patch_embedding,
            position_embedding,
            pre_layrnorm,
            encoder,
            post_layernorm,
            visual_projection,
            cfg: cfg.clone(),
        })
    }

    /// The tower on untracked copies of its weights: a frozen forward that builds no graph, so
    /// activations are freed layer by layer (candle has no no-grad mode). Embeddings and linear
    /// weights are held in `dtype`, the dtype the tower computes in (cast once here; in f32
    /// they share the trained weights' storage); LayerNorm weights stay f32, as its statistics.
    pub(crate) fn detached(&self, dtype: DType) -> Result<Self> {
        Ok(Self {
            class_embedding: self.class_embedding.detach().to_dtype(dtype)?,
            patch_embedding: self.patch_embedding.detach().to_dtype(dtype)?,
            position_embedding: self.position_embedding.detach().to_dtype(dtype)?,
            pre_layrnorm: self.pre_layrnorm.detached(),
            encoder: self.encoder.detached(dtype)?,
            post_layernorm: self.post_layernorm.detached(),
            visual_projection: self.visual_projection.detached(dtype)?,
            cfg: self.cfg.clone(),
        })
    }

    /// The dtype of the tower's linear weights.
    #[cfg(test)]
    pub(crate) fn weights_dtype(&self) -> DType {
        self.visual_projection.dtype()
    }

    /// `images [N, 3, S, S]` (CLIP-normalised); `early_blocks` > 0 also returns the token means of
    /// the first `early_blocks` block outputs (the polarity encoder's input).
    pub(crate) fn forward(&self, images: &Tensor, early_blocks: usize) -> Result<VisionOutput> {
        self.forward_adapted(images, early_blocks, None)
    }

    /// [`Self::forward`] with an adapter in each block (FineCLIPER's).
    pub(crate) fn forward_adapted(
        &self,
        images: &Tensor,
        early_blocks: usize,
        adapters: Option<&TowerAdapters>,
    ) -> Result<VisionOutput> {
        let (n, c, h, w) = images.dims4()?;
        let s = self.cfg.image_size;
        ensure!(c == 3 && h == s && w == s, "image tower expects [N, 3, {s}, {s}], got {:?}", images.dims());
        let dt = images.dtype();
        let patches = images.conv2d(&self.patch_embedding.to_dtype(dt)?, 0, self.cfg.patch_size, 1, 1)?;
        let patches = patches.flatten_from(2)?.transpose(1, 2)?; // [N, P, width]
        let cls = self.class_embedding.to_dtype(dt)?.reshape((1, 1, self.cfg.width))?.repeat((n, 1, 1))?;
        let x = Tensor::cat(&[&cls, &patches], 1)?.broadcast_add(&self.position_embedding.to_dtype(dt)?)?;
        let mut x = self.pre_layrnorm.forward(&x)?;
        let mut early = Vec::with_capacity(early_blocks);
        for (i, layer) in self.encoder.layers.iter().enumerate() {
            x = layer.forward_adapted(&x, None, adapters.and_then(|a| a.block(i)))?;
            if i < early_blocks {
                early.push(x.mean(1)?);
            }
        }
        let pooled = self.post_layernorm.forward(&x.narrow(1, 0, 1)?.squeeze(1)?)?;
        let early = if early.is_empty() { None } else { Some(Tensor::stack(&early, 1)?) };
        Ok(VisionOutput { embeds: self.visual_projection.forward(&pooled)?, early })
    }
}

pub(crate) struct TextTower {
    token_embedding: Tensor,
    position_embedding: Tensor,
    encoder: ClipEncoder,
    final_layer_norm: LayerNorm,
    text_projection: Linear,
    /// CLIP's learned temperature (log of the scale applied to cosine similarities).
    pub logit_scale: Tensor,
    mask: Tensor,
    cfg: TextConfig,
}

impl TextTower {
    pub(crate) fn new(store: &mut ParamStore, prefix: &str, cfg: &TextConfig, embed_dim: usize) -> Result<Self> {
        let device = store.device().clone();
        let mut root = store.scope(prefix, Group::TextEncoder);
        let text_projection = Linear::new(&mut root, "text_projection", cfg.width, embed_dim, Bias::Without, 0.02)?;
        let logit_scale = root.constant("logit_scale", &[], (1.0f32 / 0.07).ln())?;
        let mut s = root.sub("text_model");
        let (token_embedding, position_embedding) = {
            let mut e = s.sub("embeddings");
            let tok = e.sub("token_embedding").normal("weight", &[cfg.vocab_size, cfg.width], 0.02)?;
            let pos = e.sub("position_embedding").normal("weight", &[cfg.context_length, cfg.width], 0.01)?;
            (tok, pos)
        };
        let encoder = ClipEncoder::new(&mut s, cfg.layers, cfg.width, cfg.heads, cfg.mlp)?;
        let final_layer_norm = LayerNorm::new(&mut s, "final_layer_norm", cfg.width, 1e-5)?;
        let l = cfg.context_length;
        let mask: Vec<f32> = (0..l * l).map(|i| if i % l > i / l { -1e9 } else { 0.0 }).collect();
        let mask = Tensor::from_vec(mask, (l, l), &device)?;
        Ok(Self {
            token_embedding,
            position_embedding,
            encoder,
            final_layer_norm,
            text_projection,
            logit_scale,
            mask,
            cfg: cfg.clone(),
        })
    }

    /// The tower on untracked weights: gradients still flow through it to its inputs (the prompt
    /// context) but none is computed for its own frozen weights.
    pub(crate) fn detached(&self) -> Result<Self> {
        Ok(Self {
            token_embedding: self.token_embedding.detach(),
            position_embedding: self.position_embedding.detach(),
            encoder: self.encoder.detached(DType::F32)?,
            final_layer_norm: self.final_layer_norm.detached(),
            text_projection: self.text_projection.detached(DType::F32)?,
            logit_scale: self.logit_scale.detach(),
            mask: self.mask.clone(),
            cfg: self.cfg.clone(),
        })
    }

    /// Token embeddings of `ids [N, L]`.
    pub(crate) fn embed_tokens(&self, ids: &Tensor) -> Result<Tensor> {
        let (n, l) = ids.dims2()?;
        Ok(self.token_embedding.index_select(&ids.flatten_all()?, 0)?.reshape((n, l, self.cfg.width))?)
    }

    /// Runs the tower on token embeddings `[N, L, width]` (L = context length); `eot [N]` gives the
    /// end-of-text position of each sequence, whose output is pooled and projected. Positions past
    /// the last end-of-text token are not computed: under the causal mask no pooled output can
    /// see them, so the result is the full-context one (CoOp runs all 77; prompts use ~15).
    pub(crate) fn forward_embeddings(&self, embeds: &Tensor, eot: &[usize]) -> Result<Tensor> {
        self.forward_embeddings_adapted(embeds, eot, None)
    }

    /// [`Self::forward_embeddings`] with an adapter in each block (FineCLIPER's).
    pub(crate) fn forward_embeddings_adapted(
        &self,
        embeds: &Tensor,
        eot: &[usize],
        adapters: Option<&TowerAdapters>,
    ) -> Result<Tensor> {
        let (n, l, w) = embeds.dims3()?;
        ensure!(l == self.cfg.context_length && eot.len() == n, "text tower input {:?} does not fit", embeds.dims());
        let l = eot.iter().max().map_or(l, |&p| (p + 1).min(l));
        let mask = self.mask.narrow(0, 0, l)?.narrow(1, 0, l)?.contiguous()?;
        let mut x = embeds.narrow(1, 0, l)?.broadcast_add(&self.position_embedding.narrow(0, 0, l)?)?;
        for (i, layer) in self.encoder.layers.iter().enumerate() {
            x = layer.forward_adapted(&x, Some(&mask), adapters.and_then(|a| a.block(i)))?;
        }
        let x = self.final_layer_norm.forward(&x)?;
        let rows: Vec<u32> = eot.iter().enumerate().map(|(i, &p)| (i * l + p) as u32).collect();
        let rows = Tensor::new(rows.as_slice(), x.device())?;
        let pooled = x.reshape((n * l, w))?.index_select(&rows, 0)?;
        Ok(self.text_projection.forward(&pooled)?)
    }

    /// `get_text_features` for token ids (the end-of-text token is the first occurrence of `eot_id`).
    pub(crate) fn forward_ids(&self, ids: &[Vec<u32>], eot_id: u32) -> Result<Tensor> {
        let l = self.cfg.context_length;
        let mut flat = Vec::with_capacity(ids.len() * l);
        let mut eot = Vec::with_capacity(ids.len());
        for seq in ids {
            ensure!(seq.len() == l, "token sequence of length {} (context length is {l})", seq.len());
            eot.push(seq.iter().position(|&t| t == eot_id).unwrap_or(l - 1));
            flat.extend_from_slice(seq);
        }
        let ids = Tensor::from_vec(flat, (ids.len(), l), self.token_embedding.device())?;
        self.forward_embeddings(&self.embed_tokens(&ids)?, &eot)
    }
}

/// `encoder` (`CLIPEncoder`): the transformer layers `encoder.layers.{0..n}` of either tower.
struct ClipEncoder {
    layers: Vec<ClipEncoderLayer>,
}

impl ClipEncoder {
    fn new(s: &mut Scope, n: usize, width: usize, heads: usize, mlp: usize) -> Result<Self> {
        let mut enc = s.sub("encoder");
        let mut l = enc.sub("layers");
        let layers = (0..n).map(|i| ClipEncoderLayer::new(&mut l, &i.to_string(), width, heads, mlp));
        Ok(Self { layers: layers.collect::<Result<_>>()? })
    }

    fn detached(&self, dtype: DType) -> Result<Self> {
        Ok(Self { layers: self.layers.iter().map(|l| l.detached(dtype)).collect::<Result<_>>()? })
    }
}

/// `encoder.layers.N` (`CLIPEncoderLayer`): a pre-norm transformer layer. [`ClassTokenEncoder`]
/// is built of the same layers (same parameter names).
pub(crate) struct ClipEncoderLayer {
    layer_norm1: LayerNorm,
    self_attn: ClipAttention,
    layer_norm2: LayerNorm,
    mlp: ClipMlp,
}

impl ClipEncoderLayer {
    pub(crate) fn new(s: &mut Scope, name: &str, dim: usize, heads: usize, mlp: usize) -> Result<Self> {
        let mut s = s.sub(name);
        // The MLP's weights are drawn first: the seeded initialisation depends on this order.
        let mlp = ClipMlp::new(&mut s, dim, mlp)?;
        Ok(Self {
            layer_norm1: LayerNorm::new(&mut s, "layer_norm1", dim, 1e-5)?,
            self_attn: ClipAttention::new(&mut s, "self_attn", dim, heads)?,
            layer_norm2: LayerNorm::new(&mut s, "layer_norm2", dim, 1e-5)?,
            mlp,
        })
    }

    pub(crate) fn detached(&self, dtype: DType) -> Result<Self> {
        Ok(Self {
            layer_norm1: self.layer_norm1.detached(),
            self_attn: self.self_attn.detached(dtype)?,
            layer_norm2: self.layer_norm2.detached(),
            mlp: self.mlp.detached(dtype)?,
        })
    }

    /// `x [B, L, C]`; `mask [L, L]` is added to the attention scores (the text tower's causal mask).
    pub(crate) fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        self.forward_adapted(x, mask, None)
    }

    /// [`Self::forward`] with `adapter` on the attention output and beside the MLP.
    fn forward_adapted(&self, x: &Tensor, mask: Option<&Tensor>, adapter: Option<&BlockAdapter>) -> Result<Tensor> {
        let h = self.layer_norm1.forward(x)?;
        let a = self.self_attn.forward(&h, &h, mask)?;
        let a = match adapter {
            Some(ad) => ad.after_attention(&a)?,
            None => a,
        };
        let x = (x + a)?;
        let h = self.layer_norm2.forward(&x)?;
        let m = self.mlp.forward(&h)?;
        let m = match adapter {
            Some(ad) => (m + ad.beside_mlp(&h)?)?,
            None => m,
        };
        Ok((x + m)?)
    }
}

/// A learnable class token and learned positions before CLIP encoder layers, over a sequence of
/// frame features `[B, T, E]` → tokens `[B, 1 + T, E]` (token 0 is the class token). OUS's Frame
/// Encoder and DFER-CLIP's temporal transformer are both this module: `cls`, `pos`, `layers.N`.
pub(crate) struct ClassTokenEncoder {
    cls: Tensor,
    pos: Tensor,
    layers: Vec<ClipEncoderLayer>,
}

impl ClassTokenEncoder {
    /// `frames` positions after the class token; `depth` layers of `heads` heads and MLP width
    /// `mlp`; the class token and positions start from a normal of standard deviation `std`.
    pub(crate) fn new(s: &mut Scope, frames: usize, dim: usize, layers: [usize; 3], std: f64) -> Result<Self> {
        let [depth, heads, mlp] = layers;
        let cls = s.normal("cls", &[dim], std)?;
        let pos = s.normal("pos", &[frames + 1, dim], std)?;
        let mut l = s.sub("layers");
        let layers = (0..depth).map(|i| ClipEncoderLayer::new(&mut l, &i.to_string(), dim, heads, mlp));
        Ok(Self { cls, pos, layers: layers.collect::<Result<_>>()? })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, _, e) = x.dims3()?;
        let cls = self.cls.reshape((1, 1, e))?.repeat((b, 1, 1))?;
        let mut tokens = Tensor::cat(&[&cls, x], 1)?.broadcast_add(&self.pos)?;
        for layer in &self.layers {
            tokens = layer.forward(&tokens, None)?;
        }
        Ok(tokens)
    }
}

/// `self_attn` (`CLIPAttention`): multi-head attention with `q_proj`, `k_proj`, `v_proj`,
/// `out_proj`. CLIP's layers call it as self-attention (query = memory); the OUS Type Fusion
/// blocks reuse it as cross-attention (their `cross_attn`, with the same parameter names).
pub(crate) struct ClipAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    heads: usize,
}

impl ClipAttention {
    pub(crate) fn new(s: &mut Scope, name: &str, dim: usize, heads: usize) -> Result<Self> {
        ensure!(dim.is_multiple_of(heads), "attention width {dim} is not a multiple of {heads} heads");
        let mut s = s.sub(name);
        let std = (dim as f64).powf(-0.5);
        Ok(Self {
            q_proj: Linear::new(&mut s, "q_proj", dim, dim, Bias::With, std)?,
            k_proj: Linear::new(&mut s, "k_proj", dim, dim, Bias::With, std)?,
            v_proj: Linear::new(&mut s, "v_proj", dim, dim, Bias::With, std)?,
            out_proj: Linear::new(&mut s, "out_proj", dim, dim, Bias::With, std)?,
            heads,
        })
    }

    pub(crate) fn detached(&self, dtype: DType) -> Result<Self> {
        Ok(Self {
            q_proj: self.q_proj.detached(dtype)?,
            k_proj: self.k_proj.detached(dtype)?,
            v_proj: self.v_proj.detached(dtype)?,
            out_proj: self.out_proj.detached(dtype)?,
            heads: self.heads,
        })
    }

    /// `query [B, Lq, C]` attends to `memory [B, Lk, C]`; `mask [Lq, Lk]` is added to the scores.
    pub(crate) fn forward(&self, query: &Tensor, memory: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, lq, c) = query.dims3()?;
        let lk = memory.dim(1)?;
        let hd = c / self.heads;
        let split = |t: Tensor, l: usize| -> Result<Tensor> {
            Ok(t.reshape((b, l, self.heads, hd))?.transpose(1, 2)?.contiguous()?)
        };
        let q = split((self.q_proj.forward(query)? * (hd as f64).powf(-0.5))?, lq)?;
        let k = split(self.k_proj.forward(memory)?, lk)?;
        let v = split(self.v_proj.forward(memory)?, lk)?;
        let mut scores = q.matmul(&k.t()?)?;
        if let Some(m) = mask {
            scores = scores.broadcast_add(&m.to_dtype(scores.dtype())?)?;
        }
        let probs = softmax_last(&scores)?;
        let y = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, lq, c))?;
        Ok(self.out_proj.forward(&y)?)
    }
}

/// `mlp` (`CLIPMLP`): `fc2(quick_gelu(fc1(x)))`.
struct ClipMlp {
    fc1: Linear,
    fc2: Linear,
}

impl ClipMlp {
    fn new(s: &mut Scope, dim: usize, hidden: usize) -> Result<Self> {
        let mut m = s.sub("mlp");
        Ok(Self {
            fc1: Linear::new(&mut m, "fc1", dim, hidden, Bias::With, (dim as f64).powf(-0.5))?,
            fc2: Linear::new(&mut m, "fc2", hidden, dim, Bias::With, (hidden as f64).powf(-0.5))?,
        })
    }

    fn detached(&self, dtype: DType) -> Result<Self> {
        Ok(Self { fc1: self.fc1.detached(dtype)?, fc2: self.fc2.detached(dtype)? })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.fc2.forward(&quick_gelu(&self.fc1.forward(x)?)?)?)
    }
}

/// L2-normalises the last dimension.
pub(crate) fn normalize(x: &Tensor) -> Result<Tensor> {
    Ok(x.broadcast_div(&(x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()? + 1e-8)?)?)
}
