//! `dfer report`: several runs (DFEW's five folds, or runs of different methods on the same
//! shards) side by side, each at its best and its last epoch, with the mean over the runs of
//! each method, as a table, JSON and a bar plot.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::plot;
use crate::error::UsageError;
use crate::model::config::Method;
use crate::train::config::TrainConfig;
use crate::train::run_dir::{beats, RunDir};
use crate::train::test_set::TestCounts;
use crate::train::{read_metrics, EpochLine};

/// One run's figures in a multi-run report.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct RunSummary {
    pub run: PathBuf,
    /// `model.method` of the run's config.
    pub method: Method,
    pub fold: u32,
    pub epochs: u32,
    /// Earliest epoch with the highest test WAR: selected on the test fold, as common code does.
    pub best_epoch: u32,
    pub best_uar: f64,
    pub best_war: f64,
    pub last_uar: f64,
    pub last_war: f64,
    /// How the fold's listed test clips were scored (absent in runs from before it was recorded).
    pub test_clips: Option<TestCounts>,
    /// The counts do not add up to the split file (taken with `--allow-partial` only).
    pub partial: bool,
}

/// The mean over the runs of one method.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct MethodMeans {
    pub method: Method,
    pub runs: usize,
    pub mean_best_uar: f64,
    pub mean_best_war: f64,
    pub mean_last_uar: f64,
    pub mean_last_war: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct MultiReport {
    pub runs: Vec<RunSummary>,
    /// One entry per method, in the order the runs first name them.
    pub methods: Vec<MethodMeans>,
}

pub(crate) fn summarise(run: &Path) -> Result<RunSummary> {
    let dir = RunDir::new(run);
    let cfg = TrainConfig::read(&dir.config())?;
    let lines: Vec<EpochLine> = read_metrics(&dir.metrics())?;
    let last = lines.last().with_context(|| format!("{}: no finished epoch", run.display()))?;
    // The earliest epoch with the highest WAR, as the trainer's best.json records it.
    let best = lines.iter().reduce(|a, b| if beats(b.test_war, a.test_war) { b } else { a }).expect("non-empty");
    let test_clips = last.test_clips;
    Ok(RunSummary {
        run: run.to_path_buf(),
        method: cfg.model.method,
        fold: cfg.data.fold,
        epochs: last.epoch,
        best_epoch: best.epoch,
        best_uar: best.test_uar,
        best_war: best.test_war,
        last_uar: last.test_uar,
        last_war: last.test_war,
        partial: !test_clips.is_some_and(|c| c.adds_up()),
        test_clips,
    })
}

fn means(method: Method, runs: &[&RunSummary]) -> MethodMeans {
    let mean = |f: fn(&RunSummary) -> f64| runs.iter().map(|r| f(r)).sum::<f64>() / runs.len().max(1) as f64;
    MethodMeans {
        method,
        runs: runs.len(),
        mean_best_uar: mean(|r| r.best_uar),
        mean_best_war: mean(|r| r.best_war),
        mean_last_uar: mean(|r| r.last_uar),
        mean_last_war: mean(|r| r.last_war),
    }
}

/// The report of `runs`. A run whose test counts do not add up to its split file (clips not
/// prepared, or counts not recorded) is refused, naming it, unless `allow_partial`, which keeps
/// it marked.
pub(crate) fn multi_report(runs: &[PathBuf], allow_partial: bool) -> Result<MultiReport> {
    let runs: Vec<RunSummary> = runs.iter().map(|r| summarise(r)).collect::<Result<_>>()?;
    if let (false, Some(r)) = (allow_partial, runs.iter().find(|r| r.partial)) {
        let what = r.test_clips.map_or("no test counts recorded (a run from an older dfer)".into(), |c| c.to_text());
        bail!(UsageError::new(format!(
            "{}: its test clips do not add up to the split file ({what}); its score does not cover the fold. \
             Prepare every clip and train again, or pass --allow-partial to report it marked",
            r.run.display()
        )));
    }
    let mut order: Vec<Method> = Vec::new();
    for r in &runs {
        if !order.contains(&r.method) {
            order.push(r.method);
        }
    }
    let methods =
        order.into_iter().map(|m| means(m, &runs.iter().filter(|r| r.method == m).collect::<Vec<_>>())).collect();
    Ok(MultiReport { runs, methods })
}

impl MultiReport {
    pub(crate) fn to_text(&self) -> String {
        let row = |name: &str, method: &str, fold: &str, epochs: &str, best: &str, f: [f64; 4], clips: &str| {
            format!(
                "{name:<36} {method:<10} {fold:>4} {epochs:>6} {best:>10} {:>8.2} {:>8.2} {:>8.2} {:>8.2}  {clips}\n",
                f[0], f[1], f[2], f[3]
            )
        };
        let mut out = format!(
            "{:<36} {:<10} {:>4} {:>6} {:>10} {:>8} {:>8} {:>8} {:>8}  {}\n",
            "run",
            "method",
            "fold",
            "epochs",
            "best epoch",
            "best UAR",
            "best WAR",
            "last UAR",
            "last WAR",
            "test clips: listed = faces + fallback + unscorable"
        );
        for r in &self.runs {
            let (epochs, best) = (r.epochs.to_string(), r.best_epoch.to_string());
            let f = [r.best_uar, r.best_war, r.last_uar, r.last_war];
            let clips = match r.test_clips {
                Some(c) => format!("{} = {} + {} + {}", c.listed, c.faces, c.fallback, c.unscorable),
                None => "not recorded".into(),
            };
            let clips = if r.partial { format!("{clips}  PARTIAL: does not cover the split") } else { clips };
            let name = r.run.display().to_string();
            out.push_str(&row(&name, r.method.as_str(), &r.fold.to_string(), &epochs, &best, f, &clips));
        }
        for m in &self.methods {
            let f = [m.mean_best_uar, m.mean_best_war, m.mean_last_uar, m.mean_last_war];
            out.push_str(&row(&format!("mean of {} runs", m.runs), m.method.as_str(), "", "", "", f, ""));
        }
        out.push_str(
            "note: the best epoch is chosen on each fold's test clips, as most published DFER code does; \
             the last-epoch figures involve no selection on test data.\n",
        );
        out
    }

    /// A bar plot of each method's mean best and last UAR / WAR.
    pub(crate) fn plot(&self, path: &Path) -> Result<()> {
        let groups: Vec<(String, [f64; 4])> = self
            .methods
            .iter()
            .map(|m| {
                let name = format!("{} ({} runs)", m.method.as_str(), m.runs);
                (name, [m.mean_best_uar, m.mean_best_war, m.mean_last_uar, m.mean_last_war])
            })
            .collect();
        plot::bars_png(path, &groups, ["best UAR", "best WAR", "last UAR", "last WAR"], "mean over runs (%)")
    }
}
