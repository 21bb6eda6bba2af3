//! `dfer eval`: evaluate a training run on its fold's test clips.

use std::path::PathBuf;

use anyhow::Result;

use crate::error::Outcome;
use crate::eval;
use crate::train::checkpoint::CheckpointChoice;
use crate::train::run_dir::RunDir;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  dfer eval --run runs/demo-fold1\n  dfer eval --run runs/demo-fold1 --checkpoint last --json"
)]
pub struct Args {
    /// Run folder written by dfer train.
    #[arg(long)]
    pub run: PathBuf,
    /// Checkpoint: best (highest test WAR), last, or an epoch number.
    #[arg(long, default_value = "best")]
    pub checkpoint: CheckpointChoice,
    /// Print report.json instead of a summary.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: &Args) -> Result<Outcome> {
    let r = eval::evaluate_run(&a.run, a.checkpoint)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(Outcome::Ok);
    }
    println!("{} fold {} epoch {}", r.dataset, r.fold, r.checkpoint_epoch);
    println!("test clips: {}", r.test_clips.to_text());
    if !r.test_clips.adds_up() {
        eprintln!("warning: the score does not cover the fold's test split: prepare every clip (dfer prep) and evaluate again");
    }
    println!(
        "UAR {:.2}  WAR {:.2} (over all {} listed clips; unscorable ones count as wrong)",
        r.metrics.uar, r.metrics.war, r.metrics.clips
    );
    for (name, recall) in r.labels.iter().zip(&r.metrics.recall) {
        match recall {
            Some(v) => println!("  {name:<14} recall {v:6.2}"),
            None => println!("  {name:<14} (no test clips)"),
        }
    }
    for f in RunDir::new(&a.run).eval_outputs() {
        println!("wrote {}", f.display());
    }
    Ok(Outcome::Ok)
}
