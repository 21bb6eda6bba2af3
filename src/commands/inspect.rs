//! `dfer inspect`: summarise any dfer artefact (clip manifests for now), as text or JSON.

use std::path::PathBuf;

use anyhow::Result;

use crate::error::{Outcome, UsageError};
use crate::manifest::{self, Manifest};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  dfer inspect dfew/clips.parquet\n  dfer inspect dfew/clips.parquet --json > summary.json"
)]
pub struct Args {
    /// The file to inspect: a clip manifest (.parquet).
    pub path: PathBuf,
    /// Print JSON for scripts instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> Result<Outcome> {
    let ext = args.path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
    match ext.as_deref() {
        Some("parquet") => {
            let m = Manifest::read(&args.path)?;
            let s = manifest::inspect::summarise(&m)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{}", manifest::inspect::render(&s));
            }
            Ok(Outcome::Ok)
        }
        _ => Err(UsageError::new(format!(
            "{}: cannot inspect this kind of file (expected a .parquet manifest)",
            args.path.display()
        ))
        .into()),
    }
}
