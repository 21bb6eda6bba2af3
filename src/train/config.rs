//! The training configuration (`train.toml`, saved resolved as `runs/<name>/config.toml`).
//! Relative paths are resolved against the directory of the file they appear in.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::error::UsageError;
use crate::model::config::{LossWeights, Method, ModelConfig};
use crate::model::optim::{Decay, Rule};
use crate::model::tokenizer::TokenizerChoice;
use crate::model::ComputeDevice;
use crate::text_enum::text_enum;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrainConfig {
    pub data: DataConfig,
    #[serde(default)]
    pub model: ModelConfig,
    #[serde(default)]
    pub loss: LossWeights,
    #[serde(default)]
    pub train: Schedule,
    #[serde(default)]
    pub aug: Augment,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct DataConfig {
    /// Clip manifest (`clips.parquet`) the shards were made from: fold membership comes from it.
    pub manifest: PathBuf,
    /// Folder of prep's shards (`NNNNN.h5`).
    pub shards: PathBuf,
    /// Fold (1-based) for k-fold datasets; ignored by single-split ones. `--fold` overrides.
    #[serde(default = "one")]
    pub fold: u32,
    /// Feature cache made by `dfer embed` (train only the light modules from it).
    #[serde(default)]
    pub features: Option<PathBuf>,
}

fn one() -> u32 {
    1
}

text_enum! {
    /// `train.optimizer`.
    #[derive(Default)]
    pub enum OptimizerChoice("optimizer") {
        /// AdamW (ours, the default).
        #[default]
        AdamW = "adamw",
        /// SGD with momentum (DFER-CLIP's paper recipe).
        Sgd = "sgd",
    }
}

text_enum! {
    /// `train.lr_decay`: how the learning rate falls after the warmup.
    #[derive(Default)]
    pub enum LrDecay("learning-rate decay") {
        /// Cosine to `min_lr_ratio` at the last epoch (ours, the default).
        #[default]
        Cosine = "cosine",
        /// Times `gamma` at each epoch of `milestones` (PyTorch's MultiStepLR; DFER-CLIP's recipe).
        Steps = "steps",
    }
}

text_enum! {
    /// `train.no_face_clips`: what training does with clips prep found no face in (every frame
    /// the centre fallback). Evaluation always scores them.
    #[derive(Default)]
    pub enum NoFaceClips("no_face_clips") {
        /// Left out of training, counted in the log (the default).
        #[default]
        LeaveOut = "leave_out",
        /// Trained on like any other clip.
        Use = "use",
    }
}

/// Optimisation settings (DFER-CLIP-like defaults, ours).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Schedule {
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: ComputeDevice,
    pub epochs: u32,
    pub batch_size: usize,
    /// Each batch runs forward and backward in this many parts whose gradients are summed before
    /// one update (ours: a fine-tuned tower's activations for a batch of 32 clips need not fit at
    /// once). Losses are weighted by each part's share of the batch, so the update is the whole
    /// batch's up to rounding.
    pub accum_steps: usize,
    /// Learning rate of the OUS modules.
    pub lr: f64,
    /// Learning rate of the prompt context.
    pub lr_prompts: f64,
    /// Fine-tune the image tower at `lr_image` (off: frozen, the default recipe).
    pub finetune_image: bool,
    pub lr_image: f64,
    pub weight_decay: f64,
    pub warmup_epochs: f64,
    /// Final learning rate as a fraction of the peak (cosine schedule).
    pub min_lr_ratio: f64,
    /// Global gradient-norm clip (0 = none).
    pub grad_clip: f64,
    /// `adamw` or `sgd`.
    pub optimizer: OptimizerChoice,
    /// SGD's momentum.
    pub momentum: f64,
    /// `cosine` or `steps`.
    pub lr_decay: LrDecay,
    /// Epochs after which the learning rate is multiplied by `gamma` (`lr_decay = "steps"`).
    pub milestones: Vec<u32>,
    pub gamma: f64,
    /// Training clips without a face found: `leave_out` or `use`.
    pub no_face_clips: NoFaceClips,
    /// Leave out each epoch's last batch when it is smaller than `batch_size` (PyTorch's
    /// `drop_last`, as DFER-CLIP's loader does).
    pub drop_last: bool,
    /// Seed of data order and augmentation (each epoch derives its own generator from it).
    pub seed: u64,
    /// Threads preparing batches.
    pub loader_threads: usize,
    /// Batches prepared ahead.
    pub prefetch: usize,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            device: ComputeDevice::Cpu,
            epochs: 20,
            batch_size: 32,
            accum_steps: 1,
            lr: 1e-3,
            lr_prompts: 2e-3,
            finetune_image: false,
            lr_image: 1e-5,
            weight_decay: 0.01,
            warmup_epochs: 1.0,
            min_lr_ratio: 0.01,
            grad_clip: 1.0,
            optimizer: OptimizerChoice::AdamW,
            momentum: DEFAULT_MOMENTUM,
            lr_decay: LrDecay::Cosine,
            milestones: Vec::new(),
            gamma: DEFAULT_GAMMA,
            no_face_clips: NoFaceClips::LeaveOut,
            drop_last: false,
            seed: 0,
            loader_threads: 2,
            prefetch: 2,
        }
    }
}

