//! `dfer inspect`: summarise any dfer artefact (clip manifests, prep tables, shards), as text
//! or JSON; `--grid` draws a shard's contact sheet.

use std::path::PathBuf;

use anyhow::Result;

use crate::error::{Outcome, UsageError};
use crate::manifest::{self, Manifest};
use crate::prep;
use crate::shard::{self, ShardReader};

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  dfer inspect dfew/clips.parquet\n  \
dfer inspect dfew/clips.parquet --json > summary.json\n  \
dfer inspect dfew/prep/prep.parquet\n  \
dfer inspect dfew/prep/shards/00000.h5 --grid sheet.png")]
pub struct Args {
    /// The file to inspect: a clip manifest or prep table (.parquet), or a shard (.h5).
    pub path: PathBuf,
    /// Print JSON for scripts instead of text.
    #[arg(long)]
    pub json: bool,
    /// Shards: draw a contact sheet of face crops and scene frames with the face boxes.
    #[arg(long)]
    pub grid: Option<PathBuf>,
    /// Shards: clips in the contact sheet.
    #[arg(long, default_value_t = 8)]
    pub grid_clips: usize,
}

fn print<T: serde::Serialize>(json: bool, value: &T, text: impl FnOnce(&T) -> String) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{}", text(value));
    }
    Ok(())
}

pub fn run(args: &Args) -> Result<Outcome> {
    let ext = args.path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
    match ext.as_deref() {
        Some("parquet") => {
            let (df, meta) = manifest::read_parquet(&args.path)?;
            if meta.iter().any(|(k, _)| k == prep::PREP_TABLE_KEY) {
                print(args.json, &prep::inspect::summarise(&df)?, prep::inspect::render)?;
            } else {
                let m = Manifest::read(&args.path)?;
                print(args.json, &manifest::inspect::summarise(&m)?, manifest::inspect::render)?;
            }
            Ok(Outcome::Ok)
        }
        Some("h5") => {
            let r = ShardReader::open(&args.path)?;
            print(args.json, &shard::inspect::summarise(&r)?, shard::inspect::render)?;
            if let Some(out) = &args.grid {
                shard::inspect::grid(&r, out, args.grid_clips, 96)?;
                eprintln!("wrote {}", out.display());
            }
            Ok(Outcome::Ok)
        }
        _ => Err(UsageError::new(format!(
            "{}: cannot inspect this kind of file (expected a .parquet manifest or a .h5 shard)",
            args.path.display()
        ))
        .into()),
    }
}
