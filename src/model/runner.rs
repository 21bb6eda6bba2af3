//! The boundary between the trainer and candle: builds the network (OUS, DFER-CLIP or IAL) on a device, runs training
//! steps, predictions and image-tower encodings on host buffers, and saves / restores weights
//! and optimiser state. `train/` and `eval/` only see plain vectors.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{ensure, Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};
use sha2::{Digest, Sha256};

use super::config::{Arch, LossWeights, Method, ModelConfig, Normalise};
use super::descriptions::class_descriptions;
use super::ial_net;
use super::network::{Features, ImageTower, Losses, Network, CLIP_PREFIX};
use super::optim::{schedule, Decay, GroupSettings, Optimizer, Rule};
use super::params::{Group, ParamStore};
use super::pixels::{self, Colour};
use super::prompts::tokenize_prompts;
use super::tokenizer;
use super::video_descriptions::{self, DescriptionTokens};
use super::ComputeDevice;
use crate::weights::ClipFiles;

/// A batch on the host: uint8 pixels (`[B, T, S, S, 3]`; scene, and FineCLIPER's landmark
/// frames `points`, empty when off) with each clip's
/// colour jitter, normalised on the device ([`pixels::normalise`]), and the clips' ids (which
/// FineCLIPER's description stream reads; may be empty otherwise), or cached features.
#[derive(Clone, Copy)]
pub(crate) enum HostInput<'a> {
    Pixels {
        face: &'a [u8],
        scene: &'a [u8],
        points: &'a [u8],
        colour: &'a [Colour],
        clips: &'a [String],
        batch: usize,
    },
    Features(&'a HostFeatures),
}

/// Image-tower outputs on the host (what `dfer embed` caches): `face`, `scene` `[B, T, E]`,
/// `early` `[B, P, W]` (empty when not computed).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct HostFeatures {
    pub batch: usize,
    pub face: Vec<f32>,
    pub scene: Vec<f32>,
    pub early: Vec<f32>,
}

/// Called at the end of each section of a training step, with its name: what
/// `dfer bench train-step --profile` times (`src/bench/profile.rs`). A plain step passes `()`.
pub(crate) trait StepMarks {
    fn mark(&mut self, section: &'static str) -> Result<()>;
}

impl StepMarks for () {
    fn mark(&mut self, _: &'static str) -> Result<()> {
        Ok(())
    }
}

/// Optimiser settings per group.
pub(crate) struct OptimSettings {
    pub rule: Rule,
    pub lr: f64,
    pub lr_prompts: f64,
    pub lr_image: Option<f64>,
    pub weight_decay: f64,
    pub grad_clip: f64,
    /// Parts each batch's forward and backward run in (gradients summed; 1 = the whole batch).
    pub accum_steps: usize,
    pub warmup_steps: u64,
    pub total_steps: u64,
    pub decay: Decay,
}

/// What one training step did.
pub(crate) struct StepStats {
    pub losses: Vec<(&'static str, f32)>,
    pub total: f32,
    pub grad_norm: f64,
    pub lr_factor: f64,
}

pub(crate) struct Runner {
    device: Device,
    dtype: DType,
    store: ParamStore,
    model: Network,
    frames: usize,
    image_size: usize,
    dims: (usize, usize, usize),
    opt: Option<(Optimizer, OptimSettings)>,
    weights: LossWeights,
    /// The CLIP checkpoint's files, as found (and for hub sources checked) once at build time.
    clip_files: Option<ClipFiles>,
    /// Seed of the random initialisation.
    seed: u64,
    /// How pixels are scaled for the image tower.
    normalise: Normalise,
    /// FineCLIPER's clip descriptions, tokenized, when that stream is on.
    descriptions: Option<DescriptionTokens>,
    /// Device-to-host reads made so far (every read goes through [`Runner::read_back`]).
    reads: AtomicU64,
}

/// A network as built, with what the runner keeps of how it was built.
struct Built {
    model: Network,
    image_size: usize,
    dims: (usize, usize, usize),
    clip_files: Option<ClipFiles>,
    descriptions: Option<DescriptionTokens>,
}

/// A CLIP method's network: towers of `arch` (or the weights' own sizes), the class texts (labels
/// or DFER-CLIP's descriptions) tokenized into prompts, and the CLIP weights when the config
/// names them.
fn build_clip(
    store: &mut ParamStore,
    cfg: &ModelConfig,
    labels: &[String],
    frames: usize,
    dtype: DType,
) -> Result<Built> {
    let files = cfg.clip_weights.as_ref().map(crate::weights::resolve).transpose()?;
    let towers = cfg.towers(files.as_ref().and_then(|f| f.config.as_deref()))?;
    let (vcfg, tcfg, e) = towers.clone();
    let texts = match cfg.method {
        Method::DferClip => class_descriptions(cfg.descriptions.as_deref(), labels)?,
        Method::FineClip => super::fineclip::label_texts(labels),
        Method::Ous | Method::Ial => labels.to_vec(),
    };
    let clip_texts = cfg.video_descriptions.as_deref().map(video_descriptions::read).transpose()?;
    // A word vocabulary (random towers) must know the descriptions' words too.
    let all: Vec<String> = texts.iter().chain(clip_texts.iter().flat_map(|m| m.values())).cloned().collect();
    let (tok, kind) = tokenizer::choose(&cfg.tokenizer, files.as_ref(), &all, tcfg.vocab_size)?;
    tracing::info!("tokenizer: {kind} ({} tokens)", tok.get_vocab_size(true));
    let tokens = tokenize_prompts(&tok, &texts, cfg.n_ctx, tcfg.context_length)?;
    let descriptions = clip_texts.map(|m| DescriptionTokens::new(&tok, &m, tcfg.context_length)).transpose()?;
    let mut model = Network::new(store, cfg, &towers, frames, tokens)?;
    if let Some(f) = &files {
        let n = store.load_prefixed(&f.weights, &format!("{CLIP_PREFIX}."))?;
        tracing::info!("loaded {n} CLIP tensors from {}", f.weights.display());
    } else if cfg.arch == Arch::VitB16 {
        tracing::warn!(
            "ViT-B/16 towers start from random weights (model.clip_weights is not set); the paper's setting loads CLIP's"
        );
    }
    // No optimiser yet: the image tower is frozen until `set_optimizer` says otherwise.
    model.set_frozen_tower_dtype(dtype)?;
    Ok(Built {
        model,
        image_size: vcfg.image_size,
        dims: (e, cfg.early_blocks(), vcfg.width),
        clip_files: files,
        descriptions,
    })
}

impl Runner {
    /// Builds the model for `labels` and `frames` per clip on `device` (`cpu` | `cuda[:N]`),
    /// loading CLIP weights when the config names them.
    pub(crate) fn new(
        cfg: &ModelConfig,
        labels: &[String],
        frames: usize,
        device: &ComputeDevice,
        weights: LossWeights,
    ) -> Result<Self> {
        let (device, dtype) = device.open()?;
        let mut store = ParamStore::new(&device, cfg.seed);
        let built = if cfg.method.uses_clip() {
            build_clip(&mut store, cfg, labels, frames, dtype)?
        } else {
            let model = Network::ial(&mut store, cfg, frames, labels.len())?;
            Built { model, image_size: ial_net::IMAGE_SIZE, dims: (0, 0, 0), clip_files: None, descriptions: None }
        };
        Ok(Self {
            device,
            dtype,
            store,
            model: built.model,
            frames,
            image_size: built.image_size,
            dims: built.dims,
            opt: None,
            weights,
            clip_files: built.clip_files,
            seed: cfg.seed,
            normalise: cfg.normalise,
            descriptions: built.descriptions,
            reads: AtomicU64::new(0),
        })
    }