const DEFAULT_MOMENTUM: f64 = 0.9;
const DEFAULT_GAMMA: f64 = 0.1;

impl Schedule {
    /// Optimiser steps per epoch over `clips` training clips.
    pub(crate) fn steps_per_epoch(&self, clips: usize) -> u64 {
        match self.drop_last {
            true => (clips / self.batch_size) as u64,
            false => clips.div_ceil(self.batch_size) as u64,
        }
    }

    /// The optimiser's update rule.
    pub(crate) fn rule(&self) -> Rule {
        match self.optimizer {
            OptimizerChoice::AdamW => Rule::AdamW,
            OptimizerChoice::Sgd => Rule::Sgd { momentum: self.momentum },
        }
    }

    /// The decay after the warmup, with milestones in steps of `steps_per_epoch`.
    pub(crate) fn decay(&self, steps_per_epoch: u64) -> Decay {
        match self.lr_decay {
            LrDecay::Cosine => Decay::Cosine { floor: self.min_lr_ratio },
            LrDecay::Steps => Decay::Steps {
                milestones: self.milestones.iter().map(|&e| u64::from(e) * steps_per_epoch).collect(),
                gamma: self.gamma,
            },
        }
    }
}

text_enum! {
    /// `aug.jitter_kind`: which colour factors `aug.jitter` draws.
    #[derive(Default)]
    pub enum JitterKind("jitter_kind") {
        /// Brightness, contrast and saturation (ours, the default).
        #[default]
        Colour = "colour",
        /// Brightness only (DFER-CLIP's DFEW recipe: `ColorJitter(brightness=0.5)`).
        Brightness = "brightness",
    }
}

/// Clip-consistent augmentation: one rotation, one random resized crop per stream and one flip
/// per clip, shared by all its frames, plus colour jitter (the field's train transform).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Augment {
    /// Area range of the random resized crop (fraction of the image).
    pub crop_area: [f64; 2],
    /// Aspect-ratio range of the crop.
    pub crop_aspect: [f64; 2],
    pub flip: bool,
    /// Colour factors drawn from `[1 − j, 1 + j]`.
    pub jitter: f64,
    /// `colour` (brightness, contrast, saturation) or `brightness`.
    pub jitter_kind: JitterKind,
    /// Each clip turned by an angle drawn from `[−r, r]` degrees before the crop, the corners
    /// filled black (PIL's `rotate`, as DFER-CLIP's FERV39k recipe does with r = 4); 0: none.
    pub rotation: f64,
}

impl Default for Augment {
    fn default() -> Self {
        Self {
            crop_area: [0.08, 1.0],
            crop_aspect: [0.75, 4.0 / 3.0],
            flip: true,
            jitter: 0.2,
            jitter_kind: JitterKind::Colour,
            rotation: 0.0,
        }
    }
}

