//! Stage stamps (`OUT/stamps/<stage>.json`): the key of a stage (a hash of its settings, its
//! inputs' keys and the dfer version), written as `started` before the stage runs and as
//! `done` with its outcome after; and the state a stage is in, with the reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::spec::Stage;
use crate::atomic::read_if_exists;

pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Phase {
    Started,
    Done,
}

/// What a finished stage reported: all good, or some clips failed and were recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StageOutcome {
    Ok,
    SomeFailed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Stamp {
    pub stage: String,
    pub key: String,
    pub version: String,
    pub settings: Value,
    /// Input stage id → the key it had when this stage ran.
    pub inputs: BTreeMap<String, String>,
    pub command: String,
    pub phase: Phase,
    pub outcome: Option<StageOutcome>,
    /// Seconds since the Unix epoch.
    pub started: u64,
    pub seconds: Option<f64>,
}

/// Where a stage stands against the pipeline as it is now.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum State {
    /// Finished with these settings and inputs; its outputs are there.
    Done(StageOutcome),
    /// Never run (no stamp).
    Missing,
    /// Started with these settings but did not finish.
    Interrupted,
    /// Finished, but with other settings, inputs or dfer version (the reason).
    Stale(String),
    /// Finished with these settings, but an output was removed since.
    OutputMissing(PathBuf),
}

impl State {
    pub(crate) fn label(&self) -> &'static str {
        match self {
            State::Done(_) => "done",
            State::Missing => "missing",
            State::Interrupted => "interrupted",
            State::Stale(_) => "stale",
            State::OutputMissing(_) => "output missing",
        }
    }

    /// The state in words, with the reason.
    pub(crate) fn describe(&self) -> String {
        match self {
            State::Done(StageOutcome::Ok) => "up to date".into(),
            State::Done(StageOutcome::SomeFailed) => "up to date (some clips failed and were recorded)".into(),
            State::Missing => "never run".into(),
            State::Interrupted => "interrupted; continues where it stopped".into(),
            State::Stale(why) => why.clone(),
            State::OutputMissing(p) => format!("output {} is missing", p.display()),
        }
    }
}

/// A stage's key: changes whenever its settings, an input's key or the dfer version change.
pub(crate) fn key(stage: &Stage, inputs: &BTreeMap<String, String>) -> String {
    let doc = serde_json::json!({
        "stage": stage.id, "settings": stage.settings, "inputs": inputs, "version": VERSION,
    });
    crate::digest::sha256_hex(doc.to_string())
}

pub(crate) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Stamp {
    pub(crate) fn read(path: &Path) -> Result<Option<Stamp>> {
        read_if_exists(path)?
            .map(|text| serde_json::from_str(&text).with_context(|| format!("{}: not a stage stamp", path.display())))
            .transpose()
    }

    pub(crate) fn write(&self, path: &Path) -> Result<()> {
        crate::atomic::write_atomic(path, serde_json::to_string_pretty(self)?.as_bytes())
    }

    /// The state of `stage` (whose key is now `key`) given this stamp.
    pub(crate) fn state(&self, stage: &Stage, key: &str, inputs: &BTreeMap<String, String>) -> State {
        if self.key != key {
            return State::Stale(self.why_stale(stage, inputs));
        }
        match (self.phase, self.outcome) {
            (Phase::Done, Some(o)) if stage.marker.exists() => State::Done(o),
            (Phase::Done, Some(_)) => State::OutputMissing(stage.marker.clone()),
            _ => State::Interrupted,
        }
    }

    fn why_stale(&self, stage: &Stage, inputs: &BTreeMap<String, String>) -> String {
        if self.version != VERSION {
            return format!("dfer version changed ({} → {VERSION})", self.version);
        }
        let changes = diff(stage.kind.section(), &self.settings, &stage.settings);
        if !changes.is_empty() {
            let shown: Vec<&str> = changes.iter().take(4).map(String::as_str).collect();
            let more = if changes.len() > 4 { format!(" and {} more", changes.len() - 4) } else { String::new() };
            return format!("settings changed: {}{more}", shown.join(", "));
        }
        match inputs.iter().find(|(id, k)| self.inputs.get(*id) != Some(*k)) {
            Some((id, _)) => format!("input {id} changed"),
            None => "inputs changed".into(),
        }
    }
}

/// Changed leaves between two settings documents, as `section.key old → new`.
fn diff(prefix: &str, old: &Value, new: &Value) -> Vec<String> {
    let mut a = BTreeMap::new();
    let mut b = BTreeMap::new();
    flatten(prefix, old, &mut a);
    flatten(prefix, new, &mut b);
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter_map(|k| match (a.get(k), b.get(k)) {
            (Some(x), Some(y)) if x == y => None,
            (Some(x), Some(y)) => Some(format!("{k} {x} → {y}")),
            (None, Some(y)) => Some(format!("{k} (new) {y}")),
            (Some(x), None) => Some(format!("{k} {x} (removed)")),
            (None, None) => None,
        })
        .collect()
}

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                flatten(&format!("{prefix}.{k}"), v, out);
            }
        }
        v => {
            out.insert(prefix.to_string(), v.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_names_changed_added_and_removed_keys() {
        let old = json!({"epochs": 10, "model": {"arch": "tiny", "heads": 4}});
        let new = json!({"epochs": 12, "model": {"arch": "tiny"}, "lr": 0.1});
        assert_eq!(
            diff("train", &old, &new),
            vec!["train.epochs 10 → 12", "train.lr (new) 0.1", "train.model.heads 4 (removed)"]
        );
        assert!(diff("train", &old, &old).is_empty());
    }
}
