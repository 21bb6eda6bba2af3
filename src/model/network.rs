//! The network a run trains: for the CLIP methods the CLIP towers (the image tower frozen or
//! fine-tuned, the text tower frozen), the learnable prompts, and the head of `model.method` (OUS
//! or DFER-CLIP); for IAL its own network on the frames, without towers or prompts. The runner
//! sees only this type.

use anyhow::{bail, ensure, Context, Result};
use candle_core::{DType, Tensor};
use candle_nn::loss::cross_entropy;

use super::clip::{TextConfig, TextTower, VisionConfig, VisionOutput, VisionTower};
use super::config::{LossWeights, Method, ModelConfig};
use super::dfer_clip::DferClipHead;
use super::fineclip::{FineClipHead, Streams};
use super::ial::intensity_aware_loss;
use super::ial_net::IalNet;
use super::ous::OusHead;
use super::params::{Group, ParamStore};
use super::prompts::{PromptLearner, PromptTokens};

/// Number of polarity classes (positive, neutral, negative), as in the dataset descriptions.
pub(crate) const POLARITIES: usize = 3;
/// Names of the CLIP tower parameters start with this (the rest is the Hugging Face name).
pub(crate) const CLIP_PREFIX: &str = "clip";

/// Images per pass of the frozen image tower (ours): each image is independent, and a batch of
/// 32 clips × 16 frames in one pass made ~2 GB attention tensors per layer whose allocation cost
/// more than their arithmetic (measured: docs/benchmarks.md "Training (CPU)").
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

/// Which copy of the CLIP image tower a forward pass runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ImageTower {
    /// The untracked copy, which builds no graph (the frozen recipe, evaluation, caching).
    Frozen,
    /// The trained weights, with a graph to them (fine-tuning).
    Trained,
}

/// Per-frame image-tower outputs of a batch: what the feature cache stores. A method without an
/// image tower (IAL) reads the frames themselves.
pub(crate) struct Features {
    /// `V_f [B, T, E]`; IAL: the face frames `[B, T, 3, S, S]`.
    pub face: Tensor,
    /// `V_s [B, T, E]` (absent in the face-only ablation).
    pub scene: Option<Tensor>,
    /// Token means of the first `polarity_blocks` blocks on the scene frames, averaged over frames `[B, P, W]`.
    pub early: Option<Tensor>,
    /// FineCLIPER's per-clip description features `[B, E]` (text tower), when that stream is on.
    pub description: Option<Tensor>,
    /// FineCLIPER's landmark-frame features `[B, T, E]` (image tower), when that stream is on.
    pub points: Option<Tensor>,
}

/// Head outputs for a batch.
pub(crate) struct Outputs {
    /// Scaled cosine similarities to the class prompts `[B, K]` (the prediction).
    pub logits: Tensor,
    /// OUS's polarity logits `[B, 3]`, when its Polarity Encoder runs.
    pub polarity_logits: Option<Tensor>,
    /// OUS's `L_global` logits `[B, K]`.
    pub global_logits: Option<Tensor>,
    /// `L_sim` for the batch (scalar), when the scene stream is on.
    pub sim: Option<Tensor>,
    /// IAL's auxiliary logits of the GCA blocks of layers 2 and 3 `[B, K]`.
    pub gca_aux: Option<[Tensor; 2]>,
}

