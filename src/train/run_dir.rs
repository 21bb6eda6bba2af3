//! A training run's folder (`runs/<name>/`) and the name of every file in it: `config.toml`
//! (the resolved settings; its presence makes the folder a run), `metrics.jsonl` (one line per
//! epoch), `checkpoints/`, and what `dfer eval` adds (`report.json`, `confusion.csv`,
//! `confusion.png`, `predictions.csv`). The best-epoch rule lives here too.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::checkpoint::Checkpoints;
use crate::error::UsageError;

/// A run folder; only paths, nothing is read or written by making one.
#[derive(Debug, Clone)]
pub(crate) struct RunDir {
    root: PathBuf,
}

/// The files `dfer eval` writes into a run folder.
const EVAL_FILES: [&str; 4] = ["report.json", "confusion.csv", "confusion.png", "predictions.csv"];

impl RunDir {
    pub(crate) fn new(root: &Path) -> Self {
        Self { root: root.to_path_buf() }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.root
    }

    /// `config.toml`: the run's resolved settings.
    pub(crate) fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// `metrics.jsonl`: one line per finished epoch.
    pub(crate) fn metrics(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }

    pub(crate) fn checkpoints(&self) -> Checkpoints {
        Checkpoints::new(&self.root)
    }

    /// `report.json`: the evaluation of one checkpoint.
    pub(crate) fn report(&self) -> PathBuf {
        self.root.join(EVAL_FILES[0])
    }

    pub(crate) fn confusion_csv(&self) -> PathBuf {
        self.root.join(EVAL_FILES[1])
    }

    pub(crate) fn confusion_png(&self) -> PathBuf {
        self.root.join(EVAL_FILES[2])
    }

    pub(crate) fn predictions_csv(&self) -> PathBuf {
        self.root.join(EVAL_FILES[3])
    }

    /// Everything `dfer eval` writes, report first.
    pub(crate) fn eval_outputs(&self) -> Vec<PathBuf> {
        EVAL_FILES.iter().map(|f| self.root.join(f)).collect()
    }

    /// Refuses a folder without `config.toml`.
    pub(crate) fn require_run(&self) -> Result<()> {
        if self.config().exists() {
            Ok(())
        } else {
            Err(UsageError::new(format!("{}: not a training run (no config.toml)", self.root.display())).into())
        }
    }
}

/// The best-epoch rule, DFER-CLIP's (`is_best = val_acc > best_acc`): an epoch beats the best
/// so far only with a strictly higher test WAR, so on a tie the earliest epoch stays best.
pub(crate) fn beats(war: f64, best_war: f64) -> bool {
    war > best_war
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn war_decides_and_ties_keep_the_earlier_epoch() {
        assert!(beats(60.0, 59.0));
        assert!(!beats(60.0, 60.0), "a tie in WAR keeps the earlier epoch, whatever the UAR");
        assert!(!beats(59.0, 60.0));
    }
}
