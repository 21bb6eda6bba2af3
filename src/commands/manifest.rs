//! `dfer manifest`: build `clips.parquet` from a dataset root and its description.

use std::path::PathBuf;

use anyhow::{bail, Result};

use super::prep::Merge;
use crate::dataset::splits::Severity;
use crate::dataset::{DatasetDesc, SourceKind};
use crate::error::{Outcome, UsageError};
use crate::manifest;

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  dfer manifest --dataset dfew --root /data/DFEW -o dfew/clips.parquet\n  \
dfer manifest --dataset ferv39k --root /data/FERV39k --source frames -o ferv/clips.parquet\n  \
dfer manifest --dataset my-data.toml --root /data/mine -o mine/clips.parquet")]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    /// `merge`: the old spelling of `dfer prep merge`, kept for scripts that use it.
    #[command(subcommand)]
    pub merge: Option<Merge>,
    /// Built-in dataset (dfew, ferv39k, mafw) or a dataset description TOML file.
    #[arg(long, required = true)]
    pub dataset: Option<String>,
    /// Dataset root folder (the folder holding the official layout).
    #[arg(long, required = true)]
    pub root: Option<PathBuf>,
    /// Output manifest (Parquet).
    #[arg(short, long, default_value = "clips.parquet")]
    pub output: PathBuf,
    /// Read clips from original videos or from the official face-frame folders
    /// (default: the description's `sources.default`).
    #[arg(long, value_enum)]
    pub source: Option<SourceKind>,
}

pub fn run(args: &Args) -> Result<Outcome> {
    if let Some(m) = &args.merge {
        tracing::warn!("dfer manifest merge is now dfer prep merge; the old spelling will be removed");
        return super::prep::merge(m);
    }
    let (Some(dataset), Some(root)) = (&args.dataset, &args.root) else {
        bail!(UsageError::new("dfer manifest needs --dataset and --root"))
    };
    let desc = DatasetDesc::load(dataset)?;
    let m = manifest::build(&desc, root, args.source)?;
    for d in &m.diagnostics {
        match d.severity {
            Severity::Error => tracing::error!("{d}"),
            Severity::Warning => tracing::warn!("{d}"),
            Severity::Note => tracing::info!("{d}"),
        }
    }
    m.write(&args.output)?;
    let problems = m.problem_count();
    const SHOWN: usize = 10;
    for r in m.rows.iter().filter(|r| !r.status.is_ok()).take(SHOWN) {
        tracing::warn!("clip {}: {}: {}", r.clip_id, r.status, r.error.as_deref().unwrap_or(""));
    }
    if problems > SHOWN {
        tracing::warn!("… and {} more clips with problems (dfer inspect {})", problems - SHOWN, args.output.display());
    }
    let line_errors = m.diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
    tracing::info!(
        "wrote {}: {} clips, {} usable, {} with problems, {} split-file errors",
        args.output.display(),
        m.rows.len(),
        m.rows.len() - problems,
        problems,
        line_errors
    );
    Ok(if problems > 0 || line_errors > 0 { Outcome::SomeFailed } else { Outcome::Ok })
}
