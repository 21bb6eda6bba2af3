//! A fold's test side as its split file lists it: every clip the manifest gives that role, each
//! scored from its face crops, scored from the centre fallback (no face found), unscorable
//! (counted wrong, with why: a clip the manifest or prep could not read), or not prepared (no
//! shard holds it and no prep table records it: prep is incomplete). The counts make a score
//! checkable against the split file: they add up only when every listed clip is accounted for.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::data::ClipRef;
use crate::clip_status::ClipStatus;
use crate::manifest::prep_table::PrepTable;
use crate::manifest::Manifest;

/// How many of a fold's listed test clips were scored, and how.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TestCounts {
    /// Clips the fold's test split lists (manifest rows with that role).
    pub listed: usize,
    /// Scored from face crops.
    pub faces: usize,
    /// Scored from the centre fallback: no face was found.
    pub fallback: usize,
    /// Not scorable (missing, unreadable or undecodable): counted as wrong.
    pub unscorable: usize,
    /// Neither in a shard nor in a prep table: prep did not reach them.
    pub not_prepared: usize,
}

impl TestCounts {
    /// Whether every listed clip is accounted for (scored, or unscorable and counted wrong).
    pub fn adds_up(&self) -> bool {
        self.not_prepared == 0 && self.faces + self.fallback + self.unscorable == self.listed
    }

    pub fn to_text(self) -> String {
        format!(
            "{} listed: {} scored from faces, {} from the centre fallback, {} unscorable (counted wrong){}",
            self.listed,
            self.faces,
            self.fallback,
            self.unscorable,
            match self.not_prepared {
                0 => String::new(),
                n => format!(", {n} NOT PREPARED (the score does not cover the split)"),
            }
        )
    }
}

/// What became of one listed test clip.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Outcome {
    /// In the shards: `clips[i]` of the test set; `fallback` when no face was found.
    Scored {
        clip: usize,
        fallback: bool,
    },
    /// Recorded as failed by the manifest or by prep.
    Unscorable {
        status: ClipStatus,
        why: String,
    },
    NotPrepared,
}

impl Outcome {
    /// The `source` column of `predictions.csv`.
    pub(crate) fn source(&self) -> &'static str {
        match self {
            Outcome::Scored { fallback: false, .. } => "faces",
            Outcome::Scored { fallback: true, .. } => "fallback",
            Outcome::Unscorable { .. } => "unscorable",
            Outcome::NotPrepared => "not_prepared",
        }
    }
}

/// One clip the test split lists.
#[derive(Clone, Debug)]
pub(crate) struct Listed {
    pub clip_id: String,
    pub label: usize,
    pub outcome: Outcome,
}

/// Every listed test clip of a fold, in manifest order, and the scorable ones as loader clips.
pub(crate) struct TestSet {
    pub listed: Vec<Listed>,
    pub clips: Vec<ClipRef>,
}

impl TestSet {
    /// The fold's listed clips (`roles` of the manifest), matched with the clips the shards hold
    /// (`in_shards`) and with the prep tables in `shards_dir` for those they do not.
    pub(crate) fn new(manifest: &Manifest, col: usize, in_shards: Vec<ClipRef>, shards_dir: &Path) -> Result<TestSet> {
        let records = prep_records(shards_dir)?;
        let by_row: HashMap<usize, usize> = in_shards.iter().enumerate().map(|(i, c)| (c.manifest_row, i)).collect();
        let mut listed = Vec::new();
        for (r, row) in manifest.rows.iter().enumerate() {
            if row.roles.get(col).copied().flatten() != Some(crate::dataset::splits::Role::Test) {
                continue;
            }
            let outcome = match (by_row.get(&r), records.get(&r)) {
                (Some(&i), _) => Outcome::Scored { clip: i, fallback: in_shards[i].fallback },
                (None, Some((status, why))) => Outcome::Unscorable { status: *status, why: why.clone() },
                (None, None) if !row.status.is_ok() => Outcome::Unscorable {
                    status: row.status,
                    why: row.error.clone().unwrap_or_else(|| row.status.to_string()),
                },
                (None, None) => Outcome::NotPrepared,
            };
            listed.push(Listed { clip_id: row.clip_id.clone(), label: row.label, outcome });
        }
        Ok(TestSet { listed, clips: in_shards })
    }

    pub(crate) fn counts(&self) -> TestCounts {
        let mut c = TestCounts { listed: self.listed.len(), ..Default::default() };
        for l in &self.listed {
            match l.outcome {
                Outcome::Scored { fallback: false, .. } => c.faces += 1,
                Outcome::Scored { fallback: true, .. } => c.fallback += 1,
                Outcome::Unscorable { .. } => c.unscorable += 1,
                Outcome::NotPrepared => c.not_prepared += 1,
            }
        }
        c
    }

    /// Each listed clip's prediction from the scorable clips' predictions (`None`: not scored).
    pub(crate) fn predictions(&self, scored: &[usize]) -> Vec<Option<usize>> {
        self.listed
            .iter()
            .map(|l| match l.outcome {
                Outcome::Scored { clip, .. } => Some(scored[clip]),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn truth(&self) -> Vec<usize> {
        self.listed.iter().map(|l| l.label).collect()
    }
}

/// Manifest row → (status, error) of every clip the prep tables beside the shards record as
/// not written.
fn prep_records(shards_dir: &Path) -> Result<HashMap<usize, (ClipStatus, String)>> {
    let mut out = HashMap::new();
    let entries =
        std::fs::read_dir(shards_dir).with_context(|| format!("{}: cannot read shard folder", shards_dir.display()))?;
    let mut tables: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    tables.sort();
    for path in tables {
        let df = PrepTable::read(&path)?;
        let rows = df.column(PrepTable::MANIFEST_ROW)?.i64()?.clone();
        let written = df.column(PrepTable::ROW)?.i64()?.clone();
        let status = df.column(PrepTable::STATUS)?.str()?.clone();
        let error = df.column(PrepTable::ERROR)?.str()?.clone();
        for i in 0..df.height() {
            let (Some(r), None) = (rows.get(i), written.get(i)) else { continue };
            let s: ClipStatus =
                status.get(i).unwrap_or("").parse().map_err(|e| anyhow::anyhow!("{}: row {i}: {e}", path.display()))?;
            out.insert(r as usize, (s, error.get(i).unwrap_or("").to_string()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_only_when_every_clip_is_accounted_for() {
        let c = TestCounts { listed: 5, faces: 2, fallback: 1, unscorable: 2, not_prepared: 0 };
        assert!(c.adds_up());
        assert!(c.to_text().starts_with("5 listed: 2 scored from faces, 1 from the centre fallback, 2 unscorable"));
        let partial = TestCounts { listed: 5, faces: 2, fallback: 1, unscorable: 1, not_prepared: 1 };
        assert!(!partial.adds_up() && partial.to_text().contains("1 NOT PREPARED"));
    }
}
