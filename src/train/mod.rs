//! `dfer train`: fold-aware training of any `model.method` (OUS, DFER-CLIP, IAL, FineCLIPER) from prep's shards (or `dfer embed`'s feature cache),
//! evaluation on the fold's test side after every epoch, `metrics.jsonl`, and checkpoints that
//! resume exactly: weights, optimiser moments and step are saved; data order and augmentation
//! derive from (seed, epoch), so a resumed run ends bit-identical to an uninterrupted one on CPU.

pub(crate) mod cache;
pub(crate) mod checkpoint;
pub(crate) mod config;
mod config_hash;
pub(crate) mod data;
pub mod points;
pub(crate) mod run_dir;
pub(crate) mod test_set;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use self::checkpoint::{Checkpoints, EpochState};
use self::config::{NoFaceClips, TrainConfig};
use self::data::{Batch, ClipRef, InputShape, ShardSet, View};
use self::run_dir::RunDir;
use self::test_set::{TestCounts, TestSet};
use crate::atomic::{remove_unfinished, write_atomic};
use crate::dataset::splits::Role;
use crate::error::UsageError;
use crate::logging::Progress;
use crate::manifest::Manifest;
use crate::metrics::{argmax, Metrics};
use crate::model::runner::{OptimSettings, Runner};
use crate::shard::FaceCrops;

pub(crate) struct TrainOptions {
    pub config: PathBuf,
    pub run: PathBuf,
    pub fold: Option<u32>,
    pub resume: bool,
    /// Stop after this many epochs of this invocation (time-sliced clusters; tests).
    pub stop_after: Option<u32>,
}

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EpochLine {
    pub epoch: u32,
    pub step: u64,
    pub lr_factor: f64,
    pub train_loss: f64,
    /// Mean of each loss part over the epoch.
    pub losses: Vec<(String, f64)>,
    pub test_uar: f64,
    pub test_war: f64,
    /// How the fold's listed test clips were scored (absent in runs from before it was recorded).
    #[serde(default)]
    pub test_clips: Option<TestCounts>,
    pub seconds: f64,
    pub clips_per_s: f64,
}

/// Everything a run needs: config, data, clip lists, model.
pub(crate) struct Session {
    pub cfg: TrainConfig,
    pub manifest: Manifest,
    pub shards: Arc<ShardSet>,
    pub train: Arc<Vec<ClipRef>>,
    /// The fold's listed test clips; `test` holds the scorable ones as loader clips.
    pub listed: TestSet,
    pub test: Arc<Vec<ClipRef>>,
    pub runner: Runner,
    pub cache: Option<Arc<cache::FeatureCache>>,
    pool: Arc<rayon::ThreadPool>,
}

impl Session {
    pub(crate) fn open(cfg: TrainConfig) -> Result<Session> {
        let manifest = Manifest::read(&cfg.data.manifest)?;
        let shards = Arc::new(ShardSet::open(&cfg.data.shards)?);
        let mut train = shards.clips(&manifest, cfg.data.fold, Role::Train)?;
        let no_face = train.iter().filter(|c| c.fallback).count();
        if cfg.train.no_face_clips == NoFaceClips::LeaveOut && no_face > 0 {
            train.retain(|c| !c.fallback);
            tracing::info!(
                "{no_face} training clips without a face found left out (train.no_face_clips = \"leave_out\")"
            );
        }
        let (col, test) = shards.fold_clips(&manifest, cfg.data.fold, Role::Test)?;
        let listed = TestSet::new(&manifest, col, test, &cfg.data.shards)?;
        let test = Arc::new(listed.clips.clone());
        if train.is_empty() || test.is_empty() {
            bail!(UsageError::new(format!(
                "{}: fold {} has {} training and {} scorable test clips in the shards; both must be non-empty",
                cfg.data.shards.display(),
                cfg.data.fold,
                train.len(),
                test.len()
            )));
        }
        let counts = listed.counts();
        if !counts.adds_up() {
            tracing::warn!("fold {} test clips: {}", cfg.data.fold, counts.to_text());
        }
        let train = Arc::new(train);
        let attrs = shards.attrs();
        let runner = Runner::new(&cfg.model, &attrs.label_names, attrs.frames, &cfg.train.device, cfg.loss.clone())?;
        let clip_ids = train.iter().chain(test.iter()).map(|c| c.clip_id.as_str());
        if let (Some((clip, n)), Some(file)) = (runner.undescribed(clip_ids), &cfg.model.video_descriptions) {
            bail!(UsageError::new(format!(
                "{}: no description for clip {clip:?}{}, which fold {} trains or tests on; the description \
                 stream needs one for every such clip",
                file.display(),
                if n > 1 { format!(" (nor for {} more)", n - 1) } else { String::new() },
                cfg.data.fold
            )));
        }
        if runner.uses_points() && attrs.face_crops == FaceCrops::Dataset {
            bail!(UsageError::new(format!(
                "{}: the shards hold the dataset's own face crops (prep.face_crops = \"dataset\"), which carry no \
                 landmarks; model.landmarks draws the detector's points on dfer's crops: prepare with \
                 prep.face_crops = \"detect\"",
                cfg.data.shards.display()
            )));
        }
        if runner.uses_scene() && !attrs.has_scene() {
            bail!(UsageError::new(format!(
                "{}: the shards have no scene stream (prepared with scene_size = 0), which {} reads; prepare \
                 with a scene stream, or turn the scene stream off (model.use_scene = false)",
                cfg.data.shards.display(),
                cfg.model.method
            )));
        }
        let cache = match &cfg.data.features {
            Some(dir) => Some(Arc::new(cache::FeatureCache::open(dir, &shards, &runner, &cfg)?)),
            None => None,
        };
        let pool = Arc::new(rayon::ThreadPoolBuilder::new().num_threads(cfg.train.loader_threads.max(1)).build()?);
        Ok(Session { cfg, manifest, shards, train, listed, test, runner, cache, pool })
    }

