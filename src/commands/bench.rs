//! `dfer bench`: developer measurements of the model code (CLIP parity features, timed training
//! steps); `bench/clip_parity.py` and `bench/train_bench.sh` drive them against PyTorch.

use std::path::PathBuf;

use anyhow::Result;

use crate::bench::clip_features::{clip_features, FeatureRun, TowerDtype};
#[cfg(feature = "media")]
use crate::bench::detector::{time_detector, InputSize};
use crate::bench::loader::time_loader;
use crate::bench::train_step::{train_steps, Recipe, StepBench, StepShape, StepTiming};
use crate::error::Outcome;
use crate::model::config::Arch;
use crate::model::ComputeDevice;
use crate::weights::WeightsSource;

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  dfer bench train-step --arch vit-b16 --device cuda --recipe frozen --batch 8\n  \
dfer bench clip-features --weights clip.safetensors --inputs in.safetensors --out ours.safetensors\n  \
dfer bench loader --shards out/prep/shards --frames 16 --size 224\n  \
dfer bench detector --sizes 128x128,352x192,640x352\n  \
dfer bench jpeg-layout --shards out/prep/shards --work /tmp/layout")]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// CLIP image and text features for given weights and inputs (parity check).
    ClipFeatures {
        /// CLIP weights with Hugging Face names: a model.safetensors, a folder holding one (its
        /// config.json gives the tower sizes, else ViT-B/16), or hf:owner/name.
        #[arg(long)]
        weights: WeightsSource,
        /// safetensors with pixel_values [N, 3, S, S] and input_ids [M, 77].
        #[arg(long)]
        inputs: PathBuf,
        /// Output safetensors (image_embeds, text_embeds).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "cpu")]
        device: ComputeDevice,
        /// End-of-text token id (CLIP's <|endoftext|>).
        #[arg(long, default_value_t = 49407)]
        eot_id: u32,
        /// dtype the image tower computes in (bf16 is what training uses on CUDA).
        #[arg(long, default_value = "f32")]
        dtype: TowerDtype,
    },
    /// Read every clip of a prep's shards through the training loader on one thread (decode,
    /// crop, resize, flip; jitter and normalisation run on the device); prints JSON with frames
    /// per second per core.
    Loader {
        /// Folder of shards (`PREP/shards`).
        #[arg(long)]
        shards: PathBuf,
        /// T frames per clip (a divisor of the shards' stored frames).
        #[arg(long, default_value_t = 16)]
        frames: usize,
        /// Side the frames are resized to (224 for ViT-B/16).
        #[arg(long, default_value_t = 224)]
        size: u32,
    },
    #[cfg(feature = "media")]
    /// Time one CenterFace run at each input size, one thread as a prep worker runs it; prints a
    /// JSON line per size (median ms per run, ns per input pixel).
    Detector {
        /// Input sizes WxH, each side a multiple of 32.
        #[arg(long, value_delimiter = ',', default_value = "64x64,128x128,256x256,352x192,640x352")]
        sizes: Vec<InputSize>,
        /// Timed runs per size (after three unmeasured ones).
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
    /// Write the frames of JPEG shards as a variable-length dataset (what shards use) and as one
    /// flat byte dataset with offsets, and time reading one clip each way; prints JSON.
    JpegLayout {
        /// Folder of JPEG shards (`PREP/shards`).
        #[arg(long)]
        shards: PathBuf,
        /// Folder for the two files written (`vlen.h5`, `flat.h5`).
        #[arg(long)]
        work: PathBuf,
        /// Passes over every clip; the best is reported.
        #[arg(long, default_value_t = 5)]
        repeats: usize,
    },
    /// Time OUS training steps on random inputs; prints JSON.
    TrainStep {
        #[arg(long, default_value = "vit-b16")]
        arch: Arch,
        #[arg(long, default_value = "cpu")]
        device: ComputeDevice,
        /// frozen (image tower frozen), finetune, or cached (from features).
        #[arg(long, default_value = "frozen")]
        recipe: Recipe,
        #[arg(long, default_value_t = 8)]
        batch: usize,
        #[arg(long, default_value_t = 16)]
        frames: usize,
        #[arg(long, default_value_t = 10)]
        steps: usize,
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// Run each batch in this many parts, gradients summed (train.accum_steps).
        #[arg(long, default_value_t = 1)]
        accum: usize,
        /// Also time each section of one more step and each module's forward and backward
        /// (printed as a table after the JSON line).
        #[arg(long)]
        profile: bool,
    },
}

pub fn run(a: &Args) -> Result<Outcome> {
    match &a.what {
        What::ClipFeatures { weights, inputs, out, device, eot_id, dtype } => {
            let run = FeatureRun { weights, inputs, device, eot_id: *eot_id, dtype: *dtype };
            clip_features(&run, out)?;
            println!("wrote {}", out.display());
        }
        What::Loader { shards, frames, size } => {
            let t = time_loader(shards, *frames, *size)?;
            println!("{}", serde_json::to_string(&t)?);
        }
        #[cfg(feature = "media")]
        What::Detector { sizes, runs } => {
            for t in time_detector(sizes, *runs)? {
                println!("{}", serde_json::to_string(&t)?);
            }
        }
        What::JpegLayout { shards, work, repeats } => {
            let t = crate::shard::layout::time_layouts(shards, work, *repeats)?;
            println!("{}", serde_json::to_string(&t)?);
        }
        What::TrainStep { arch, device, recipe, batch, frames, steps, warmup, accum, profile } => {
            let shape = StepShape {
                arch: *arch,
                device: device.clone(),
                recipe: *recipe,
                batch: *batch,
                frames: *frames,
                steps: *steps,
            };
            let b = StepBench { shape, warmup: *warmup, accum_steps: *accum, profile: *profile };
            let t = train_steps(&b)?;
            println!("{}", serde_json::to_string(&t)?);
            if *profile {
                print_profile(&t);
            }
        }
    }
    Ok(Outcome::Ok)
}

/// The profile of `t` as two tables: the step's sections, then each module run alone.
fn print_profile(t: &StepTiming) {
    println!("\n{:<34} {:>10}", "step section", "ms");
    for (name, secs) in &t.sections {
        println!("{name:<34} {:>10.1}", secs * 1e3);
    }
    println!("\n{:<34} {:>10} {:>10}", "module (alone, median of 3)", "fwd ms", "bwd ms");
    for m in &t.modules {
        println!("{:<34} {:>10.1} {:>10.1}", m.module, m.forward_s * 1e3, m.backward_s * 1e3);
    }
}