impl TrainConfig {
    /// Reads `path`, resolving relative paths against its folder.
    pub(crate) fn read(path: &Path) -> Result<TrainConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| UsageError::new(format!("{}: cannot read training config: {e}", path.display())))?;
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let base = std::fs::canonicalize(parent).with_context(|| format!("{}: cannot resolve", parent.display()))?;
        Self::from_toml(&text, &base, path)
    }

    /// Parses and checks a config; relative paths are taken from `base`, errors name `origin`.
    pub(crate) fn from_toml(text: &str, base: &Path, origin: &Path) -> Result<TrainConfig> {
        let mut cfg: TrainConfig =
            toml::from_str(text).map_err(|e| UsageError::new(format!("{}: {}", origin.display(), e.message())))?;
        cfg.resolve(base);
        cfg.check().with_context(|| format!("{}", origin.display()))?;
        Ok(cfg)
    }

    fn resolve(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.data.manifest);
        fix(&mut self.data.shards);
        if let Some(f) = &mut self.data.features {
            fix(f);
        }
        if let Some(w) = &mut self.model.clip_weights {
            w.resolve_against(base);
        }
        if let TokenizerChoice::File(p) = &mut self.model.tokenizer {
            fix(p);
        }
        for p in [&mut self.model.descriptions, &mut self.model.video_descriptions].into_iter().flatten() {
            fix(p);
        }
    }

    fn check(&self) -> Result<()> {
        let t = &self.train;
        let bad = |m: &str| Err(UsageError::new(m.to_string()).into());
        if t.epochs == 0 || t.batch_size == 0 {
            return bad("train.epochs and train.batch_size must be at least 1");
        }
        if t.accum_steps == 0 || t.accum_steps > t.batch_size {
            return bad("train.accum_steps must be between 1 and train.batch_size");
        }
        if !(0.0 < self.aug.crop_area[0]
            && self.aug.crop_area[0] <= self.aug.crop_area[1]
            && self.aug.crop_area[1] <= 1.0)
        {
            return bad("aug.crop_area must satisfy 0 < min <= max <= 1");
        }
        if !(0.0..1.0).contains(&self.aug.jitter) {
            return bad("aug.jitter must be in [0, 1)");
        }
        if !(0.0..=45.0).contains(&self.aug.rotation) {
            return bad("aug.rotation must be in [0, 45] degrees");
        }
        if !((0.0..1.0).contains(&t.momentum) && t.gamma > 0.0 && t.gamma <= 1.0) {
            return bad("train.momentum must be in [0, 1) and train.gamma in (0, 1]");
        }
        let rising = t.milestones.windows(2).all(|w| w[0] < w[1]);
        match t.lr_decay {
            LrDecay::Steps if t.milestones.is_empty() || !rising || t.milestones[0] == 0 => {
                return bad("train.lr_decay = \"steps\" needs train.milestones: rising epochs from 1, e.g. [30, 40]");
            }
            LrDecay::Cosine if !t.milestones.is_empty() => {
                return bad("train.milestones are for train.lr_decay = \"steps\"");
            }
            _ => {}
        }
        self.check_model()?;
        if self.model.method.uses_clip() && self.model.clip_weights.is_none() {
            // Without weights the sizes are known now (with them, once their files are found).
            self.model.towers(None)?;
        }
        Ok(())
    }

    /// Settings that belong to another method are refused rather than ignored.
    fn check_model(&self) -> Result<()> {
        let m = &self.model;
        let refuse = |m: String| Err(UsageError::new(m).into());
        if let Some(refusal) = m.renamed_keys() {
            return refuse(refusal);
        }
        if m.method == Method::Ous && m.descriptions.is_some() {
            return refuse("model.descriptions are DFER-CLIP's class texts: set model.method = \"dfer-clip\"".into());
        }
        let d = LossWeights::default();
        let ous_losses = self.loss.sim != d.sim || self.loss.pol != d.pol || self.loss.global != d.global;
        if m.method != Method::Ous && ous_losses {
            return refuse(format!(
                "loss.sim, loss.pol and loss.global are OUS's losses; {} trains with cross-entropy (and loss.ial)",
                m.method
            ));
        }
        if m.method != Method::Ial && self.loss.gca_aux != d.gca_aux {
            return refuse(
                "loss.gca_aux weighs the auxiliary classifiers of IAL's GCA blocks: set model.method = \"ial\"".into(),
            );
        }
        if m.method == Method::Ial {
            let clip = m.clip_settings();
            if !clip.is_empty() {
                let keys: Vec<String> = clip.iter().map(|k| format!("model.{k}")).collect();
                return refuse(format!(
                    "{} {} the CLIP methods' (ous, dfer-clip, fineclip); model.method = \"ial\" builds Li et al.'s own \
                     network and no CLIP towers: remove {}",
                    keys.join(", "),
                    if keys.len() == 1 { "is" } else { "are" },
                    if keys.len() == 1 { "it" } else { "them" }
                ));
            }
            if self.train.finetune_image {
                return refuse("train.finetune_image is for a CLIP image tower; model.method = \"ial\" trains its whole network at train.lr".into());
            }
        }
        if let (Some(why), Some(_)) = (m.method.feature_cache_refusal(), &self.data.features) {
            return refuse(format!(
                "data.features caches a frozen CLIP tower's features; model.method = \"{}\" cannot use it: {why}",
                m.method
            ));
        }
        self.check_fineclip()
    }

    /// FineCLIPER trains its adapters, context and fusion weights only, on faces; its adapter
    /// settings mean nothing to another method.
    fn check_fineclip(&self) -> Result<()> {
        let m = &self.model;
        let d = ModelConfig::default();
        if m.method != Method::FineClip {
            if m.adapter_ratio != d.adapter_ratio || m.adapter_scale != d.adapter_scale {
                return Err(UsageError::new(
                    "model.adapter_ratio and model.adapter_scale size FineCLIPER's adapters: set model.method = \"fineclip\"",
                )
                .into());
            }
            if m.video_descriptions.is_some() || m.landmarks {
                return Err(UsageError::new(
                    "model.video_descriptions and model.landmarks turn on FineCLIPER's description and landmark \
                     streams: set model.method = \"fineclip\"",
                )
                .into());
            }
            return Ok(());
        }
        let refuse = |what: &str| -> Result<()> {
            Err(UsageError::new(format!(
                "{what}; model.method = \"fineclip\" keeps every CLIP weight frozen and trains its adapters, \
                 prompt context and fusion weights (docs/methods.md \"FineCLIPER\")"
            ))
            .into())
        };
        if self.train.finetune_image {
            return refuse("train.finetune_image trains the image tower");
        }
        if m.frame_gate {
            return refuse("model.frame_gate adds a gate outside the adapters");
        }
        if m.descriptions.is_some() {
            return refuse(
                "model.descriptions are DFER-CLIP's class texts (FineCLIPER's prompts are its label templates)",
            );
        }
        Ok(())
    }

    /// The resolved configuration as TOML, every setting written (a run's `config.toml`).
    pub(crate) fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string(self)?)
    }

    /// What [`TrainConfig::hash`] is taken over, and what a resumed run's settings are compared
    /// by: schema 1 of `config_hash.rs`, so settings added since leave older hashes as they were.
    pub(crate) fn hash_input(&self) -> Result<String> {
        let defaults: TrainConfig =
            toml::from_str("[data]\nmanifest = \"\"\nshards = \"\"\n").expect("the defaults parse");
        super::config_hash::schema_1_input(&self.to_toml()?, &defaults.to_toml()?)
    }

    /// SHA-256 of [`TrainConfig::hash_input`] (goes into checkpoints and reports).
    pub(crate) fn hash(&self) -> Result<String> {
        Ok(crate::digest::sha256_hex(self.hash_input()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_defaults_resolves_paths_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("train.toml");
        std::fs::write(
            &p,
            "[data]\nmanifest = \"m/clips.parquet\"\nshards = \"/abs/shards\"\n[model]\narch = \"tiny\"\n",
        )
        .unwrap();
        let c = TrainConfig::read(&p).unwrap();
        assert_eq!(c.data.manifest, dir.path().canonicalize().unwrap().join("m/clips.parquet"));
        assert_eq!(c.data.shards, PathBuf::from("/abs/shards"));
        assert_eq!(c.model.arch, crate::model::config::Arch::Tiny);
        assert_eq!(c.train.epochs, 20);
        let again: TrainConfig = toml::from_str(&c.to_toml().unwrap()).unwrap();
        assert_eq!(again, c, "resolved config round-trips");
        std::fs::write(&p, "[data]\nmanifest = \"a\"\nshards = \"b\"\n[train]\nepoch = 3\n").unwrap();
        let e = format!("{:#}", TrainConfig::read(&p).unwrap_err());
        assert!(e.contains("train.toml") && e.contains("unknown field `epoch`"), "{e}");
        std::fs::write(&p, "[data]\nmanifest = \"a\"\nshards = \"b\"\n[model]\narch = \"vit-l14\"\n").unwrap();
        let e = format!("{:#}", TrainConfig::read(&p).unwrap_err());
        assert!(
            e.contains("train.toml") && e.contains("unknown model arch \"vit-l14\" (vit-b16 | tiny | config)"),
            "{e}"
        );
    }

    /// The paper-recipe settings parse, turn into the optimiser's rule and step milestones, and
    /// stay out of the hash input at their defaults; settings of the other method are refused.
    #[test]
    fn recipes_and_method_settings_are_checked() {
        let base = "[data]\nmanifest = \"m\"\nshards = \"s\"\n[model]\narch = \"tiny\"\n";
        let read =
            |extra: &str| TrainConfig::from_toml(&format!("{base}{extra}"), Path::new("/b"), Path::new("t.toml"));
        let c = read("method = \"dfer-clip\"\ndescriptions = \"d.toml\"\n[train]\noptimizer = \"sgd\"\nmomentum = 0.8\nlr_decay = \"steps\"\nmilestones = [3, 5]\n").unwrap();
        assert_eq!(c.train.rule(), Rule::Sgd { momentum: 0.8 });
        assert_eq!(c.train.decay(10), Decay::Steps { milestones: vec![30, 50], gamma: 0.1 });
        assert_eq!(c.model.descriptions, Some(PathBuf::from("/b/d.toml")), "resolved against the file's folder");
        let fine = read("method = \"fineclip\"\nvideo_descriptions = \"v.jsonl\"\n").unwrap();
        assert_eq!(fine.model.video_descriptions, Some(PathBuf::from("/b/v.jsonl")), "resolved too");
        let plain = read("").unwrap();
        assert_eq!(plain.train.rule(), Rule::AdamW);
        let hashed = plain.hash_input().unwrap();
        for key in [
            "method",
            "optimizer",
            "momentum",
            "lr_decay",
            "milestones",
            "gamma",
            "descriptions",
            "video_",
            "landmarks",
        ] {
            assert!(!hashed.contains(key), "{key} hashed at its default: {hashed}");
        }
        for (extra, want) in [
            ("[train]\nlr_decay = \"steps\"\n", "needs train.milestones"),
            ("[train]\nlr_decay = \"steps\"\nmilestones = [5, 3]\n", "rising epochs"),
            ("[train]\nmilestones = [5]\n", "are for train.lr_decay"),
            ("[train]\nmomentum = 1.0\n", "train.momentum"),
            ("[train]\noptimizer = \"adam\"\n", "unknown optimizer \"adam\""),
            ("descriptions = \"d.toml\"\n", "set model.method = \"dfer-clip\""),
            ("method = \"dfer-clip\"\n[loss]\nsim = 1.0\n", "OUS's losses"),
            ("gca = true\n", "model.gca is now model.frame_gate"),
            ("method = \"ial\"\n", "model.arch is the CLIP methods'"),
            (
                "method = \"ial\"\ndescriptions = \"d.toml\"\ntokenizer = \"words\"",
                "model.arch, model.tokenizer, model.descriptions are",
            ),
            ("method = \"ial\"\n[loss]\nglobal = 1.0\n", "OUS's losses; ial trains"),
            ("[loss]\ngca_aux = [0.1, 0.0]\n", "set model.method = \"ial\""),
            ("video_descriptions = \"v.jsonl\"\n", "description and landmark streams: set model.method = \"fineclip\""),
            ("method = \"dfer-clip\"\nlandmarks = true\n", "landmark streams: set model.method = \"fineclip\""),
        ] {
            let e = format!("{:#}", read(extra).unwrap_err());
            assert!(e.contains("t.toml") && e.contains(want), "{extra:?}: {e}");
        }
    }

    /// Hashes of configs from before every setting was written out stay as they were: these three
    /// were computed by dfer 42b70e8, when settings added after the first release were left out of
    /// the saved text at their defaults (53 such configs were compared when the schema came in).
    #[test]
    fn config_hashes_of_the_first_schema_do_not_move() {
        let config = |model: &str, loss: &str, train: &str, aug: &str| -> TrainConfig {
            let data = "[data]\nmanifest = \"/m\"\nshards = \"/s\"\nfeatures = \"/f\"\n";
            toml::from_str(&format!("{data}[model]\n{model}\n[loss]\n{loss}\n[train]\n{train}\n[aug]\n{aug}\n"))
                .unwrap()
        };
        let recipe =
            "accum_steps = 2\noptimizer = \"sgd\"\nmomentum = 0.8\nlr_decay = \"steps\"\nmilestones = [3, 5]\n\
                      gamma = 0.2\nno_face_clips = \"use\"\ndrop_last = true\ndevice = \"cuda\"\nepochs = 3\n";
        for (c, was) in [
            (config("", "", "", ""), "6cd2ab0c4f7906bc0b57bd6a4a0a6fb21ba06fc584d6fb70a33f4bd498c3eabb"),
            (config("", "ial = 0.1", "", ""), "970bf5ea55d398c7a9eab778874ac1126ad5e5f63e0795d718268d996fbe5d8b"),
            (
                config("method = \"dfer-clip\"", "ial = 0.1", recipe, "jitter_kind = \"brightness\""),
                "c15e2718a5781e02c6902f7af8d5deb38a6dbd5e77bd393a1a5888f7d32fafba",
            ),
        ] {
            assert_eq!(c.hash().unwrap(), was, "{}", c.hash_input().unwrap());
            let saved: TrainConfig = toml::from_str(&c.to_toml().unwrap()).unwrap();
            assert_eq!(saved.hash().unwrap(), was, "the saved config, read back, hashes the same");
        }
    }

    /// IAL takes its recipe's settings and none of the CLIP methods' (named in the refusal).
    #[test]
    fn ial_takes_its_recipe_and_refuses_clip_settings() {
        let base = "[data]\nmanifest = \"m\"\nshards = \"s\"\n[model]\nmethod = \"ial\"\nnormalise = \"unit\"\n";
        let read =
            |extra: &str| TrainConfig::from_toml(&format!("{base}{extra}"), Path::new("/b"), Path::new("t.toml"));
        let c = read("[loss]\nial = 0.1\n[train]\noptimizer = \"sgd\"\nlr_decay = \"steps\"\nmilestones = [7, 14]\ngamma = 0.5\n")
            .unwrap();
        assert_eq!((c.model.method, c.loss.gca_aux, c.loss.ial), (Method::Ial, [0.05, 0.0], 0.1));
        let hashed = c.hash_input().unwrap();
        assert!(hashed.contains("method = \"ial\"") && !hashed.contains("gca_aux"), "{hashed}");
        assert!(c.to_toml().unwrap().contains("gca_aux = [0.05, 0.0]"), "the saved config has every setting");
        assert_eq!(read("[loss]\ngca_aux = [0.1, 0.1]\n").unwrap().loss.gca_aux, [0.1, 0.1]);
        for (extra, want) in [
            ("clip_weights = \"hf:openai/clip-vit-base-patch16\"\n", "model.clip_weights is the CLIP methods'"),
            ("heads = 4\nframe_gate = true\n", "model.heads, model.frame_gate are"),
            ("[train]\nfinetune_image = true\n", "train.finetune_image"),
        ] {
            let e = format!("{:#}", read(extra).unwrap_err());
            assert!(e.contains("t.toml") && e.contains(want), "{extra:?}: {e}");
        }
        let features = base.replace("shards = \"s\"\n", "shards = \"s\"\nfeatures = \"f\"\n");
        let e = format!("{:#}", TrainConfig::from_toml(&features, Path::new("/b"), Path::new("t.toml")).unwrap_err());
        assert!(e.contains("data.features"), "{e}");
    }
}
