//! Timed OUS training steps on random inputs, for the PyTorch comparison
//! (`bench/train_bench.sh`): seconds per step, host reads, peak memory, and with `--profile`
//! each section of a step and each module's forward and backward.

use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::Device;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::profile::{self, ModuleTime, Sections};
use crate::model::config::{Arch, LossWeights, ModelConfig};
use crate::model::optim::{Decay, Rule};
use crate::model::runner::{HostFeatures, HostInput, OptimSettings, Runner};
use crate::model::ComputeDevice;
use crate::text_enum::text_enum;

text_enum! {
    /// What a timed training step trains from.
    pub enum Recipe("recipe") {
        /// Pixels through the frozen image tower (no graph), then the trained modules.
        Frozen = "frozen",
        /// Pixels through the image tower, which is trained too.
        Finetune = "finetune",
        /// Cached image-tower features (what `dfer embed` writes), then the trained modules.
        Cached = "cached",
    }
}

/// The steps `dfer bench train-step` times, as its JSON line repeats them.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StepShape {
    pub arch: Arch,
    pub device: ComputeDevice,
    pub recipe: Recipe,
    pub batch: usize,
    pub frames: usize,
    pub steps: usize,
}

/// What `dfer bench train-step` measures.
pub(crate) struct StepBench {
    pub shape: StepShape,
    pub warmup: usize,
    /// Parts each batch runs in (gradient accumulation).
    pub accum_steps: usize,
    /// Also time each section of a step and each module's forward and backward.
    pub profile: bool,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct StepTiming {
    #[serde(flatten)]
    pub shape: StepShape,
    pub seconds_per_step: f64,
    pub clips_per_s: f64,
    pub trained_parameters: usize,
    /// Device-to-host reads per timed step (the loss, the gradient norm and every logged loss
    /// come back in one).
    pub host_reads_per_step: f64,
    /// Peak resident memory of the process (VmHWM), MiB; device memory is sampled outside.
    pub host_peak_mib: f64,
    /// With `--profile`: seconds of each section of one step (device synchronised at each).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sections: Vec<(&'static str, f64)>,
    /// With `--profile`: each module after the image tower run alone.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<ModuleTime>,
}

/// Times `steps` OUS training steps (after `warmup` untimed ones) on random inputs.
pub(crate) fn train_steps(b: &StepBench) -> Result<StepTiming> {
    let shape = &b.shape;
    let labels: Vec<String> =
        ["Happy", "Sad", "Neutral", "Angry", "Surprise", "Disgust", "Fear"].iter().map(|s| s.to_string()).collect();
    let cfg = ModelConfig { arch: shape.arch, ..Default::default() };
    let (batch, frames) = (shape.batch, shape.frames);
    let mut runner = Runner::new(&cfg, &labels, frames, &shape.device, LossWeights::default())?;
    runner.set_optimizer(OptimSettings {
        rule: Rule::AdamW,
        lr: 1e-4,
        lr_prompts: 1e-4,
        lr_image: (shape.recipe == Recipe::Finetune).then_some(1e-6),
        weight_decay: 0.01,
        grad_clip: 1.0,
        accum_steps: b.accum_steps,
        warmup_steps: 0,
        total_steps: (shape.steps + b.warmup + 1) as u64,
        decay: Decay::Cosine { floor: 0.1 },
    })?;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let s = runner.image_size();
    let (e, p, w) = runner.feature_dims();
    let mut bytes = |n: usize| -> Vec<u8> { (0..n).map(|_| rng.random::<u8>()).collect() };
    let (face, scene) = (bytes(batch * frames * 3 * s * s), bytes(batch * frames * 3 * s * s));
    let colour = vec![[1.0; 3]; batch];
    let mut random = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.5f32..1.5)).collect() };
    let features = HostFeatures {
        batch,
        face: random(batch * frames * e),
        scene: random(batch * frames * e),
        early: random(batch * p * w),
    };
    let input = match shape.recipe {
        Recipe::Cached => HostInput::Features(&features),
        Recipe::Frozen | Recipe::Finetune => {
            HostInput::Pixels { face: &face, scene: &scene, points: &[], colour: &colour, clips: &[], batch }
        }
    };
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % 7).collect();
    let polarity: Vec<u32> = labels.iter().map(|l| [2, 0, 1, 0, 2, 0, 0][*l as usize]).collect();
    for _ in 0..b.warmup {
        runner.train_step(&input, &labels, &polarity)?;
    }
    synchronize(&runner)?;
    let reads = runner.host_reads();
    let started = Instant::now();
    for _ in 0..shape.steps {
        runner.train_step(&input, &labels, &polarity)?;
    }
    synchronize(&runner)?;
    let secs = started.elapsed().as_secs_f64() / shape.steps.max(1) as f64;
    let host_reads_per_step = (runner.host_reads() - reads) as f64 / shape.steps.max(1) as f64;
    // Read before profiling, so the peak is the timed steps' own.
    let host_peak_mib = host_peak_mib()?;
    let (sections, modules) = if b.profile {
        let mut sections = Sections::new(runner.device());
        runner.marked_step(&input, &labels, &polarity, &mut sections)?;
        (sections.rows, profile::modules(&runner, &HostInput::Features(&features), &labels, 3)?)
    } else {
        (Vec::new(), Vec::new())
    };
    Ok(StepTiming {
        shape: shape.clone(),
        seconds_per_step: secs,
        clips_per_s: batch as f64 / secs,
        trained_parameters: runner.parameter_counts().1,
        host_reads_per_step,
        host_peak_mib,
        sections,
        modules,
    })
}

/// The process's peak resident set (`VmHWM` in `/proc/self/status`), MiB.
fn host_peak_mib() -> Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .context("/proc/self/status has no VmHWM line")?;
    Ok(kib / 1024.0)
}

/// Waits for queued device work (each step already reads its loss back, so this is a safeguard).
fn synchronize(runner: &Runner) -> Result<()> {
    match runner.device() {
        Device::Cpu => Ok(()),
        d => Ok(d.synchronize()?),
    }
}
