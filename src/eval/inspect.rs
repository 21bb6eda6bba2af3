//! `dfer inspect runs/NAME`: a run folder's settings, per-epoch figures, best epoch and
//! report, read without changing it, and its training curves on request.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use super::{plot, Report};
use crate::atomic::read_if_exists;
use crate::model::config::Arch;
use crate::train::config::TrainConfig;
use crate::train::run_dir::RunDir;
use crate::train::{read_metrics, EpochLine};

/// `dfer inspect runs/NAME`: the run's settings, per-epoch figures, best epoch and report.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct RunInspection {
    pub run: PathBuf,
    pub dataset_manifest: PathBuf,
    pub fold: u32,
    pub arch: Arch,
    pub recipe: String,
    pub epochs_planned: u32,
    pub epochs: Vec<EpochLine>,
    pub best_epoch: Option<u32>,
    pub report: Option<Report>,
    /// Training curves, when drawn on request (`--plot`).
    pub curves_png: Option<PathBuf>,
}

/// Reads a run folder without changing it; `plot` draws the training curves to that PNG.
pub(crate) fn inspect_run(run: &Path, plot: Option<&Path>) -> Result<RunInspection> {
    let dir = RunDir::new(run);
    dir.require_run()?;
    let cfg = TrainConfig::read(&dir.config())?;
    let metrics = dir.metrics();
    let epochs = if metrics.exists() { read_metrics(&metrics)? } else { vec![] };
    let report_path = dir.report();
    let report = read_if_exists(&report_path)?
        .map(|text| serde_json::from_str(&text).with_context(|| format!("{}: not a report", report_path.display())))
        .transpose()?;
    let curves_png = if let (Some(path), false) = (plot, epochs.is_empty()) {
        let x: Vec<u32> = epochs.iter().map(|l| l.epoch).collect();
        let loss: Vec<f64> = epochs.iter().map(|l| l.train_loss).collect();
        let uar = epochs.iter().map(|l| l.test_uar).collect();
        let war = epochs.iter().map(|l| l.test_war).collect();
        plot::curves_png(path, &x, &loss, &[("test UAR", uar), ("test WAR", war)])?;
        Some(path.to_path_buf())
    } else {
        None
    };
    let recipe = if cfg.data.features.is_some() {
        "frozen image tower, feature cache"
    } else if cfg.train.finetune_image {
        "image tower fine-tuned"
    } else {
        "frozen image tower"
    };
    Ok(RunInspection {
        run: run.to_path_buf(),
        dataset_manifest: cfg.data.manifest.clone(),
        fold: cfg.data.fold,
        arch: cfg.model.arch,
        recipe: recipe.to_string(),
        epochs_planned: cfg.train.epochs,
        best_epoch: dir.checkpoints().best()?.map(|b| b.epoch),
        epochs,
        report,
        curves_png,
    })
}

impl RunInspection {
    pub(crate) fn to_text(&self) -> String {
        let mut out = format!(
            "run {}\n  manifest {}, fold {}\n  model {} ({}), {} of {} epochs done, best epoch {}\n",
            self.run.display(),
            self.dataset_manifest.display(),
            self.fold,
            self.arch,
            self.recipe,
            self.epochs.len(),
            self.epochs_planned,
            self.best_epoch.map_or("-".to_string(), |e| e.to_string())
        );
        out.push_str(&format!("  {:>5} {:>10} {:>8} {:>8} {:>9}\n", "epoch", "train loss", "UAR", "WAR", "clips/s"));
        for l in &self.epochs {
            out.push_str(&format!(
                "  {:>5} {:>10.4} {:>8.2} {:>8.2} {:>9.1}\n",
                l.epoch, l.train_loss, l.test_uar, l.test_war, l.clips_per_s
            ));
        }
        match &self.report {
            Some(r) => out.push_str(&format!(
                "  report (epoch {}): UAR {:.2} WAR {:.2}; test clips {}\n",
                r.checkpoint_epoch,
                r.metrics.uar,
                r.metrics.war,
                r.test_clips.to_text()
            )),
            None => out.push_str("  no report yet (dfer eval --run ...)\n"),
        }
        if let Some(p) = &self.curves_png {
            out.push_str(&format!("  curves {}\n", p.display()));
        }
        out
    }
}
