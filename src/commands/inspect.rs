//! `dfer inspect`: summarise any dfer artefact (clip manifests, prep tables, shards), as text
//! or JSON; `--grid` draws a shard's contact sheet.

use std::path::PathBuf;

use anyhow::Result;

use crate::error::{Outcome, UsageError};
use crate::manifest::{self, Manifest};
use crate::shard::{self, ShardReader};

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  dfer inspect dfew/clips.parquet\n  \
dfer inspect dfew/clips.parquet --json > summary.json\n  \
dfer inspect dfew/prep/prep.parquet\n  \
dfer inspect dfew/prep/shards/00000.h5 --grid sheet.png\n  \
dfer inspect runs/dfew-fold1\n  \
dfer inspect pipelines/dfew-ous.toml --set dataset.root=/data/DFEW")]
pub struct Args {
    /// What to inspect: a clip manifest or prep table (.parquet), a shard (.h5), a training run
    /// folder, or a pipeline file (.toml: each stage's state).
    pub path: PathBuf,
    /// Pipelines: override a setting, as `dfer run --set` does (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Print JSON for scripts instead of text.
    #[arg(long)]
    pub json: bool,
    /// Shards: draw a contact sheet of face crops and scene frames with the face boxes.
    #[arg(long)]
    pub grid: Option<PathBuf>,
    /// Shards: clips in the contact sheet.
    #[arg(long, default_value_t = 8)]
    pub grid_clips: usize,
    /// Runs: draw the training curves (loss, test UAR / WAR per epoch) to this PNG. Without it,
    /// inspecting a run writes nothing.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

fn print<T: serde::Serialize>(json: bool, value: &T, text: impl FnOnce(&T) -> String) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{}", text(value));
    }
    Ok(())
}

#[cfg(feature = "media")]
fn prep_table(args: &Args, df: &polars::prelude::DataFrame) -> Result<()> {
    print(args.json, &crate::prep::inspect::summarise(df)?, crate::prep::inspect::render)
}

#[cfg(not(feature = "media"))]
fn prep_table(args: &Args, _: &polars::prelude::DataFrame) -> Result<()> {
    Err(UsageError::new(format!(
        "{}: a prep table; this dfer was built without the media feature",
        args.path.display()
    ))
    .into())
}

#[cfg(feature = "media")]
fn pipeline(args: &Args) -> Result<()> {
    let p = super::stage::load(&args.path, &args.sets)?;
    let steps = crate::pipeline::plan(&p, crate::pipeline::Selection::default())?;
    print(args.json, &steps, |s| crate::pipeline::render_states(&p, s))
}

#[cfg(not(feature = "media"))]
fn pipeline(args: &Args) -> Result<()> {
    Err(UsageError::new(format!("{}: a pipeline; this dfer was built without the media feature", args.path.display()))
        .into())
}

pub fn run(args: &Args) -> Result<Outcome> {
    if args.path.is_dir() {
        print(args.json, &crate::eval::inspect::inspect_run(&args.path, args.plot.as_deref())?, |r| r.to_text())?;
        return Ok(Outcome::Ok);
    }
    let ext = args.path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
    match ext.as_deref() {
        Some("parquet") => {
            let (df, meta) = manifest::read_parquet(&args.path)?;
            if meta.iter().any(|(k, _)| k == manifest::PREP_TABLE_KEY) {
                prep_table(args, &df)?;
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
        Some("toml") => {
            pipeline(args)?;
            Ok(Outcome::Ok)
        }
        _ => Err(UsageError::new(format!(
            "{}: cannot inspect this kind of file (expected a .parquet manifest or prep table, a .h5 shard, a run folder or a pipeline .toml)",
            args.path.display()
        ))
        .into()),
    }
}
