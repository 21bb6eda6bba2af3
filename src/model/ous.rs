//! The scene-guided OUS model (Mai et al., arXiv 2405.18769), as docs/methods.md "OUS" describes it:
//! the modules it adds after the CLIP image tower. The paper's full text is public on arXiv; its
//! code is not. Every setting says whether it is the paper's or our choice (the paper leaves
//! sizes such as layer counts and widths unstated).
//!
//! Faces: LSTM → Frame Encoder (transformer with a class token). Scenes: LSTM → Frames Mean.
//! `L_sim` pulls conv + FC projections of both together; the Polarity Encoder reads the first
//! blocks' hidden states of the scene frames (`L_pol`); the Type Fusion Encoder's learnable
//! Gaussian queries (shared by all its blocks) attend to face tokens, scene token and polarity
//! feature; the fused feature is matched against CoOp prompts through the CLIP text tower
//! (`L_cont`), plus `L_global`.

use anyhow::{ensure, Result};
use candle_core::{Module, Tensor, D};
use candle_nn::ops::softmax;

use super::clip::{normalize, ClassTokenEncoder, ClipAttention, VisionConfig};
use super::config::ModelConfig;
use super::frame_gate::FrameGate;
use super::layers::{quick_gelu, Bias, LayerNorm, Linear, Lstm, TemporalConv};
use super::network::{Features, Outputs, POLARITIES};
use super::params::Scope;

/// Everything OUS adds on top of CLIP (`ous.*`).
pub(crate) struct OusHead {
    use_scene: bool,
    use_polarity: bool,
    face_lstm: Lstm,
    scene_lstm: Lstm,
    frame_encoder: ClassTokenEncoder,
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
    /// `model.frame_gate`: on the face frames' features, before the face LSTM.
    frame_gate: Option<FrameGate>,
}

impl OusHead {
    /// The modules for `classes` classes over `frames` frame features of width `e`, drawn from
    /// the store's seeded generator in a fixed order.
    pub(crate) fn new(
        s: &mut Scope,
        cfg: &ModelConfig,
        vcfg: &VisionConfig,
        e: usize,
        frames: usize,
        classes: usize,
    ) -> Result<Self> {
        ensure!(cfg.use_scene || !cfg.use_polarity, "use_polarity needs use_scene");
        ensure!(cfg.polarity_blocks <= vcfg.layers, "polarity_blocks exceeds the image tower's depth");
        let std = (e as f64).powf(-0.5);
        let face_lstm = Lstm::new(s, "face_lstm", e, e)?;
        let scene_lstm = Lstm::new(s, "scene_lstm", e, e)?;
        let frame_encoder = ClassTokenEncoder::new(
            &mut s.sub("frame_encoder"),
            frames,
            e,
            [cfg.frame_encoder_layers, cfg.heads, 4 * e],
            0.02,
        )?;
        let mut sim = s.sub("similarity");
        let sim_conv = TemporalConv::new(&mut sim, "conv", e, e, 3)?;
        let sim_face = Linear::new(&mut sim, "face_fc", e, cfg.sim_dim, Bias::With, std)?;
        let sim_scene = Linear::new(&mut sim, "scene_fc", e, cfg.sim_dim, Bias::With, std)?;
        let mut pol = s.sub("polarity");
        let pin = cfg.polarity_blocks * vcfg.width;
        let pol_proj = Linear::new(&mut pol, "proj", pin, e, Bias::With, (pin as f64).powf(-0.5))?;
        let pol_head = Linear::new(&mut pol, "head", e, POLARITIES, Bias::With, std)?;
        let mut fu = s.sub("type_fusion");
        let queries = fu.normal("queries", &[cfg.fusion_queries, e], 1.0)?;
        let fusion = {
            let mut b = fu.sub("blocks");
            (0..cfg.fusion_blocks)
                .map(|i| TypeFusionBlock::new(&mut b, &i.to_string(), e, cfg.heads))
                .collect::<Result<_>>()?
        };
        let fusion_ln = LayerNorm::new(&mut fu, "ln", e, 1e-5)?;
        let video_proj = Linear::new(&mut fu, "proj", e, e, Bias::With, std)?;
        let gin = e + if cfg.use_polarity { POLARITIES } else { 0 };
        let global_head = Linear::new(s, "global_head", gin, classes, Bias::With, (gin as f64).powf(-0.5))?;
        // Drawn last, so a model without it draws every other parameter as before.
        let frame_gate = if cfg.frame_gate { Some(FrameGate::new(s, e)?) } else { None };
        Ok(Self {
            use_scene: cfg.use_scene,
            use_polarity: cfg.use_polarity,
            face_lstm,
            scene_lstm,
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
            frame_gate,
        })
    }