    /// Copies an f32 tensor to the host: the one way the runner reads the device, so
    /// [`Runner::host_reads`] counts every synchronisation a step makes.
    fn read_back(&self, t: &Tensor) -> Result<Vec<f32>> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        Ok(t.to_vec1::<f32>()?)
    }

    /// Reads of device memory this runner has made.
    pub(crate) fn host_reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// The first of `clips` the description stream has no text for, and how many it lacks
    /// (`None` when the stream is off or every clip is described).
    pub(crate) fn undescribed<'a>(&self, clips: impl IntoIterator<Item = &'a str>) -> Option<(String, usize)> {
        self.descriptions.as_ref().and_then(|d| d.missing(clips))
    }

    pub(crate) fn device(&self) -> &Device {
        &self.device
    }

    /// Input side length the image tower expects.
    pub(crate) fn image_size(&self) -> usize {
        self.image_size
    }

    /// `(E, P, W)`: embedding width, early blocks cached, image-tower width (zeros without CLIP
    /// towers).
    pub(crate) fn feature_dims(&self) -> (usize, usize, usize) {
        self.dims
    }

    pub(crate) fn uses_scene(&self) -> bool {
        self.model.config().uses_scene()
    }

    /// Whether the model reads landmark frames (FineCLIPER's landmark stream).
    pub(crate) fn uses_points(&self) -> bool {
        self.model.config().landmarks
    }

    /// Parameter counts: (all, being trained).
    pub(crate) fn parameter_counts(&self) -> (usize, usize) {
        let all = [Group::ImageEncoder, Group::TextEncoder, Group::Prompts, Group::Head]
            .iter()
            .map(|&g| self.store.num_elements(g))
            .sum();
        let trained = self.opt.as_ref().map_or(0, |(o, _)| o.trained().map(|(_, v)| v.elem_count()).sum());
        (all, trained)
    }

    pub(crate) fn set_optimizer(&mut self, s: OptimSettings) -> Result<()> {
        let mut groups = vec![
            GroupSettings { group: Group::Head, lr: s.lr, weight_decay: s.weight_decay },
            GroupSettings { group: Group::Prompts, lr: s.lr_prompts, weight_decay: 0.0 },
        ];
        if let Some(lr) = s.lr_image {
            groups.push(GroupSettings { group: Group::ImageEncoder, lr, weight_decay: s.weight_decay });
        }
        self.opt = Some((Optimizer::new(&self.store, groups, s.rule)?, s));
        self.refresh_frozen_tower()
    }

    fn tensor<T: candle_core::WithDType>(&self, data: &[T], shape: &[usize]) -> Result<Tensor> {
        Ok(Tensor::from_slice(data, shape, &Device::Cpu)?.to_device(&self.device)?)
    }

    fn features(&self, input: &HostInput, tower: ImageTower) -> Result<Features> {
        let t = self.frames;
        match input {
            HostInput::Pixels { face, scene, points, colour, clips, batch } => {
                let s = self.image_size;
                let shape = [*batch, t, s, s, 3];
                let upload = |px: &[u8]| -> Result<Option<Tensor>> {
                    match px.is_empty() {
                        true => Ok(None),
                        false => Ok(Some(pixels::normalise(&self.tensor(px, &shape)?, colour, self.normalise)?)),
                    }
                };
                let face = upload(face)?.context("a batch without face frames")?;
                let mut f = self.model.encode(&face, upload(scene)?.as_ref(), self.dtype, tower)?;
                ensure!(
                    points.is_empty() != self.model.config().landmarks,
                    "the landmark stream is {} and the batch has {} landmark frames",
                    if self.model.config().landmarks { "on" } else { "off" },
                    if points.is_empty() { "no" } else { "" }
                );
                if let Some(p) = upload(points)? {
                    f.points = Some(self.model.encode_points(&p, self.dtype)?);
                }
                if let Some(d) = &self.descriptions {
                    ensure!(clips.len() == *batch, "the description stream needs the batch's clip ids");
                    let (ids, eot) = d.batch(clips)?;
                    let ids = self.tensor(&ids, &[*batch, ids.len() / batch])?;
                    f.description = Some(self.model.describe(&ids, &eot)?);
                }
                Ok(f)
            }
            HostInput::Features(h) => {
                ensure!(self.model.config().method.uses_clip(), "cached features are a CLIP image tower's");
                ensure!(
                    self.descriptions.is_none(),
                    "the description stream reads clip ids, which cached features lack"
                );
                let (e, p, w) = self.dims;
                let b = h.batch;
                Ok(Features {
                    face: self.tensor(&h.face, &[b, t, e])?,
                    scene: if h.scene.is_empty() { None } else { Some(self.tensor(&h.scene, &[b, t, e])?) },
                    early: if h.early.is_empty() { None } else { Some(self.tensor(&h.early, &[b, p, w])?) },
                    description: None,
                    points: None,
                })
            }
        }
    }