    pub(crate) fn labels(&self) -> &[String] {
        &self.shards.attrs().label_names
    }

    fn shape(&self) -> InputShape {
        InputShape {
            frames: self.shards.attrs().frames,
            size: self.runner.image_size() as u32,
            scene: self.runner.uses_scene(),
            points: self.runner.uses_points(),
        }
    }

    /// Batches over `clips` (train or test list) in `order`.
    pub(crate) fn batches(
        &self,
        clips: &Arc<Vec<ClipRef>>,
        order: Vec<usize>,
        view: View,
    ) -> crossbeam_channel::Receiver<Result<Batch>> {
        let t = &self.cfg.train;
        let clips = clips.clone();
        match &self.cache {
            Some(cache) => {
                let cache = cache.clone();
                data::prefetch(order, t.batch_size, t.prefetch, move |chunk| cache.batch(&clips, chunk, &view))
            }
            None => {
                let (set, pool, shape) = (self.shards.clone(), self.pool.clone(), self.shape());
                data::prefetch(order, t.batch_size, t.prefetch, move |chunk| {
                    data::pixel_batch(&set, &clips, chunk, shape, &view, &pool)
                })
            }
        }
    }

    /// The predicted class of every listed test clip (`None` for those not scorable), in
    /// manifest order.
    pub(crate) fn predict_test(&self) -> Result<Vec<Option<usize>>> {
        let order: Vec<usize> = (0..self.test.len()).collect();
        let mut predicted = Vec::with_capacity(order.len());
        for batch in self.batches(&self.test, order, View::Test) {
            let batch = batch?;
            predicted.extend(self.runner.predict(&batch.input())?.iter().map(|s| argmax(s)));
        }
        Ok(self.listed.predictions(&predicted))
    }

    /// UAR / WAR over every listed test clip, and how they were scored.
    pub(crate) fn evaluate(&self) -> Result<(Metrics, TestCounts)> {
        Ok(self.evaluate_predictions(&self.predict_test()?))
    }

    /// [`Session::evaluate`] of the predictions `predict_test` made.
    pub(crate) fn evaluate_predictions(&self, predicted: &[Option<usize>]) -> (Metrics, TestCounts) {
        let m = Metrics::from_predictions(&self.listed.truth(), predicted, self.labels().len());
        (m, self.listed.counts())
    }
}

/// Reads the config given on the command line, with `--fold` applied (a resumed run must give
/// the same settings: `run` compares them with the run's own `config.toml`).
fn resolve_config(opts: &TrainOptions) -> Result<TrainConfig> {
    let mut cfg = TrainConfig::read(&opts.config)?;
    if let Some(f) = opts.fold {
        cfg.data.fold = f;
    }
    Ok(cfg)
}

