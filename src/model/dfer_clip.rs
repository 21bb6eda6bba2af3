//! DFER-CLIP (Zhao & Patras, "Prompting Visual-Language Models for Dynamic Facial Expression
//! Recognition", BMVC 2023, arXiv 2308.13382), the face-only CLIP baseline, as docs/methods.md "DFER-CLIP"
//! describes it. Settings come from the paper and the authors' public training code (their
//! `Temporal_Model.py`, `Generate_Model.py`, `Prompt_Learner.py` and `train_*.sh`); each says
//! whether it is theirs or ours.
//!
//! Face frames go through the CLIP image tower; a temporal transformer with a learnable class
//! token and learned positions runs over the frame features, and its class-token output is the
//! video feature (paper). The classes are learnable context vectors, one set per class, before a
//! description of the face's behaviour (no class name), through the frozen CLIP text tower
//! (paper); logits are cosine similarities over a fixed temperature of 0.01 (paper's code), and
//! the loss is cross-entropy (plus the intensity-aware loss when `loss.ial` asks).

use anyhow::Result;
use candle_core::Tensor;

use super::clip::{normalize, ClassTokenEncoder};
use super::frame_gate::FrameGate;
use super::params::Scope;

/// Fixed logit scale, 1 / 0.01 (paper's code divides the cosine similarities by 0.01; CLIP's
/// learned `logit_scale` is not used).
const LOGIT_SCALE: f64 = 100.0;

/// `dfer_clip.temporal`: the temporal transformer over face-frame features.
pub(crate) struct DferClipHead {
    temporal: ClassTokenEncoder,
    /// `model.frame_gate`: on the frame features, before the temporal transformer.
    frame_gate: Option<FrameGate>,
}

impl DferClipHead {
    /// `depth` layers (paper's scripts: 1) of `heads` heads (paper: 8) over `frames` frame
    /// features of width `e`. The MLP is 2 × e wide (paper: 1,024 for CLIP's 512). The class
    /// token and positions start from a standard normal, as the authors' `torch.randn` does.
    /// Ours: the layers are CLIP's (quick-GELU, biased projections) where the paper's code uses
    /// GELU and unbiased q / k / v projections.
    pub(crate) fn new(s: &mut Scope, e: usize, frames: usize, depth: usize, heads: usize, gate: bool) -> Result<Self> {
        let temporal = ClassTokenEncoder::new(&mut s.sub("temporal"), frames, e, [depth, heads, 2 * e], 1.0)?;
        let frame_gate = if gate { Some(FrameGate::new(s, e)?) } else { None };
        Ok(Self { temporal, frame_gate })
    }

    /// Video features `[B, E]`: the class-token output of the temporal transformer over `face
    /// [B, T, E]` (paper: no norm or projection after it).
    pub(crate) fn video(&self, face: &Tensor) -> Result<Tensor> {
        let face = match &self.frame_gate {
            Some(g) => g.forward(face)?,
            None => face.clone(),
        };
        Ok(self.temporal.forward(&face)?.narrow(1, 0, 1)?.squeeze(1)?)
    }

    /// Class scores `[B, K]`: cosine similarity of the video and class features times 100.
    pub(crate) fn logits(&self, face: &Tensor, text: &Tensor) -> Result<Tensor> {
        let video = self.video(face)?;
        Ok((normalize(&video)?.matmul(&normalize(text)?.t()?)? * LOGIT_SCALE)?)
    }
}