impl Outputs {
    /// Class scores alone (a head without auxiliary outputs).
    fn logits(logits: Tensor) -> Self {
        Self { logits, polarity_logits: None, global_logits: None, sim: None, gca_aux: None }
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

/// What a method adds after the CLIP image tower, or (IAL) its whole network.
enum Head {
    Ous(Box<OusHead>),
    DferClip(DferClipHead),
    Ial(Box<IalNet>),
    FineClip(Box<FineClipHead>),
}

/// The CLIP towers and prompts of the CLIP methods.
struct Clip {
    vision: VisionTower,
    /// The same tower on untracked weights, for the frozen recipe.
    vision_frozen: VisionTower,
    /// The text tower is always frozen (CoOp): untracked weights.
    text: TextTower,
    prompts: PromptLearner,
}

pub(crate) struct Network {
    cfg: ModelConfig,
    frames: usize,
    /// Absent for a method without CLIP towers (IAL).
    clip: Option<Clip>,
    head: Head,
}

impl Network {
    /// Builds the network with seeded random weights and CLIP towers of the given sizes; `frames`
    /// is T. The towers, then the prompts, then the head draw from the store's generator.
    pub(crate) fn new(
        store: &mut ParamStore,
        cfg: &ModelConfig,
        (vcfg, tcfg, e): &(VisionConfig, TextConfig, usize),
        frames: usize,
        tokens: PromptTokens,
    ) -> Result<Self> {
        let e = *e;
        ensure!(cfg.method.uses_clip(), "model.method = \"{}\" has no CLIP towers (Network::ial)", cfg.method);
        ensure!(e % cfg.heads == 0, "embedding width {e} is not a multiple of heads = {}", cfg.heads);
        let vision = VisionTower::new(store, CLIP_PREFIX, vcfg, e)?;
        let text = TextTower::new(store, CLIP_PREFIX, tcfg, e)?.detached()?;
        let vision_frozen = vision.detached(DType::F32)?;
        let class_specific = cfg.method == Method::DferClip;
        let prompts = PromptLearner::new(store, tokens, tcfg.width, class_specific)?;
        let k = prompts.classes();
        let head = match cfg.method {
            Method::Ous => {
                Head::Ous(Box::new(OusHead::new(&mut store.scope("ous", Group::Head), cfg, vcfg, e, frames, k)?))
            }
            Method::DferClip => Head::DferClip(DferClipHead::new(
                &mut store.scope("dfer_clip", Group::Head),
                e,
                frames,
                cfg.frame_encoder_layers,
                cfg.heads,
                cfg.frame_gate,
            )?),
            Method::FineClip => Head::FineClip(Box::new(FineClipHead::new(
                &mut store.scope("fineclip", Group::Head),
                (vcfg, tcfg),
                (cfg.adapter_ratio, cfg.adapter_scale),
                Streams { descriptions: cfg.video_descriptions.is_some(), landmarks: cfg.landmarks },
            )?)),
            Method::Ial => unreachable!("checked above"),
        };
        let clip = Some(Clip { vision, vision_frozen, text, prompts });
        Ok(Self { cfg: cfg.clone(), frames, clip, head })
    }

    /// IAL's network for clips of `frames` frames and `classes` classes: the whole network is
    /// trained (parameters under their own names, [`Group::Head`]; BatchNorm statistics
    /// [`Group::Buffers`]).
    pub(crate) fn ial(store: &mut ParamStore, cfg: &ModelConfig, frames: usize, classes: usize) -> Result<Self> {
        ensure!(cfg.method == Method::Ial, "Network::ial for model.method = \"{}\"", cfg.method);
        let head = Head::Ial(Box::new(IalNet::new(&mut store.scope("", Group::Head), frames, classes)?));
        Ok(Self { cfg: cfg.clone(), frames, clip: None, head })
    }

    /// The CLIP towers and prompts, which a method without them (IAL) has not.
    fn clip(&self) -> Result<&Clip> {
        self.clip.as_ref().with_context(|| format!("model.method = \"{}\" has no CLIP towers", self.cfg.method))
    }

    pub(crate) fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// OUS's modules, when this network is OUS (for the per-module profile).
    pub(crate) fn ous(&self) -> Option<&OusHead> {
        match &self.head {
            Head::Ous(h) => Some(h),
            Head::DferClip(_) | Head::Ial(_) | Head::FineClip(_) => None,
        }
    }

    /// CLIP's learned logit scale, `exp(logit_scale)`.
    pub(crate) fn logit_scale(&self) -> Result<Tensor> {
        Ok(self.clip()?.text.logit_scale.exp()?)
    }

    /// Holds the frozen image tower's weights in `dtype`: the tower's compute dtype when it is
    /// not trained (cast once, after the weights are loaded), f32 when it is (the copy then
    /// shares the trained weights' storage and follows every update).
    pub(crate) fn set_frozen_tower_dtype(&mut self, dtype: DType) -> Result<()> {
        if let Some(c) = &mut self.clip {
            c.vision_frozen = c.vision.detached(dtype)?;
        }
        Ok(())
    }

    /// The dtype the frozen image tower's weights are held in.
    #[cfg(test)]
    pub(crate) fn frozen_tower_dtype(&self) -> DType {
        self.clip().expect("CLIP towers").vision_frozen.weights_dtype()
    }

    /// Runs the image tower over `face [B, T, 3, S, S]` and, when the method reads scenes,
    /// `scene` (same shape). `dtype` is the compute type of the tower (bf16 on CUDA); outputs
    /// are f32. `tower` says which copy of the image tower runs. Without CLIP towers (IAL) the
    /// face frames are the features, in f32.
    pub(crate) fn encode(
        &self,
        face: &Tensor,
        scene: Option<&Tensor>,
        dtype: DType,
        tower: ImageTower,
    ) -> Result<Features> {
        let Some(clip) = &self.clip else {
            return Ok(Features {
                face: face.to_dtype(DType::F32)?,
                scene: None,
                early: None,
                description: None,
                points: None,
            });
        };
        let train_image = tower == ImageTower::Trained;
        let tower = if train_image { &clip.vision } else { &clip.vision_frozen };
        let (b, t, c, h, w) = face.dims5()?;
        let run = |images: &Tensor, early: usize| -> Result<VisionOutput> {
            let images = images.reshape((b * t, c, h, w))?.to_dtype(dtype)?;
            if let Head::FineClip(f) = &self.head {
                // The frozen tower with trained adapters: a graph to the adapters, in one pass.
                f.encode(tower, &images)
            } else if train_image {
                tower.forward(&images, early)
            } else {
                forward_in_chunks(tower, &images, early)
            }
        };
        let f = run(face, 0)?.embeds.to_dtype(DType::F32)?.reshape((b, t, ()))?;
        let (scene, early) = match scene {
            Some(s) if self.cfg.uses_scene() => {
                let blocks = self.cfg.early_blocks();
                let out = run(s, blocks)?;
                let early = match out.early {
                    Some(x) => Some(x.to_dtype(DType::F32)?.reshape((b, t, blocks, ()))?.mean(1)?),
                    None => None,
                };
                (Some(out.embeds.to_dtype(DType::F32)?.reshape((b, t, ()))?), early)
            }
            _ => (None, None),
        };
        Ok(Features { face: f, scene, early, description: None, points: None })
    }

    /// FineCLIPER's landmark-frame features `[B, T, E]` of `images [B, T, 3, S, S]` (the frozen
    /// tower in `dtype` with the landmark stream's adapters; outputs f32).
    pub(crate) fn encode_points(&self, images: &Tensor, dtype: DType) -> Result<Tensor> {
        let Head::FineClip(h) = &self.head else {
            bail!("model.method = \"{}\" has no landmark stream", self.cfg.method)
        };
        let (b, t, c, hh, w) = images.dims5()?;
        let flat = images.reshape((b * t, c, hh, w))?.to_dtype(dtype)?;
        let out = h.encode_points(&self.clip()?.vision_frozen, &flat)?;
        Ok(out.embeds.to_dtype(DType::F32)?.reshape((b, t, ()))?)
    }

    /// FineCLIPER's description features `[B, E]` of token ids `[B, L]` ending at `eot`.
    pub(crate) fn describe(&self, ids: &Tensor, eot: &[usize]) -> Result<Tensor> {
        match &self.head {
            Head::FineClip(h) => h.describe(&self.clip()?.text, ids, eot),
            Head::Ous(_) | Head::DferClip(_) | Head::Ial(_) => {
                bail!("model.method = \"{}\" has no description stream", self.cfg.method)
            }
        }
    }

    /// Class text features through the learnable prompts `[K, E]`; none without CLIP towers.
    pub(crate) fn class_features(&self) -> Result<Option<Tensor>> {
        let Some(c) = &self.clip else { return Ok(None) };
        Ok(Some(match &self.head {
            Head::FineClip(f) => f.class_features(&c.prompts, &c.text)?,
            Head::Ous(_) | Head::DferClip(_) | Head::Ial(_) => c.prompts.class_features(&c.text)?,
        }))
    }

    /// Everything after the image tower. `train`: a training step's forward (IAL's BatchNorm
    /// then normalises by the batch and moves its running statistics; the CLIP methods' heads
    /// behave the same in both modes).
    pub(crate) fn head(&self, x: &Features, text: Option<&Tensor>, train: bool) -> Result<Outputs> {
        let t = x.face.dim(1)?;
        ensure!(t == self.frames, "model was built for T = {}, batch has {t} frames", self.frames);
        let text = || text.context("the CLIP methods' heads need the class text features");
        match &self.head {
            Head::Ous(h) => h.forward(x, text()?, &self.logit_scale()?),
            Head::DferClip(h) => Ok(Outputs::logits(h.logits(&x.face, text()?)?)),
            Head::FineClip(h) => {
                Ok(Outputs::logits(h.logits(&x.face, (x.description.as_ref(), x.points.as_ref()), text()?)?))
            }
            Head::Ial(net) => {
                let out = net.forward(&x.face, train)?;
                Ok(Outputs { gca_aux: Some(out.aux), ..Outputs::logits(out.logits) })
            }
        }
    }

    /// `L_cont` (cross-entropy of the class scores), plus each auxiliary loss the method's
    /// outputs hold, weighted: OUS's `λ_glob L_global + λ_sim L_sim + λ_pol L_pol`; IAL's
    /// cross-entropies of its GCA blocks' auxiliary classifiers (`aux2`, `aux3`, kept at weight
    /// 0 as Li et al.'s code keeps the second); and `λ_ial L_IAL` for every method when asked.
    pub(crate) fn losses(&self, out: &Outputs, labels: &Tensor, polarity: &Tensor, w: &LossWeights) -> Result<Losses> {
        let cont = cross_entropy(&out.logits, labels)?;
        let mut total = cont.clone();
        let mut parts = vec![("cont", cont)];
        if let Some(g) = &out.global_logits {
            let global = cross_entropy(g, labels)?;
            total = (total + (&global * w.global)?)?;
            parts.push(("global", global));
        }
        if let Some(sim) = &out.sim {
            total = (total + (sim * w.sim)?)?;
            parts.push(("sim", sim.clone()));
        }
        if let Some(p) = &out.polarity_logits {
            let pol = cross_entropy(p, polarity)?;
            total = (total + (&pol * w.pol)?)?;
            parts.push(("pol", pol));
        }
        if let Some(aux) = &out.gca_aux {
            for ((name, logits), weight) in ["aux2", "aux3"].into_iter().zip(aux).zip(w.gca_aux) {
                let ce = cross_entropy(logits, labels)?;
                total = (total + (&ce * weight)?)?;
                parts.push((name, ce));
            }
        }
        if w.ial > 0.0 {
            let ial = intensity_aware_loss(&out.logits, labels)?;
            total = (total + (&ial * w.ial)?)?;
            parts.push(("ial", ial));
        }
        Ok(Losses { total, parts })
    }
}