    /// Runs the image tower only (no gradients) on pixels and returns the features on the host.
    pub(crate) fn encode(&self, face: &[u8], scene: &[u8], colour: &[Colour], batch: usize) -> Result<HostFeatures> {
        let f = self
            .features(&HostInput::Pixels { face, scene, points: &[], colour, clips: &[], batch }, ImageTower::Frozen)?;
        let host = |t: &Tensor| self.read_back(&t.flatten_all()?);
        Ok(HostFeatures {
            batch,
            face: host(&f.face)?,
            scene: f.scene.as_ref().map(host).transpose()?.unwrap_or_default(),
            early: f.early.as_ref().map(host).transpose()?.unwrap_or_default(),
        })
    }

    /// The losses of a training forward pass (`Network::head` in training mode).
    fn losses(&self, feats: &Features, text: Option<&Tensor>, labels: &[u32], polarity: &[u32]) -> Result<Losses> {
        let out = self.model.head(feats, text, true)?;
        let labels = Tensor::from_slice(labels, labels.len(), &self.device)?;
        let polarity = Tensor::from_slice(polarity, polarity.len(), &self.device)?;
        self.model.losses(&out, &labels, &polarity, &self.weights)
    }

    /// One optimisation step on a batch; returns the losses before the update. The device is
    /// read back once, at the end (losses and gradient norm together); a non-finite loss or norm
    /// is an error after that read, and the run stops before anything is saved from it.
    pub(crate) fn train_step(&mut self, input: &HostInput, labels: &[u32], polarity: &[u32]) -> Result<StepStats> {
        self.marked_step(input, labels, polarity, &mut ())
    }

    /// [`Runner::train_step`], calling `t` at the end of each of its sections.
    pub(crate) fn marked_step(
        &mut self,
        input: &HostInput,
        labels: &[u32],
        polarity: &[u32],
        t: &mut dyn StepMarks,
    ) -> Result<StepStats> {
        let (opt, s) = self.opt.as_ref().context("train_step before set_optimizer")?;
        let tower = self.tower();
        let step = opt.step_count();
        let lr_factor = schedule(step, s.warmup_steps, s.total_steps, &s.decay);
        let clip = (s.grad_clip > 0.0).then_some(s.grad_clip);
        let accum = s.accum_steps.max(1);
        let text = self.model.class_features()?;
        t.mark("forward: text tower (prompts)")?;
        let batch = labels.len();
        // Only the trained parameters' gradients are kept from each part: a part's own store
        // also holds gradients of its other leaves, which would keep its memory alive.
        let mut grads = Tensor::zeros((), DType::F32, &self.device)?.backward()?;
        let mut losses: Option<Losses> = None;
        for (part, range) in split_batch(input, batch, accum)? {
            let feats = self.features(&part.as_input(), tower)?;
            t.mark("upload + image tower")?;
            let mut l = self.losses(&feats, text.as_ref(), &labels[range.clone()], &polarity[range.clone()])?;
            if accum > 1 {
                l = l.scaled(range.len() as f64 / batch as f64)?;
            }
            t.mark("forward: head + losses")?;
            let g = l.total.backward()?;
            let l = l.detached();
            t.mark("backward")?;
            let opt = &self.opt.as_ref().expect("checked above").0;
            add_grads(&mut grads, &g, opt.trained().map(|(_, v)| v.as_tensor()))?;
            drop(g);
            losses = Some(match losses {
                None => l,
                Some(acc) => acc.plus(&l)?,
            });
        }
        let losses = losses.context("an empty batch")?;
        let (opt, _) = self.opt.as_mut().expect("checked above");
        let norm = opt.grad_norm(&grads)?;
        t.mark("gradient norm")?;
        opt.step(&grads, &norm, lr_factor, clip)?;
        t.mark("clip + optimiser update")?;
        let mut scalars = vec![losses.total.clone(), norm];
        scalars.extend(losses.parts.iter().map(|(_, v)| v.clone()));
        let values = self.read_back(&Tensor::stack(&scalars, 0)?.to_dtype(DType::F32)?)?;
        t.mark("read-back")?;
        let (total, grad_norm) = (values[0], values[1]);
        ensure!(total.is_finite(), "loss is {total} at step {}", step + 1);
        ensure!(grad_norm.is_finite(), "gradient norm is {grad_norm} at step {}", step + 1);
        let losses = losses.parts.iter().zip(&values[2..]).map(|((n, _), v)| (*n, *v)).collect();
        Ok(StepStats { losses, total, grad_norm: grad_norm as f64, lr_factor })
    }

    /// The network, and the features of `input` through the frozen image tower (for the
    /// per-module profile, `src/bench/profile.rs`).
    pub(crate) fn network_and_features(&self, input: &HostInput) -> Result<(&Network, Features)> {
        Ok((&self.model, self.features(input, ImageTower::Frozen)?))
    }