    /// Everything after the image tower; `scale` is the logit scale of the class scores.
    pub(crate) fn forward(&self, x: &Features, text: &Tensor, scale: &Tensor) -> Result<Outputs> {
        let tokens = self.face_stream(&x.face)?;
        let mut memory = vec![tokens.clone()];
        let mut sim = None;
        let mut polarity = None;
        if let (true, Some(scene)) = (self.use_scene, &x.scene) {
            let scene_token = self.scene_stream(scene)?;
            memory.push(scene_token.unsqueeze(1)?);
            sim = Some(self.similarity(&tokens, &scene_token)?);
            if let (true, Some(early)) = (self.use_polarity, &x.early) {
                let (feature, logits) = self.polarity(early)?;
                memory.push(feature.unsqueeze(1)?);
                polarity = Some(logits);
            }
        }
        let video = self.type_fusion(&Tensor::cat(&memory, 1)?)?;
        let (logits, global_logits) = self.classify(&video, text, polarity.as_ref(), scale)?;
        Ok(Outputs { logits, polarity_logits: polarity, global_logits: Some(global_logits), sim, gca_aux: None })
    }

    /// Face stream: the frame gate (when on), LSTM, then the Frame Encoder over `[CLS; frames]` with
    /// position embeddings → tokens `[B, 1 + T, E]`.
    pub(crate) fn face_stream(&self, face: &Tensor) -> Result<Tensor> {
        self.frame_encoder(&self.face_lstm(&self.gated(face)?)?)
    }

    /// `face` through the frame gate when the model has it, else as it is.
    pub(crate) fn gated(&self, face: &Tensor) -> Result<Tensor> {
        match &self.frame_gate {
            Some(g) => g.forward(face),
            None => Ok(face.clone()),
        }
    }

    /// The face stream's LSTM over `V_f [B, T, E]`.
    pub(crate) fn face_lstm(&self, face: &Tensor) -> Result<Tensor> {
        self.face_lstm.forward(face)
    }

    /// The Frame Encoder over `[CLS; face]` with position embeddings → tokens `[B, 1 + T, E]`.
    pub(crate) fn frame_encoder(&self, face: &Tensor) -> Result<Tensor> {
        self.frame_encoder.forward(face)
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

    /// Cosine similarities of the video feature to the class features times `scale` (CLIP's
    /// learned logit scale), and `L_global`'s logits (its classifier is conditioned on the
    /// predicted polarity distribution: ours).
    pub(crate) fn classify(
        &self,
        video: &Tensor,
        text: &Tensor,
        polarity: Option<&Tensor>,
        scale: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let logits = normalize(video)?.matmul(&normalize(text)?.t()?)?.broadcast_mul(scale)?;
        let global_in = match polarity {
            Some(p) => Tensor::cat(&[video, &softmax(p, D::Minus1)?], 1)?,
            None => video.clone(),
        };
        Ok((logits, self.global_head.forward(&global_in)?))
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
            fc1: Linear::new(&mut s, "fc1", dim, 4 * dim, Bias::With, std)?,
            fc2: Linear::new(&mut s, "fc2", 4 * dim, dim, Bias::With, std / 2.0)?,
        })
    }

    fn forward(&self, queries: &Tensor, memory: &Tensor) -> Result<Tensor> {
        let attended = self.cross_attn.forward(&self.ln_q.forward(queries)?, &self.ln_kv.forward(memory)?, None)?;
        let x = (queries + attended)?;
        let h = self.fc2.forward(&quick_gelu(&self.fc1.forward(&self.ln2.forward(&x)?)?)?)?;
        Ok((x + h)?)
    }
}
