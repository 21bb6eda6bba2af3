//! `dfer report`: several runs (e.g. DFEW's five folds, of one method or several) side by side at
//! the best and the last epoch, with each method's mean.

use std::path::PathBuf;

use anyhow::Result;

use crate::error::Outcome;
use crate::eval;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  dfer report runs/dfew-fold1 runs/dfew-fold2 runs/dfew-fold3 runs/dfew-fold4 runs/dfew-fold5 -o dfew-5fold.json\n  \
dfer report out/dfew-ous/runs/fold* out/dfew-dfer-clip/runs/fold* -o compare.json --plot compare.png"
)]
pub struct Args {
    /// Run folders (each with metrics.jsonl).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write the report as JSON to this file.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Also draw each method's mean best and last UAR / WAR as a bar plot (PNG) here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Report runs whose test clips do not add up to their split file (clips not prepared),
    /// marked PARTIAL, instead of refusing them.
    #[arg(long)]
    pub allow_partial: bool,
}

pub fn run(a: &Args) -> Result<Outcome> {
    let r = eval::multi::multi_report(&a.runs, a.allow_partial)?;
    if let Some(path) = &a.output {
        crate::atomic::write_atomic(path, serde_json::to_string_pretty(&r)?.as_bytes())?;
    }
    if let Some(path) = &a.plot {
        r.plot(path)?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", r.to_text());
    }
    Ok(Outcome::Ok)
}