    /// Class scores `[B][K]` for a batch.
    pub(crate) fn predict(&self, input: &HostInput) -> Result<Vec<Vec<f32>>> {
        let feats = self.features(input, ImageTower::Frozen)?;
        let text = self.model.class_features()?.map(|t| t.detach());
        let out = self.model.head(&feats, text.as_ref(), false)?;
        let (b, k) = out.logits.dims2()?;
        let flat = self.read_back(&out.logits.flatten_all()?.to_dtype(DType::F32)?)?;
        Ok(flat.chunks(k.max(1)).take(b).map(<[f32]>::to_vec).collect())
    }

    /// Writes the weights (`<stem>.safetensors`) and, when training, the optimiser moments
    /// (`<stem>.optim.safetensors`); returns the optimiser step.
    pub(crate) fn save(&self, weights: &Path, optim: &Path) -> Result<u64> {
        self.store.save_groups(weights, &self.saved_groups())?;
        match &self.opt {
            Some((opt, _)) => {
                candle_core::safetensors::save(&opt.state(), optim)
                    .with_context(|| format!("{}: cannot write", optim.display()))?;
                Ok(opt.step_count())
            }
            None => Ok(0),
        }
    }

    pub(crate) fn load_weights(&mut self, weights: &Path) -> Result<()> {
        self.store.load_groups(weights, &[Group::Prompts, Group::Head, Group::Buffers], Group::ImageEncoder)?;
        self.refresh_frozen_tower()
    }

    /// Whether the optimiser trains the image tower (fine-tuning).
    fn image_trained(&self) -> bool {
        self.opt.as_ref().is_some_and(|(_, s)| s.lr_image.is_some())
    }

    /// The image tower a training step runs: the trained one when fine-tuning.
    fn tower(&self) -> ImageTower {
        if self.image_trained() {
            ImageTower::Trained
        } else {
            ImageTower::Frozen
        }
    }

    /// The frozen image tower's weights in the compute dtype, cast once from the current
    /// weights, unless the tower is trained (then they follow its f32 weights).
    fn refresh_frozen_tower(&mut self) -> Result<()> {
        let dtype = if self.image_trained() { DType::F32 } else { self.dtype };
        self.model.set_frozen_tower_dtype(dtype)
    }

    /// What a checkpoint holds: the trained groups and the buffers training moves (IAL's
    /// BatchNorm statistics). The text tower is always frozen and the image tower unless
    /// fine-tuned; both are rebuilt from their source (the CLIP files or the seed, which
    /// [`Runner::towers_hash`] identifies), not copied into every epoch's file.
    fn saved_groups(&self) -> Vec<Group> {
        let mut groups = vec![Group::Prompts, Group::Head, Group::Buffers];
        if self.image_trained() {
            groups.push(Group::ImageEncoder);
        }
        groups
    }

    /// SHA-256 of where the CLIP towers' weights come from (see [`Runner::hash_towers`]).
    pub(crate) fn towers_hash(&self) -> Result<String> {
        let mut h = Sha256::new();
        self.hash_towers(&mut h)?;
        Ok(crate::digest::hex(&h.finalize()))
    }

    /// Feeds `h` the source of the CLIP towers' weights: the checkpoint's files (weights, then
    /// config, streamed), for random towers `random:<seed>`, and `none` for a method without
    /// towers (IAL: its checkpoints hold its whole network).
    pub(crate) fn hash_towers(&self, h: &mut Sha256) -> Result<()> {
        if !self.model.config().method.uses_clip() {
            h.update("none");
            return Ok(());
        }
        match &self.clip_files {
            Some(files) => {
                for f in std::iter::once(&files.weights).chain(&files.config) {
                    let mut file = std::fs::File::open(f).with_context(|| format!("{}: cannot read", f.display()))?;
                    std::io::copy(&mut file, h).with_context(|| format!("{}: cannot read", f.display()))?;
                }
            }
            None => h.update(format!("random:{}", self.seed)),
        }
        Ok(())
    }

    pub(crate) fn load_optimizer(&mut self, optim: &Path, step: u64) -> Result<()> {
        let state: HashMap<String, Tensor> = candle_core::safetensors::load(optim, &self.device)
            .with_context(|| format!("{}: not a readable optimizer state", optim.display()))?;
        let (opt, _) = self.opt.as_mut().context("load_optimizer before set_optimizer")?;
        opt.load_state(&state, step, &optim.display().to_string())
    }

    /// For tests: names of trainable tensors whose gradient on this batch is missing, zero or
    /// not finite.
    #[cfg(test)]
    pub(crate) fn dead_gradients(&self, input: &HostInput, labels: &[u32], polarity: &[u32]) -> Result<Vec<String>> {
        let (opt, _) = self.opt.as_ref().context("dead_gradients before set_optimizer")?;
        let feats = self.features(input, self.tower())?;
        let text = self.model.class_features()?;
        let grads = self.losses(&feats, text.as_ref(), labels, polarity)?.total.backward()?;
        let mut dead = Vec::new();
        for (name, var) in opt.trained() {
            let ok = match grads.get(var.as_tensor()) {
                Some(g) => {
                    let a = g.abs()?.sum_all()?.to_scalar::<f32>()?;
                    a.is_finite() && a > 0.0
                }
                None => false,
            };
            if !ok {
                dead.push(name.to_string());
            }
        }
        Ok(dead)
    }
}

/// A batch's part on the host: borrowed pixel rows, or copied feature rows.
enum Part<'a> {
    Pixels(HostInput<'a>),
    Features(HostFeatures),
}

impl Part<'_> {
    fn as_input(&self) -> HostInput<'_> {
        match self {
            Part::Pixels(input) => *input,
            Part::Features(f) => HostInput::Features(f),
        }
    }
}

/// Rows `r` of `v`, which holds `batch` equal rows.
fn rows<'a, T>(v: &'a [T], batch: usize, r: &std::ops::Range<usize>) -> &'a [T] {
    let per = v.len() / batch;
    &v[r.start * per..r.end * per]
}

