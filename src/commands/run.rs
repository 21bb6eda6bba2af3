//! `dfer run PIPELINE.toml`: plan the pipeline's stages from their stamps; with `--dry-run`
//! print the plan and stop, otherwise run the stages that need it in this process and print
//! the results with the paths of the reports and confusion matrices.

use std::path::PathBuf;

use anyhow::Result;

use super::stage::{exec, load};
use crate::atomic::read_if_exists;
use crate::error::{Outcome, UsageError};
use crate::pipeline::stamp::StageOutcome;
use crate::pipeline::{self, Pipeline, Selection, StageKind};
use crate::train::run_dir::RunDir;

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  dfer run pipelines/demo.toml\n  \
dfer run pipelines/dfew-ous.toml --set dataset.root=/data/DFEW --dry-run\n  \
dfer run pipelines/dfew-ous.toml --set dataset.root=/data/DFEW --set train.epochs=30 --from train\n  \
dfer run pipelines/ferv39k-ous.toml --set dataset.root=/data/FERV39k --only eval --set eval.checkpoint=last")]
pub struct Args {
    /// Pipeline file (see pipelines/).
    pub pipeline: PathBuf,
    /// Override a setting of the pipeline file, e.g. --set train.epochs=12 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Run this stage and every stage after it, even if up to date.
    #[arg(long, value_enum, conflicts_with = "only")]
    pub from: Option<StageKind>,
    /// Run only this stage (all its folds), even if up to date; its inputs must be done.
    #[arg(long, value_enum)]
    pub only: Option<StageKind>,
    /// Print the plan (each stage, whether it runs and why, its command) and stop.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(a: &Args) -> Result<Outcome> {
    let p = load(&a.pipeline, &a.sets)?;
    let steps = pipeline::plan(&p, Selection { from: a.from, only: a.only })?;
    if a.dry_run {
        print!("{}", pipeline::render_plan(&p, &steps));
        return Ok(Outcome::Ok);
    }
    let outcome = pipeline::execute(&p, &steps, &exec)?;
    print_results(&p)?;
    Ok(match outcome {
        StageOutcome::Ok => Outcome::Ok,
        StageOutcome::SomeFailed => Outcome::SomeFailed,
    })
}

/// Each run's evaluated figures, their mean, and where the reports and plots are.
fn print_results(p: &Pipeline) -> Result<()> {
    let mut figures = Vec::new();
    for run in p.runs() {
        let dir = RunDir::new(&run);
        let path = dir.report();
        let Some(text) = read_if_exists(&path)? else { continue };
        let r: crate::eval::Report = serde_json::from_str(&text)
            .map_err(|e| UsageError::new(format!("{}: not an evaluation report: {e}", path.display())))?;
        println!(
            "{}: UAR {:.2}  WAR {:.2}  (fold {}, epoch {}, {} test clips)",
            run.display(),
            r.metrics.uar,
            r.metrics.war,
            r.fold,
            r.checkpoint_epoch,
            r.metrics.clips
        );
        println!("    report {}  confusion matrix {}", path.display(), dir.confusion_png().display());
        figures.push((r.metrics.uar, r.metrics.war));
    }
    if !figures.is_empty() {
        let n = figures.len() as f64;
        let (uar, war) = figures.iter().fold((0.0, 0.0), |(u, w), (a, b)| (u + a / n, w + b / n));
        println!("{}: UAR {uar:.2}  WAR {war:.2}  (mean of {} runs)", p.name, figures.len());
    }
    let summary = p.out.join("report.json");
    if summary.exists() {
        println!("summary of all runs: {}", summary.display());
    }
    Ok(())
}
