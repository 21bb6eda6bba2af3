//! `dfer verify`: check a prep output folder and say exactly which shards to prepare again.

use std::path::PathBuf;

use anyhow::Result;

use crate::error::Outcome;
use crate::prep;

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  dfer verify dfew/prep\n  dfer verify dfew/prep --json")]
pub struct Args {
    /// Output folder of dfer prep (holding prep_plan.json, prep_config.toml and shards/).
    pub dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Exit 0 when every shard is complete and sound, 1 otherwise (also for a prep stopped before
/// its plan), 2 when the folder is no prep output.
pub fn run(a: &Args) -> Result<Outcome> {
    let v = prep::verify(&a.dir)?;
    let redo = v.to_redo();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "verification": v, "redo": redo }))?);
    } else if !v.planned {
        println!(
            "{}: prep was stopped before it planned the shards (no prep_plan.json); re-run the same dfer prep",
            a.dir.display()
        );
    } else {
        println!(
            "{}: {} of {} shards complete, {} clips written",
            a.dir.display(),
            v.complete,
            v.shards,
            v.clips_written
        );
        for p in &v.problems {
            println!("  shard {:05}: {}", p.shard, p.problem);
        }
        for f in &v.unfinished_files {
            println!("  unfinished file (a killed run's; removed when its shard is redone): {f}");
        }
        if redo.is_empty() {
            let table = if v.prep_parquet { "present" } else { "missing (run dfer prep merge)" };
            println!("all shards complete; prep.parquet {table}");
        } else {
            let list: Vec<String> = redo.iter().map(|k| k.to_string()).collect();
            println!("shards to prepare again: {}", list.join(" "));
            println!(
                "  re-run dfer prep with the same --manifest, --out and config (any worker layout): complete shards are skipped"
            );
        }
    }
    Ok(if redo.is_empty() && v.prep_parquet { Outcome::Ok } else { Outcome::SomeFailed })
}
