//! `dfer prep`: clip manifest → HDF5 shards + prep.parquet; `dfer prep merge`: per-worker prep
//! tables joined into one.

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::error::{Outcome, UsageError};
use crate::prep::config::{NoFacePolicy, PrepConfig};
use crate::prep::{self, PrepOptions};

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  dfer prep --manifest dfew/clips.parquet --out dfew/prep\n  \
dfer prep --manifest dfew/clips.parquet --out dfew/prep --config prep.toml --export-frames dfew/frames\n  \
dfer prep --manifest dfew/clips.parquet --out dfew/prep --shard-index 3 --num-shards 8   # worker 3 of 8\n  \
dfer prep merge -o dfew/prep/prep.parquet worker-a/prep.parquet worker-b/prep.parquet")]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    pub merge: Option<Merge>,
    /// Clip manifest from `dfer manifest`.
    #[arg(long, required = true)]
    pub manifest: Option<PathBuf>,
    /// Output folder: shards/, prep.parquet, prep_config.toml.
    #[arg(long, required = true)]
    pub out: Option<PathBuf>,
    /// Settings file (prep.toml); absent keys take their defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Decoded frames all workers may hold at once, in MB: a clip starts when its frames (probed
    /// size × frames kept) fit beside those in progress, so memory stays bounded at any thread
    /// count; the run's log says how long clips waited for it (docs/prep.md "Memory").
    #[arg(long, default_value_t = 384, value_parser = clap::value_parser!(u64).range(1..))]
    pub frame_memory_mb: u64,
    /// This worker's index among --num-shards workers (a job array passes its task index here;
    /// dfer never takes it from the environment, so a whole pipeline run inside an array task
    /// still prepares every shard).
    #[arg(long, requires = "num_shards")]
    pub shard_index: Option<usize>,
    /// Number of workers sharing the shards.
    #[arg(long, requires = "shard_index")]
    pub num_shards: Option<usize>,
    /// Dataset root, if it moved since the manifest was built.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Also write JPEG frame folders and PyTorch-style annotation lists here.
    #[arg(long)]
    pub export_frames: Option<PathBuf>,
    /// Label numbering of the exported lists' third column: 0 (DFER-CLIP and Former-DFER read
    /// it as is) or 1 (for loaders that return `label - 1`).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub export_label_base: u8,
    /// Override the config's no-face policy.
    #[arg(long, value_enum)]
    pub no_face_policy: Option<NoFacePolicy>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Merge {
    /// Join per-worker prep tables (prep.parquet or shards/NNNNN.parquet) into one, in manifest order.
    Merge {
        /// Output prep table.
        #[arg(short, long)]
        output: PathBuf,
        /// Prep tables to join; a clip in two of them is an error.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
}

/// `dfer prep merge` (and its old spelling, `dfer manifest merge`).
pub(crate) fn merge(m: &Merge) -> Result<Outcome> {
    let Merge::Merge { output, inputs } = m;
    let n = prep::tables::merge(inputs, output)?;
    tracing::info!("wrote {}: {n} clips from {} tables", output.display(), inputs.len());
    Ok(Outcome::Ok)
}

pub fn run(args: &Args) -> Result<Outcome> {
    if let Some(m) = &args.merge {
        return merge(m);
    }
    let (Some(manifest), Some(out)) = (&args.manifest, &args.out) else {
        bail!(UsageError::new("dfer prep needs --manifest and --out (or: dfer prep merge -o OUT TABLE...)"))
    };
    let mut config = match &args.config {
        Some(p) => PrepConfig::load(p)?,
        None => PrepConfig::default(),
    };
    if let Some(p) = args.no_face_policy {
        config.no_face_policy = p;
    }
    let (shard_index, num_shards) = (args.shard_index.unwrap_or(0), args.num_shards.unwrap_or(1));
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let opts = PrepOptions {
        manifest: manifest.clone(),
        out: out.clone(),
        config,
        threads,
        frame_memory: args.frame_memory_mb << 20,
        shard_index,
        num_shards,
        root: args.root.clone(),
        export_frames: args.export_frames.clone(),
        export_label_base: args.export_label_base,
    };
    let s = prep::run(&opts)?;
    let statuses: Vec<String> = s.statuses.iter().map(|(k, v)| format!("{k} {v}")).collect();
    tracing::info!(
        "prep: {} clips in {:.1} s ({:.2} clips/s, {threads} threads); shards {} written, {} already complete, {} of {} owned",
        s.clips_processed,
        s.seconds,
        s.clips_per_second,
        s.shards_written,
        s.shards_skipped,
        s.shards_owned,
        s.shards_total
    );
    tracing::info!(
        "prep: clips by status: {}; mean detection rate {}",
        statuses.join(", "),
        s.mean_detection_rate.map(|r| format!("{:.1}%", r * 100.0)).unwrap_or_else(|| "n/a".into())
    );
    match &s.prep_parquet {
        Some(p) => tracing::info!("prep: wrote {}", p.display()),
        None => {
            tracing::info!("prep: other workers' shards are not complete yet; prep.parquet is written by the last one")
        }
    }
    Ok(if s.failed() > 0 { Outcome::SomeFailed } else { Outcome::Ok })
}