pub(crate) fn run(opts: &TrainOptions) -> Result<()> {
    let cfg = resolve_config(opts)?;
    let dir = RunDir::new(&opts.run);
    let ckpts = dir.checkpoints();
    let config_path = dir.config();
    check_run_folder(opts, &config_path, &cfg)?;
    let text = cfg.to_toml()?;
    // A run killed while writing leaves temporary files (its config's too, if it was killed that
    // early); the epochs they belonged to are redone.
    for d in [dir.path(), ckpts.dir()] {
        remove_unfinished(d, |_| true)?;
    }
    ckpts.remove_partial()?;
    // Data, model and device are checked before the run folder is made.
    let mut s = Session::open(cfg)?;
    if !config_path.exists() {
        std::fs::create_dir_all(ckpts.dir()).with_context(|| format!("creating {}", opts.run.display()))?;
        write_atomic(&config_path, text.as_bytes())?;
    }
    set_optimizer(&mut s)?;
    let metrics_path = dir.metrics();
    let start = resume(opts, &ckpts, &mut s, &metrics_path)?;
    let t = s.cfg.train.clone();
    let data_hash = s.shards.data_hash();
    let config_hash = s.cfg.hash()?;
    let towers_hash = s.runner.towers_hash()?;
    for (done, epoch) in (start..=t.epochs).enumerate() {
        if opts.stop_after.is_some_and(|n| done as u32 >= n) {
            tracing::info!("stopping after {done} epochs as asked (--stop-after); --resume continues");
            return Ok(());
        }
        let line = train_epoch(&mut s, epoch)?;
        let state = EpochState {
            epoch,
            step: line.step,
            test_uar: line.test_uar,
            test_war: line.test_war,
            data_hash: data_hash.clone(),
            config_hash: config_hash.clone(),
            files: Default::default(),
            towers_hash: towers_hash.clone(),
        };
        append_line(&metrics_path, &serde_json::to_string(&line)?)?;
        ckpts.save(state, &s.runner)?;
        eprintln!(
            "epoch {epoch}/{}: loss {:.4}, test UAR {:.2} WAR {:.2} ({:.1} clips/s)",
            t.epochs, line.train_loss, line.test_uar, line.test_war, line.clips_per_s
        );
    }
    Ok(())
}

/// A run folder with a config continues only with `--resume` and the same settings (`text`).
fn check_run_folder(opts: &TrainOptions, config_path: &Path, cfg: &TrainConfig) -> Result<()> {
    if !config_path.exists() {
        return Ok(());
    }
    if !opts.resume {
        bail!(UsageError::new(format!(
            "{}: run folder already has a config; pass --resume to continue it or choose another --run",
            opts.run.display()
        )));
    }
    // Compared as hashed, so a run saved before a setting existed resumes under the same settings.
    if TrainConfig::read(config_path)?.hash_input()? != cfg.hash_input()? {
        bail!(UsageError::new(format!(
            "{}: differs from the configuration given now; a run resumes only with the same settings",
            config_path.display()
        )));
    }
    Ok(())
}

/// The optimiser and learning-rate schedule of `[train]`, over the session's steps.
fn set_optimizer(s: &mut Session) -> Result<()> {
    let t = s.cfg.train.clone();
    let steps_per_epoch = t.steps_per_epoch(s.train.len());
    if steps_per_epoch == 0 {
        bail!(UsageError::new(format!(
            "{} training clips make no full batch of {} (train.drop_last)",
            s.train.len(),
            t.batch_size
        )));
    }
    s.runner.set_optimizer(OptimSettings {
        rule: t.rule(),
        lr: t.lr,
        lr_prompts: t.lr_prompts,
        lr_image: t.finetune_image.then_some(t.lr_image),
        weight_decay: t.weight_decay,
        grad_clip: t.grad_clip,
        accum_steps: t.accum_steps,
        warmup_steps: (t.warmup_epochs * steps_per_epoch as f64).round() as u64,
        total_steps: steps_per_epoch * u64::from(t.epochs),
        decay: t.decay(steps_per_epoch),
    })?;
    let (all, trained) = s.runner.parameter_counts();
    tracing::info!(
        "{} training clips, fold {}; test clips {}; {all} parameters, {trained} trained",
        s.train.len(),
        s.cfg.data.fold,
        s.listed.counts().to_text()
    );
    Ok(())
}

/// With `--resume`, restores the latest checkpoint; keeps the metrics lines of the epochs
/// kept. Returns the first epoch to train.
fn resume(opts: &TrainOptions, ckpts: &Checkpoints, s: &mut Session, metrics_path: &Path) -> Result<u32> {
    let mut start = 1;
    let resumed = if opts.resume { ckpts.latest()? } else { None };
    if let Some(state) = &resumed {
        ckpts.settle(state)?;
        ckpts.restore(state, &mut s.runner)?;
        start = state.epoch + 1;
        tracing::info!("resuming after epoch {} (step {})", state.epoch, state.step);
    }
    keep_metrics_until(metrics_path, resumed.map_or(0, |st| st.epoch))?;
    Ok(start)
}