/// `input` (of `batch` clips) cut into `parts` runs of consecutive clips, with their clip ranges.
fn split_batch<'a>(
    input: &'a HostInput,
    batch: usize,
    parts: usize,
) -> Result<Vec<(Part<'a>, std::ops::Range<usize>)>> {
    ensure!(batch > 0, "an empty batch");
    let size = batch.div_ceil(parts.min(batch));
    Ok((0..batch)
        .step_by(size)
        .map(|start| {
            let r = start..(start + size).min(batch);
            let part = match input {
                HostInput::Pixels { face, scene, points, colour, clips, .. } => Part::Pixels(HostInput::Pixels {
                    face: rows(face, batch, &r),
                    scene: rows(scene, batch, &r),
                    points: rows(points, batch, &r),
                    colour: rows(colour, batch, &r),
                    clips: rows(clips, batch, &r),
                    batch: r.len(),
                }),
                HostInput::Features(h) => Part::Features(HostFeatures {
                    batch: r.len(),
                    face: rows(&h.face, batch, &r).to_vec(),
                    scene: rows(&h.scene, batch, &r).to_vec(),
                    early: rows(&h.early, batch, &r).to_vec(),
                }),
            };
            (part, r)
        })
        .collect())
}

/// Adds to `acc` the gradients in `more` of each of `vars`.
fn add_grads<'a>(acc: &mut GradStore, more: &GradStore, vars: impl Iterator<Item = &'a Tensor>) -> Result<()> {
    for v in vars {
        if let Some(g) = more.get(v) {
            let sum = match acc.get(v) {
                Some(a) => (a + g)?,
                None => g.clone(),
            };
            acc.insert(v, sum);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Colour draws of three clips: none, and two jittered.
    const COLOUR: [Colour; 3] = [[1.0; 3], [1.2, 0.8, 1.1], [0.9, 1.1, 0.7]];

    fn tiny(use_scene: bool) -> (Runner, Vec<u8>, Vec<u8>) {
        let cfg = ModelConfig {
            arch: Arch::Tiny,
            heads: 4,
            n_ctx: 2,
            sim_dim: 8,
            use_scene,
            use_polarity: use_scene,
            ..Default::default()
        };
        tiny_with(&cfg)
    }

    /// AdamW at `lr` (prompts 1e-3; the image tower at `lr_image`, frozen when none), clipping
    /// at 1, a cosine over 10 steps.
    fn adamw(lr: f64, lr_image: Option<f64>) -> OptimSettings {
        OptimSettings {
            rule: Rule::AdamW,
            lr,
            lr_prompts: 1e-3,
            lr_image,
            weight_decay: 0.0,
            grad_clip: 1.0,
            accum_steps: 1,
            warmup_steps: 0,
            total_steps: 10,
            decay: Decay::Cosine { floor: 0.1 },
        }
    }

    /// A runner of `cfg` for three classes and T = 2 (image tower fine-tuned), and three clips.
    fn tiny_with(cfg: &ModelConfig) -> (Runner, Vec<u8>, Vec<u8>) {
        let labels: Vec<String> = ["Happy", "Sad", "Angry"].iter().map(|s| s.to_string()).collect();
        let mut r = Runner::new(cfg, &labels, 2, &ComputeDevice::Cpu, LossWeights::default()).unwrap();
        r.set_optimizer(adamw(1e-3, Some(1e-4))).unwrap();
        let n = 3 * 2 * 3 * 32 * 32;
        let face: Vec<u8> = (0..n).map(|i| ((i * 7919) % 255) as u8).collect();
        let scene: Vec<u8> = (0..n).map(|i| ((i * 104_729) % 253) as u8).collect();
        (r, face, scene)
    }

    /// DFER-CLIP (class-specific contexts before descriptions) and the frame gate under either method: every
    /// trainable tensor gets a gradient, and a DFER-CLIP step reads faces only.
    #[test]
    fn dfer_clip_and_the_frame_gate_give_every_trainable_tensor_a_gradient() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("descriptions.toml");
        std::fs::write(
            &d,
            "Happy = \"raised cheeks\"\nSad = \"lowered mouth corners\"\nAngry = \"pressed lips, low brows\"\n",
        )
        .unwrap();
        for (method, descriptions) in [(Method::Ous, None), (Method::DferClip, Some(d))] {
            // The tiny tower's 32-wide features give the frame gate 2 hidden units; seed 1 starts
            // them alive (with both ReLUs dead at initialisation no gradient could reach the block).
            let cfg = ModelConfig {
                method,
                descriptions,
                frame_gate: true,
                seed: 1,
                arch: Arch::Tiny,
                heads: 4,
                n_ctx: 2,
                sim_dim: 8,
                ..Default::default()
            };
            let (mut r, face, scene) = tiny_with(&cfg);
            let input =
                HostInput::Pixels { face: &face, scene: &scene, points: &[], colour: &COLOUR, clips: &[], batch: 3 };
            let dead = r.dead_gradients(&input, &[0, 1, 2], &[2, 0, 0]).unwrap();
            assert!(dead.is_empty(), "{method}: no gradient for {dead:?}");
            let names: Vec<String> = r.opt.as_ref().unwrap().0.trained().map(|(n, _)| n.to_string()).collect();
            assert!(names.iter().any(|n| n.contains(".frame_gate.")), "{method}: {names:?}");
            if method == Method::DferClip {
                assert!(!r.uses_scene());
                let ctx = r.store.get("prompt_learner.ctx").unwrap().as_tensor().dims().to_vec();
                assert_eq!(ctx, [3, 2, 32], "one context per class");
                let faces_only =
                    HostInput::Pixels { face: &face, scene: &[], points: &[], colour: &COLOUR, clips: &[], batch: 3 };
                let s = r.train_step(&faces_only, &[0, 1, 2], &[0, 0, 0]).unwrap();
                assert_eq!(s.losses.iter().map(|(n, _)| *n).collect::<Vec<_>>(), ["cont"]);
            }
        }
    }

    /// FineCLIPER: the optimiser trains its adapters, prompt context and fusion weights and
    /// nothing else (every CLIP weight frozen), and after one step (the adapters' up-projections
    /// start at zero, so their down-projections get no gradient before it) each of them
    /// receives a gradient; the image features then differ from plain CLIP's.
    #[test]
    fn fineclip_trains_its_adapters_context_and_fusion_weights_only() {
        let cfg = ModelConfig { method: Method::FineClip, arch: Arch::Tiny, n_ctx: 2, seed: 1, ..Default::default() };
        let (mut r, face, _) = tiny_with(&cfg);
        r.set_optimizer(adamw(1e-2, None)).unwrap();
        let names: Vec<String> = r.opt.as_ref().unwrap().0.trained().map(|(n, _)| n.to_string()).collect();
        assert!(
            names.iter().all(|n| n.starts_with("fineclip.") || n == "prompt_learner.ctx"),
            "only adapters, context and fusion weights: {names:?}"
        );
        for part in ["fineclip.image.0.attn.down.weight", "fineclip.text_negative.1.mlp.up.bias", "fineclip.fusion"] {
            assert!(names.iter().any(|n| n == part), "{part} is trained: {names:?}");
        }
        let (all, trained) = r.parameter_counts();
        let towers = r.store.num_elements(Group::ImageEncoder) + r.store.num_elements(Group::TextEncoder);
        assert_eq!(all - trained, towers, "every CLIP weight is frozen");
        let plain = {
            let ous = ModelConfig { method: Method::Ous, ..cfg.clone() };
            tiny_with(&ous).0.encode(&face, &[], &COLOUR, 3).unwrap().face
        };
        let largest = |a: &[f32]| a.iter().zip(&plain).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        let before = largest(&r.encode(&face, &[], &COLOUR, 3).unwrap().face);
        assert!(before < 1e-5, "untrained adapters: plain CLIP's features (up to rounding), {before}");
        let input = HostInput::Pixels { face: &face, scene: &[], points: &[], colour: &COLOUR, clips: &[], batch: 3 };
        r.train_step(&input, &[0, 1, 2], &[0, 0, 0]).unwrap();
        let dead = r.dead_gradients(&input, &[0, 1, 2], &[0, 0, 0]).unwrap();
        assert!(dead.is_empty(), "no gradient for {dead:?}");
        let after = largest(&r.encode(&face, &[], &COLOUR, 3).unwrap().face);
        assert!(after > 1e-3, "trained adapters change the features: {after}");
    }

    /// A FineCLIPER runner of `cfg` with AdamW at 1e-2, checking that each of `parts` is trained.
    fn fineclip_training(cfg: &ModelConfig, parts: &[&str]) -> (Runner, Vec<u8>, Vec<u8>) {
        let (mut r, face, scene) = tiny_with(cfg);
        r.set_optimizer(adamw(1e-2, None)).unwrap();
        let names: Vec<String> = r.opt.as_ref().unwrap().0.trained().map(|(n, _)| n.to_string()).collect();
        for part in parts {
            assert!(names.iter().any(|n| n == part), "{part} is trained: {names:?}");
        }
        (r, face, scene)
    }

    /// FineCLIPER with the description stream: its description adapters and stream weights are
    /// trained too, each gets a gradient after a step, and a clip's scores follow its
    /// description (the same frames, described otherwise, score otherwise).
    #[test]
    fn fineclip_description_stream_is_trained_and_read_per_clip() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("descriptions.jsonl");
        let lines = [("c0", "the mouth corners rise"), ("c1", "the brows fall"), ("c2", "the lips press hard")];
        let text: String =
            lines.iter().map(|(c, d)| format!("{{\"clip\": \"{c}\", \"description\": \"{d}\"}}\n")).collect();
        std::fs::write(&file, text).unwrap();
        let cfg = ModelConfig {
            method: Method::FineClip,
            arch: Arch::Tiny,
            n_ctx: 2,
            seed: 1,
            video_descriptions: Some(file),
            ..Default::default()
        };
        let (mut r, face, _) =
            fineclip_training(&cfg, &["fineclip.text_description.0.attn.down.weight", "fineclip.streams"]);
        let clips: Vec<String> = ["c0", "c1", "c2"].map(String::from).to_vec();
        assert_eq!(r.undescribed(["c2", "c9"]), Some(("c9".to_string(), 1)));
        let input =
            HostInput::Pixels { face: &face, scene: &[], points: &[], colour: &COLOUR, clips: &clips, batch: 3 };
        r.train_step(&input, &[0, 1, 2], &[0, 0, 0]).unwrap();
        let dead = r.dead_gradients(&input, &[0, 1, 2], &[0, 0, 0]).unwrap();
        assert!(dead.is_empty(), "no gradient for {dead:?}");
        let swapped: Vec<String> = ["c1", "c2", "c0"].map(String::from).to_vec();
        let other =
            HostInput::Pixels { face: &face, scene: &[], points: &[], colour: &COLOUR, clips: &swapped, batch: 3 };
        assert_ne!(r.predict(&input).unwrap(), r.predict(&other).unwrap(), "scores follow the descriptions");
        let none = HostInput::Pixels { face: &face, scene: &[], points: &[], colour: &COLOUR, clips: &[], batch: 3 };
        assert!(format!("{:#}", r.predict(&none).unwrap_err()).contains("clip ids"));
    }

    /// FineCLIPER with the landmark stream: its image adapters for the landmark frames and the
    /// stream weights are trained, each gets a gradient after a step, and the scores follow the
    /// landmark frames; a batch without them is refused.
    #[test]
    fn fineclip_landmark_stream_is_trained_and_read() {
        let cfg = ModelConfig {
            method: Method::FineClip,
            arch: Arch::Tiny,
            n_ctx: 2,
            seed: 1,
            landmarks: true,
            ..Default::default()
        };
        let (mut r, face, scene) =
            fineclip_training(&cfg, &["fineclip.image_points.1.mlp.up.weight", "fineclip.streams"]);
        assert!(r.uses_points());
        let input =
            HostInput::Pixels { face: &face, scene: &[], points: &scene, colour: &COLOUR, clips: &[], batch: 3 };
        r.train_step(&input, &[0, 1, 2], &[0, 0, 0]).unwrap();
        let dead = r.dead_gradients(&input, &[0, 1, 2], &[0, 0, 0]).unwrap();
        assert!(dead.is_empty(), "no gradient for {dead:?}");
        let other = HostInput::Pixels { face: &face, scene: &[], points: &face, colour: &COLOUR, clips: &[], batch: 3 };
        assert_ne!(r.predict(&input).unwrap(), r.predict(&other).unwrap(), "scores follow the landmark frames");
        let none = HostInput::Pixels { face: &face, scene: &[], points: &[], colour: &COLOUR, clips: &[], batch: 3 };
        assert!(format!("{:#}", r.predict(&none).unwrap_err()).contains("no landmark frames"));
    }

    #[test]
    fn frozen_tower_is_cast_once_and_follows_the_tower_when_trained() {
        let (mut r, face, scene) = tiny(true);
        // Fine-tuned: the frozen copy is the trained f32 weights themselves.
        assert_eq!(r.model.frozen_tower_dtype(), DType::F32);
        let before = r.encode(&face, &scene, &COLOUR, 3).unwrap();
        let input =
            HostInput::Pixels { face: &face, scene: &scene, points: &[], colour: &COLOUR, clips: &[], batch: 3 };
        r.train_step(&input, &[0, 1, 2], &[2, 0, 0]).unwrap();
        let after = r.encode(&face, &scene, &COLOUR, 3).unwrap();
        assert_ne!(before.face, after.face, "the frozen forward follows the fine-tuned weights");

        // A tower computing in half precision that is not trained holds its weights in that
        // dtype, cast once (CUDA runs bf16; candle's CPU matmul has f16 but no bf16).
        r.dtype = DType::F16;
        r.opt.as_mut().unwrap().1.lr_image = None;
        r.refresh_frozen_tower().unwrap();
        assert_eq!(r.model.frozen_tower_dtype(), DType::F16);
        let half = r.encode(&face, &scene, &COLOUR, 3).unwrap();
        let worst = after.face.iter().zip(&half.face).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let scale = after.face.iter().map(|a| a.abs()).fold(0f32, f32::max);
        assert!(worst > 0.0 && worst < 0.05 * scale, "half-precision features within 5 % of f32: {worst} of {scale}");
    }

    #[test]
    fn every_trainable_tensor_receives_a_gradient() {
        let (r, face, scene) = tiny(true);
        let input =
            HostInput::Pixels { face: &face, scene: &scene, points: &[], colour: &COLOUR, clips: &[], batch: 3 };
        let dead = r.dead_gradients(&input, &[0, 1, 2], &[2, 0, 0]).unwrap();
        assert!(dead.is_empty(), "no gradient for {dead:?}");
        let (all, trained) = r.parameter_counts();
        assert!(trained > 0 && trained < all, "text tower stays frozen: {trained} of {all}");
    }

    /// Gradient accumulation: a batch in parts gives the whole batch's losses and update (the
    /// image tower fine-tuned too, so every group's gradients are summed), up to rounding.
    #[test]
    fn accumulated_parts_give_the_whole_batchs_step() {
        let (mut whole, face, scene) = tiny(true);
        let (mut parts, _, _) = tiny(true);
        if let Some((_, s)) = parts.opt.as_mut() {
            s.accum_steps = 2;
        }
        let input =
            HostInput::Pixels { face: &face, scene: &scene, points: &[], colour: &COLOUR, clips: &[], batch: 3 };
        let (labels, polarity) = ([0, 1, 2], [2, 0, 0]);
        for _ in 0..2 {
            let a = whole.train_step(&input, &labels, &polarity).unwrap();
            let b = parts.train_step(&input, &labels, &polarity).unwrap();
            assert!((a.total - b.total).abs() < 1e-5, "loss {} vs {}", a.total, b.total);
            assert!(
                (a.grad_norm - b.grad_norm).abs() < 1e-4 * a.grad_norm.max(1.0),
                "{} vs {}",
                a.grad_norm,
                b.grad_norm
            );
            for ((n, x), (m, y)) in a.losses.iter().zip(&b.losses) {
                assert!(n == m && (x - y).abs() < 1e-5, "{n}: {x} vs {y}");
            }
        }
        let (p, q) = (whole.predict(&input).unwrap(), parts.predict(&input).unwrap());
        for (x, y) in p.iter().flatten().zip(q.iter().flatten()) {
            assert!((x - y).abs() < 1e-3, "scores after two steps: {p:?} vs {q:?}");
        }
    }

    #[test]
    fn training_steps_lower_the_loss_and_face_only_runs() {
        let (mut r, face, scene) = tiny(true);
        let input =
            HostInput::Pixels { face: &face, scene: &scene, points: &[], colour: &COLOUR, clips: &[], batch: 3 };
        let first = r.train_step(&input, &[0, 1, 2], &[2, 0, 0]).unwrap().total;
        let mut last = first;
        for _ in 0..8 {
            last = r.train_step(&input, &[0, 1, 2], &[2, 0, 0]).unwrap().total;
        }
        assert!(last < first, "loss {first} → {last}");
        let (mut f, face, _) = tiny(false);
        let input = HostInput::Pixels { face: &face, scene: &[], points: &[], colour: &COLOUR, clips: &[], batch: 3 };
        let s = f.train_step(&input, &[0, 1, 2], &[0, 0, 0]).unwrap();
        assert!(s.losses.iter().all(|(n, _)| *n == "cont" || *n == "global"), "{:?}", s.losses);
        assert_eq!(f.predict(&input).unwrap().len(), 3);
    }

    #[test]
    fn the_intensity_aware_loss_joins_the_total_with_its_weight() {
        let (mut r, face, scene) = tiny(true);
        r.weights.ial = 0.1;
        let input =
            HostInput::Pixels { face: &face, scene: &scene, points: &[], colour: &COLOUR, clips: &[], batch: 3 };
        let s = r.train_step(&input, &[0, 1, 2], &[2, 0, 0]).unwrap();
        let part = |name: &str| s.losses.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        let ial = part("ial").expect("an ial part");
        assert!(ial > 0.0, "{ial}");
        let w = &r.weights;
        let want = part("cont").unwrap() as f64
            + w.global * part("global").unwrap() as f64
            + w.sim * part("sim").unwrap() as f64
            + w.pol * part("pol").unwrap() as f64
            + 0.1 * ial as f64;
        assert!((s.total as f64 - want).abs() < 1e-4, "total {} vs parts {want}", s.total);
    }

    /// An IAL runner (T = 3 frames, three classes, SGD as their recipe) with `weights`, and two
    /// clips of 112 px frames.
    fn ial(weights: LossWeights) -> (Runner, Vec<u8>) {
        let cfg = ModelConfig { method: Method::Ial, normalise: Normalise::Unit, seed: 3, ..Default::default() };
        let labels: Vec<String> = ["Happy", "Sad", "Angry"].iter().map(|s| s.to_string()).collect();
        let mut r = Runner::new(&cfg, &labels, 3, &ComputeDevice::Cpu, weights).unwrap();
        r.set_optimizer(OptimSettings {
            rule: Rule::Sgd { momentum: 0.9 },
            lr: 1e-3,
            lr_prompts: 0.0,
            lr_image: None,
            weight_decay: 0.1,
            grad_clip: 0.0,
            accum_steps: 1,
            warmup_steps: 0,
            total_steps: 10,
            decay: Decay::Steps { milestones: vec![7], gamma: 0.5 },
        })
        .unwrap();
        let n = 2 * 3 * 112 * 112 * 3;
        (r, (0..n).map(|i| ((i * 7919) % 251) as u8).collect())
    }

    /// Every trainable tensor of the IAL network receives a finite, non-zero gradient: with
    /// layer 3's auxiliary loss weighted (Li et al. weigh it 0, which gives its classifier an
    /// exact zero, as theirs), and nothing of CLIP is built.
    #[test]
    fn ial_gives_every_trainable_tensor_a_gradient() {
        let (r, face) = ial(LossWeights { ial: 0.1, gca_aux: [0.05, 0.05], ..Default::default() });
        let input =
            HostInput::Pixels { face: &face, scene: &[], points: &[], colour: &COLOUR[..2], clips: &[], batch: 2 };
        let dead = r.dead_gradients(&input, &[0, 2], &[0, 0]).unwrap();
        assert!(dead.is_empty(), "no gradient for {dead:?}");
        let (all, trained) = r.parameter_counts();
        assert_eq!(all, trained, "the whole network is trained");
        assert!(r.store.group(Group::ImageEncoder).is_empty() && r.store.group(Group::TextEncoder).is_empty());
        assert_eq!(r.image_size(), 112);
        let names: Vec<String> = r.opt.as_ref().unwrap().0.trained().map(|(n, _)| n.to_string()).collect();
        assert!(
            names.iter().any(|n| n == "s_former.layer3.0.AUX_fc.1.weight") && names.iter().any(|n| n == "fc_f.bias")
        );
    }

    /// An IAL step: the loss is CE + 0.05·aux2 + 0·aux3 + 0.1·IAL (their weights), BatchNorm's
    /// running statistics move in training only, and a checkpoint carries them, so a reloaded
    /// runner predicts the same.
    #[test]
    fn ial_steps_weigh_their_losses_and_checkpoints_keep_batch_norm_statistics() {
        let (mut r, face) = ial(LossWeights { ial: 0.1, ..Default::default() });
        let input =
            HostInput::Pixels { face: &face, scene: &[], points: &[], colour: &COLOUR[..2], clips: &[], batch: 2 };
        let running = |r: &Runner| r.store.get("s_former.bn1.running_mean").unwrap().to_vec1::<f32>().unwrap();
        let before = running(&r);
        let first = r.predict(&input).unwrap();
        assert_eq!(running(&r), before, "evaluation leaves the running statistics");
        let s = r.train_step(&input, &[0, 2], &[0, 0]).unwrap();
        assert_ne!(running(&r), before, "training moves them");
        let names: Vec<&str> = s.losses.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["cont", "aux2", "aux3", "ial"]);
        let part = |name: &str| f64::from(s.losses.iter().find(|(n, _)| *n == name).unwrap().1);
        let want = part("cont") + 0.05 * part("aux2") + 0.1 * part("ial");
        assert!((f64::from(s.total) - want).abs() < 1e-4, "total {} vs {want}", s.total);
        let after = r.predict(&input).unwrap();
        assert_ne!(first, after);
        let dir = tempfile::tempdir().unwrap();
        let (w, o) = (dir.path().join("w.safetensors"), dir.path().join("o.safetensors"));
        r.save(&w, &o).unwrap();
        let (mut again, _) = ial(LossWeights { ial: 0.1, ..Default::default() });
        again.load_weights(&w).unwrap();
        assert_eq!(running(&again), running(&r));
        assert_eq!(again.predict(&input).unwrap(), after, "the reloaded network predicts the same");
    }
}
