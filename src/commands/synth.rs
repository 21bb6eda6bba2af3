//! `dfer synth`: write a synthetic dataset in an official layout.

use std::path::PathBuf;

use anyhow::Result;

use crate::error::Outcome;
use crate::synth::{self, Cue, Layout, Motion, SynthOptions};

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  dfer synth --layout dfew --clips 40 --out synth-dfew --seed 1 --edge-cases\n  \
dfer manifest --dataset dfew --root synth-dfew -o synth-dfew/clips.parquet")]
pub struct Args {
    /// Which official layout to write.
    #[arg(long, value_enum)]
    pub layout: Layout,
    /// Number of ordinary clips (labels are balanced).
    #[arg(long, default_value_t = 40)]
    pub clips: usize,
    /// Output folder (must be new or empty).
    #[arg(long)]
    pub out: PathBuf,
    /// Random seed; the same seed writes the same dataset.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Add edge-case clips: short, 1-frame, no face, two faces, rotated, variable frame rate,
    /// truncated, zero-byte, non-ASCII name.
    #[arg(long)]
    pub edge_cases: bool,
    /// Largest frame height (sizes run from 320x240 to 1280x720).
    #[arg(long, default_value_t = 720)]
    pub max_height: u32,
    /// Fewest frames in an ordinary clip (at least 16).
    #[arg(long, default_value_t = 16)]
    pub min_frames: u32,
    /// Most frames in an ordinary clip.
    #[arg(long, default_value_t = 120)]
    pub max_frames: u32,
    /// Frame sizes to draw from, e.g. 640x360,1280x720 (default: 320x240 … 1280x720).
    #[arg(long, value_delimiter = ',', value_parser = parse_size)]
    pub sizes: Option<Vec<(u32, u32)>>,
    /// Frame rates to draw from, e.g. 25 (default: 24,25,30).
    #[arg(long, value_delimiter = ',')]
    pub fps: Option<Vec<u32>>,
    /// LFW faces used as identities besides the astronaut.
    #[arg(long, default_value_t = 8)]
    pub lfw_faces: usize,
    /// Do not write the official face-frame folders.
    #[arg(long)]
    pub no_face_frames: bool,
    /// Where the label shows: face (class-coloured ring, polarity-coloured scene) or scene only.
    #[arg(long, value_enum, default_value_t = Cue::Face)]
    pub cue: Cue,
    /// Motions of the ordinary clips, taken in turn: slow (drift, slow pan), fast (crossing at
    /// 1.5-2.5 face widths per second), zoom, shake, cut (to a face-free shot), cross (two faces).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "slow")]
    pub motion: Vec<Motion>,
    /// Share of each class's clips shown at weak intensity (their label colours faded toward
    /// grey by --weak-intensity); synth_truth.jsonl records each clip's intensity.
    #[arg(long, default_value_t = 0.0)]
    pub weak_share: f64,
    /// Strength of the label cue in weak clips, in (0, 1]: colour = grey + intensity x (colour - grey).
    #[arg(long, default_value_t = 0.35)]
    pub weak_intensity: f32,
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s.split_once('x').ok_or_else(|| format!("'{s}' is not WIDTHxHEIGHT"))?;
    Ok((w.parse().map_err(|_| format!("bad width in '{s}'"))?, h.parse().map_err(|_| format!("bad height in '{s}'"))?))
}

pub fn run(args: &Args) -> Result<Outcome> {
    let opts = SynthOptions {
        layout: args.layout,
        clips: args.clips,
        out: args.out.clone(),
        seed: args.seed,
        edge_cases: args.edge_cases,
        max_height: args.max_height,
        sizes: args.sizes.clone(),
        fps: args.fps.clone(),
        min_frames: args.min_frames,
        max_frames: args.max_frames,
        lfw_faces: args.lfw_faces,
        cue: args.cue,
        face_frames: !args.no_face_frames,
        motions: args.motion.clone(),
        weak_share: args.weak_share,
        weak_intensity: args.weak_intensity,
    };
    let truth = synth::synthesise(&opts)?;
    let frames: usize = truth.iter().map(|t| t.n_frames).sum();
    tracing::info!(
        "wrote {} clips ({frames} frames) in the {} layout to {}",
        truth.len(),
        args.layout.as_str(),
        args.out.display()
    );
    Ok(Outcome::Ok)
}
