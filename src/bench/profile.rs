//! Where a training step's time goes, per OUS module: each module runs alone on inputs of the
//! step's shapes (outputs of the modules before it, as tracked leaves, so its backward also
//! computes the gradient it would pass upstream), forward and backward timed apart with the
//! device synchronised between. `dfer bench train-step --profile` prints these rows beside the
//! step's own sections (image tower, backward of the whole graph, clipping, optimiser), which
//! [`Sections`] times through the runner's [`StepMarks`].

use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::loss::cross_entropy;
use serde::Serialize;

use crate::model::runner::{HostInput, Runner, StepMarks};

/// Wall time of each section of one training step, the device synchronised at every mark.
pub(crate) struct Sections {
    device: Device,
    last: Instant,
    pub rows: Vec<(&'static str, f64)>,
}

impl Sections {
    pub(crate) fn new(device: &Device) -> Self {
        Self { device: device.clone(), last: Instant::now(), rows: Vec::new() }
    }
}

impl StepMarks for Sections {
    fn mark(&mut self, section: &'static str) -> Result<()> {
        self.device.synchronize()?;
        let now = Instant::now();
        self.rows.push((section, (now - self.last).as_secs_f64()));
        self.last = now;
        Ok(())
    }
}

/// Forward and backward seconds of one module (median of the runs).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ModuleTime {
    pub module: &'static str,
    pub forward_s: f64,
    pub backward_s: f64,
}

/// A copy of `t` that records a graph (a leaf whose gradient backward computes).
fn tracked(t: &Tensor) -> Result<Tensor> {
    Ok(Var::from_tensor(&t.detach())?.as_tensor().clone())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Runs `f` `runs` times, timing its forward and the backward of the sum of its output.
fn time_module(
    device: &Device,
    module: &'static str,
    runs: usize,
    f: impl Fn() -> Result<Tensor>,
) -> Result<ModuleTime> {
    let (mut forward, mut backward) = (Vec::new(), Vec::new());
    for _ in 0..runs.max(1) {
        device.synchronize()?;
        let start = Instant::now();
        let out = f().with_context(|| format!("profiling {module}"))?;
        device.synchronize()?;
        let mid = Instant::now();
        out.to_dtype(DType::F32)?.sum_all()?.backward()?;
        device.synchronize()?;
        forward.push((mid - start).as_secs_f64());
        backward.push(mid.elapsed().as_secs_f64());
    }
    Ok(ModuleTime { module, forward_s: median(forward), backward_s: median(backward) })
}

/// Times every module after the image tower of an OUS runner's network on one batch
/// (`input`, `labels`), `runs` times each.
pub(crate) fn modules(runner: &Runner, input: &HostInput, labels: &[u32], runs: usize) -> Result<Vec<ModuleTime>> {
    let (network, x) = runner.network_and_features(input)?;
    let device = runner.device();
    let labels = &Tensor::from_slice(labels, labels.len(), device)?;
    let model = network.ous().context("the per-module profile is of OUS's modules (model.method = \"ous\")")?;
    let class_features = || network.class_features()?.context("OUS has class prompts");
    let mut rows = vec![time_module(device, "text tower (prompt pass)", runs, class_features)?];
    let mut face = x.face.clone();
    if network.config().frame_gate {
        rows.push(time_module(device, "frame gate", runs, || model.gated(&x.face))?);
        face = tracked(&model.gated(&x.face)?)?;
    }
    rows.push(time_module(device, "face LSTM", runs, || model.face_lstm(&face))?);
    let sequence = tracked(&model.face_lstm(&face)?)?;
    rows.push(time_module(device, "Frame Encoder", runs, || model.frame_encoder(&sequence))?);
    let tokens = tracked(&model.frame_encoder(&sequence)?)?;
    let mut memory = vec![tokens.clone()];
    let mut polarity_logits = None;
    if let Some(scene) = &x.scene {
        rows.push(time_module(device, "scene LSTM + Frames Mean", runs, || model.scene_stream(scene))?);
        let scene_token = tracked(&model.scene_stream(scene)?)?;
        rows.push(time_module(device, "L_sim (conv + FC)", runs, || model.similarity(&tokens, &scene_token))?);
        memory.push(scene_token.unsqueeze(1)?);
        if let Some(early) = &x.early {
            let polarity = || -> Result<Tensor> {
                let (feature, logits) = model.polarity(early)?;
                Ok(Tensor::cat(&[feature, logits], 1)?)
            };
            rows.push(time_module(device, "Polarity Encoder", runs, polarity)?);
            let (feature, logits) = model.polarity(early)?;
            memory.push(tracked(&feature)?.unsqueeze(1)?);
            polarity_logits = Some(tracked(&logits)?);
        }
    }
    let memory = Tensor::cat(&memory, 1)?;
    rows.push(time_module(device, "Type Fusion Encoder", runs, || model.type_fusion(&memory))?);
    let video = tracked(&model.type_fusion(&memory)?)?;
    let text = tracked(&class_features()?)?;
    let scale = network.logit_scale()?;
    let classify = || -> Result<Tensor> {
        let (logits, global) = model.classify(&video, &text, polarity_logits.as_ref(), &scale)?;
        Ok((cross_entropy(&logits, labels)? + cross_entropy(&global, labels)?)?)
    };
    rows.push(time_module(device, "classifiers + losses", runs, classify)?);
    Ok(rows)
}
