//! `dfer eval` (one run: metrics on its fold's test clips from a checkpoint, `report.json`,
//! confusion matrix as CSV and PNG, per-clip predictions); `multi.rs` is `dfer report` (several
//! runs, e.g. DFEW's five folds of two methods, averaged the way papers do, at the best and at
//! the last epoch); `inspect.rs` is `dfer inspect` of a run folder.

pub(crate) mod inspect;
pub(crate) mod multi;
pub(crate) mod plot;

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::error::UsageError;
use crate::metrics::Metrics;
use crate::sampling;
use crate::train::checkpoint::{CheckpointChoice, EpochState};
use crate::train::config::TrainConfig;
use crate::train::run_dir::RunDir;
use crate::train::test_set::{Outcome, TestCounts};
use crate::train::Session;

/// `report.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub run: PathBuf,
    pub dataset: String,
    pub fold: u32,
    pub labels: Vec<String>,
    pub checkpoint_epoch: u32,
    /// Over every clip the fold's test split lists; unscorable clips count as wrong.
    pub metrics: Metrics,
    /// How the listed test clips were scored.
    pub test_clips: TestCounts,
    pub data_hash: String,
    pub config_hash: String,
    pub tool_version: String,
}

/// The record of checkpoint `which` of `run`, verified.
pub(crate) fn checkpoint_state(run: &Path, which: CheckpointChoice) -> Result<EpochState> {
    let ck = RunDir::new(run).checkpoints();
    let state = match which {
        CheckpointChoice::Best => ck.best()?,
        CheckpointChoice::Last => ck.latest()?,
        CheckpointChoice::Epoch(epoch) => Some(ck.record(epoch)?),
    };
    match state {
        Some(s) => {
            ck.verify(&s)?;
            Ok(s)
        }
        None => Err(UsageError::new(format!("{}: no complete checkpoint yet", ck.dir().display())).into()),
    }
}

/// Evaluates `run` at checkpoint `which` and writes its report files.
pub(crate) fn evaluate_run(run: &Path, which: CheckpointChoice) -> Result<Report> {
    let dir = RunDir::new(run);
    dir.require_run()?;
    let cfg = TrainConfig::read(&dir.config())?;
    let state = checkpoint_state(run, which)?;
    let epoch = state.epoch;
    let mut session = Session::open(cfg)?;
    dir.checkpoints().load_weights(&state, &mut session.runner)?;
    let predicted = session.predict_test()?;
    let labels = session.labels().to_vec();
    let (metrics, test_clips) = session.evaluate_predictions(&predicted);
    let report = Report {
        run: run.to_path_buf(),
        dataset: session.manifest.desc.name.clone(),
        fold: session.cfg.data.fold,
        labels: labels.clone(),
        checkpoint_epoch: epoch,
        metrics,
        test_clips,
        data_hash: session.shards.data_hash(),
        config_hash: session.cfg.hash()?,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    write_atomic(&dir.predictions_csv(), predictions_csv(&session, &predicted).as_bytes())?;
    write_atomic(&dir.confusion_csv(), report.metrics.confusion_csv(&labels).as_bytes())?;
    let title = format!(
        "{} fold {} epoch {}: UAR {:.2} WAR {:.2}",
        report.dataset, report.fold, epoch, report.metrics.uar, report.metrics.war
    );
    plot::confusion_png(&dir.confusion_png(), &report.metrics.confusion, &labels, &title)?;
    write_atomic(&dir.report(), serde_json::to_string_pretty(&report)?.as_bytes())?;
    Ok(report)
}

/// `predictions.csv`: one row per listed test clip: its label, the prediction (empty when not
/// scorable), how it was scored (`faces`, `fallback`, `unscorable`, `not_prepared`) and the
/// frame numbers the test view used, space-separated (0-based, presentation order; with
/// `face_crops = "dataset"`, the crop folder's files in numeric order).
fn predictions_csv(session: &Session, predicted: &[Option<usize>]) -> String {
    let labels = session.labels();
    let t = session.shards.attrs().frames;
    let mut out = String::from("clip_id,label,predicted,source,frames\n");
    for (l, p) in session.listed.listed.iter().zip(predicted) {
        let frames = match l.outcome {
            Outcome::Scored { clip, .. } => {
                let c = &session.test[clip];
                let n = session.shards.readers[c.shard].index.clip_frames[c.row];
                sampling::test_indices(n, t).iter().map(|f| f.to_string()).collect::<Vec<_>>().join(" ")
            }
            _ => String::new(),
        };
        let pred = p.map_or("", |p| labels[p].as_str());
        out.push_str(&format!(
            "{},{},{pred},{},{frames}\n",
            csv_field(&l.clip_id),
            labels[l.label],
            l.outcome.source()
        ));
    }
    out
}

/// A CSV field, quoted when it holds a comma or a quote.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
