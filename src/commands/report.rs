//! `dfer report`: average several runs (e.g. DFEW's five folds) at the best and the last epoch.

use std::path::PathBuf;

use anyhow::Result;

use crate::error::Outcome;
use crate::eval;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  dfer report runs/dfew-fold1 runs/dfew-fold2 runs/dfew-fold3 runs/dfew-fold4 runs/dfew-fold5 -o dfew-5fold.json"
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
}

pub fn run(a: &Args) -> Result<Outcome> {
    let r = eval::multi_report(&a.runs)?;
    if let Some(path) = &a.output {
        crate::atomic::write_atomic(path, serde_json::to_string_pretty(&r)?.as_bytes())?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", r.to_text());
    }
    Ok(Outcome::Ok)
}
