//! `dfer embed`: run the frozen image tower once over the shards and cache its features.

use std::path::PathBuf;

use anyhow::Result;

use crate::error::Outcome;
use crate::train::{cache, config::TrainConfig};

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  dfer embed --config train.toml --out features --views 4\n  \
(then set data.features = \"features\" in the training config)")]
pub struct Args {
    /// Training configuration whose [data] and [model] the features are made for.
    #[arg(long)]
    pub config: PathBuf,
    /// Output folder (features.h5).
    #[arg(long)]
    pub out: PathBuf,
    /// Augmented views per clip besides the plain one (training picks one per epoch).
    #[arg(long, default_value_t = 0)]
    pub views: usize,
}

pub fn run(a: &Args) -> Result<Outcome> {
    let cfg = TrainConfig::read(&a.config)?;
    let path = cache::embed(&cfg, &a.out, a.views)?;
    println!("wrote {}", path.display());
    Ok(Outcome::Ok)
}
