//! `dfer manifest`: build `clips.parquet` from a dataset root and its description.

use std::path::PathBuf;

use anyhow::Result;

use crate::dataset::splits::Severity;
use crate::dataset::{DatasetDesc, SourceKind};
use crate::error::Outcome;
use crate::manifest;

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  dfer manifest --dataset dfew --root /data/DFEW -o dfew/clips.parquet\n  \
dfer manifest --dataset ferv39k --root /data/FERV39k --source frames -o ferv/clips.parquet\n  \
dfer manifest --dataset my-data.toml --root /data/mine -o mine/clips.parquet")]
pub struct Args {
    /// Built-in dataset (dfew, ferv39k, mafw) or a dataset description TOML file.
    #[arg(long)]
    pub dataset: String,
    /// Dataset root folder (the folder holding the official layout).
    #[arg(long)]
    pub root: PathBuf,
    /// Output manifest (Parquet).
    #[arg(short, long, default_value = "clips.parquet")]
    pub output: PathBuf,
    /// Read clips from original videos or from the official face-frame folders
    /// (default: the description's `sources.default`).
    #[arg(long, value_enum)]
    pub source: Option<SourceKind>,
}

pub fn run(args: &Args) -> Result<Outcome> {
    let desc = DatasetDesc::load(&args.dataset)?;
    let m = manifest::build(&desc, &args.root, args.source)?;
    for d in &m.diagnostics {
        match d.severity {
            Severity::Error => tracing::error!("{d}"),
            Severity::Warning => tracing::warn!("{d}"),
            Severity::Note => tracing::info!("{d}"),
        }
    }
    m.write(&args.output)?;
    let problems = m.problem_count();
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