fn train_epoch(s: &mut Session, epoch: u32) -> Result<EpochLine> {
    let t = s.cfg.train.clone();
    let started = Instant::now();
    let mut order: Vec<usize> = (0..s.train.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(t.seed ^ (u64::from(epoch) << 32)));
    if t.drop_last {
        order.truncate(order.len() - order.len() % t.batch_size);
    }
    let view = View::Train { aug: s.cfg.aug.clone(), seed: t.seed, epoch };
    let progress = Progress::new(order.len() as u64, format!("epoch {epoch}"));
    let (mut sum, mut n, mut parts) = (0f64, 0usize, Vec::<(String, f64)>::new());
    let mut last = None;
    for batch in s.batches(&s.train, order, view) {
        let batch = batch?;
        let stats = s.runner.train_step(&batch.input(), &batch.labels, &batch.polarity)?;
        let b = batch.labels.len();
        sum += f64::from(stats.total) * b as f64;
        n += b;
        for (name, v) in &stats.losses {
            match parts.iter_mut().find(|(p, _)| p == name) {
                Some((_, acc)) => *acc += f64::from(*v) * b as f64,
                None => parts.push((name.to_string(), f64::from(*v) * b as f64)),
            }
        }
        tracing::debug!("epoch {epoch}: loss {:.4}, gradient norm {:.4}", stats.total, stats.grad_norm);
        progress.advance(b as u64, &format!("loss {:.4}", stats.total));
        last = Some(stats);
    }
    progress.finish();
    let train_seconds = started.elapsed().as_secs_f64();
    let (m, counts) = s.evaluate()?;
    let last = last.context("an epoch without batches")?;
    Ok(EpochLine {
        epoch,
        step: epoch as u64 * t.steps_per_epoch(s.train.len()),
        lr_factor: last.lr_factor,
        train_loss: sum / n as f64,
        losses: parts.into_iter().map(|(k, v)| (k, v / n as f64)).collect(),
        test_uar: m.uar,
        test_war: m.war,
        test_clips: Some(counts),
        seconds: started.elapsed().as_secs_f64(),
        clips_per_s: n as f64 / train_seconds,
    })
}

/// Reads `metrics.jsonl` (one [`EpochLine`] per line).
pub fn read_metrics(path: &Path) -> Result<Vec<EpochLine>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{}:{}: not a metrics line", path.display(), i + 1))
        })
        .collect()
}

/// Drops lines of epochs after `epoch` (written before a crash, redone on resume).
fn keep_metrics_until(path: &Path, epoch: u32) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let kept: Vec<String> = read_metrics(path)?
        .into_iter()
        .filter(|l| l.epoch <= epoch)
        .map(|l| serde_json::to_string(&l))
        .collect::<Result<_, _>>()?;
    let mut text = kept.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())
}

fn append_line(path: &Path, line: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?;
    writeln!(f, "{line}").with_context(|| format!("{}: cannot write", path.display()))?;
    f.sync_data()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run whose `config.toml` was saved before later settings were written out (schema 1's text)
    /// resumes under the same settings and is refused under others.
    #[test]
    fn a_run_saved_in_the_first_schema_resumes_with_the_same_settings_only() {
        let dir = tempfile::tempdir().unwrap();
        let cfg: TrainConfig = toml::from_str("[data]\nmanifest = \"/m\"\nshards = \"/s\"\n").unwrap();
        let config_path = dir.path().join("config.toml");
        let old_text = cfg.hash_input().unwrap();
        assert!(!old_text.contains("drop_last") && cfg.to_toml().unwrap().contains("drop_last = false"));
        std::fs::write(&config_path, &old_text).unwrap();
        let opts = |resume| TrainOptions {
            config: dir.path().join("train.toml"),
            run: dir.path().to_path_buf(),
            fold: None,
            resume,
            stop_after: None,
        };
        check_run_folder(&opts(true), &config_path, &cfg).unwrap();
        let e = format!("{:#}", check_run_folder(&opts(false), &config_path, &cfg).unwrap_err());
        assert!(e.contains("pass --resume"), "{e}");
        let mut other = cfg.clone();
        other.train.drop_last = true;
        let e = format!("{:#}", check_run_folder(&opts(true), &config_path, &other).unwrap_err());
        assert!(e.contains("config.toml") && e.contains("same settings"), "{e}");
    }
}
