//! `dfer train`: train OUS on one fold from prep's shards (or a feature cache).

use std::path::PathBuf;

use anyhow::Result;

use crate::error::Outcome;
use crate::train::{self, TrainOptions};

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  dfer train --config train.toml --run runs/demo-fold1 --fold 1\n  \
dfer train --config train.toml --run runs/demo-fold1 --resume")]
pub struct Args {
    /// Training configuration (TOML: [data], [model], [loss], [train], [aug]).
    #[arg(long)]
    pub config: PathBuf,
    /// Run folder: config.toml, checkpoints/, metrics.jsonl.
    #[arg(long)]
    pub run: PathBuf,
    /// Fold to train (overrides data.fold; ignored by single-split datasets).
    #[arg(long)]
    pub fold: Option<u32>,
    /// Continue the run from its latest complete checkpoint (same settings required).
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many epochs in this invocation (for time-limited cluster jobs); --resume continues.
    #[arg(long)]
    pub stop_after: Option<u32>,
}

pub fn run(a: &Args) -> Result<Outcome> {
    train::run(&TrainOptions {
        config: a.config.clone(),
        run: a.run.clone(),
        fold: a.fold,
        resume: a.resume,
        stop_after: a.stop_after,
    })?;
    Ok(Outcome::Ok)
}
