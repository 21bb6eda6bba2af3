//! `dfer verify`: checks a prep output folder against its plan: every expected shard present,
//! readable, made with the folder's settings, covering its planned manifest rows, with as
//! many clips as its table says; and lists files left by killed runs.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::out_dir::{recorded_hash, shard_files, PrepDir};
use super::plan::Plan;
use crate::atomic::read_if_exists;
use crate::error::UsageError;
use crate::manifest::prep_table::PrepTable;
use crate::shard::ShardReader;

/// One shard's problem found by [`verify`].
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ShardProblem {
    pub shard: usize,
    pub problem: String,
}

/// What `dfer verify` found in a prep output folder.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Verification {
    /// False when prep was stopped before it wrote `prep_plan.json` (nothing to check yet).
    pub planned: bool,
    pub shards: usize,
    pub complete: usize,
    pub clips_written: usize,
    pub problems: Vec<ShardProblem>,
    /// Temporary files left by killed runs (removed when their shard is redone).
    pub unfinished_files: Vec<String>,
    pub prep_parquet: bool,
}

impl Verification {
    /// Shard indices to prepare again.
    pub(crate) fn to_redo(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.problems.iter().map(|p| p.shard).collect();
        v.dedup();
        v
    }

    /// A plan of `shards` shards, none checked yet.
    fn planned(shards: usize, prep_parquet: bool) -> Verification {
        Verification {
            planned: true,
            shards,
            complete: 0,
            clips_written: 0,
            problems: vec![],
            unfinished_files: vec![],
            prep_parquet,
        }
    }

    /// Before prep wrote its plan: nothing to check yet.
    fn unplanned(prep_parquet: bool) -> Verification {
        Verification { planned: false, ..Verification::planned(0, prep_parquet) }
    }
}

/// `dfer verify`: every expected shard present, readable, made with the folder's settings, its
/// clip count equal to its table's and its manifest range the planned one.
pub(crate) fn verify(out: &Path) -> Result<Verification> {
    let folder = PrepDir::new(out);
    let plan_path = folder.plan();
    let prep_parquet = folder.table().exists();
    let text = match read_if_exists(&plan_path)? {
        Some(text) => text,
        // prep makes shards/ and prep_config.toml first: a run killed then left no plan yet.
        None if folder.shards().is_dir() || folder.config_record().exists() => {
            return Ok(Verification::unplanned(prep_parquet));
        }
        None => bail!(UsageError::new(format!(
            "{}: missing; is {} a dfer prep output?",
            plan_path.display(),
            out.display()
        ))),
    };
    let plan: Plan = serde_json::from_str(&text).with_context(|| format!("{}: unreadable", plan_path.display()))?;
    let hash = config_hash(&folder)?;
    let dir = folder.shards();
    let mut v = Verification::planned(plan.shards, prep_parquet);
    for k in 0..plan.shards {
        let (h5, pq) = shard_files(&dir, k);
        let (start, end) = plan.range(k);
        match check_shard(&h5, &pq, &hash, [start, end]) {
            Ok(n) => {
                v.complete += 1;
                v.clips_written += n;
            }
            Err(problem) => v.problems.push(ShardProblem { shard: k, problem }),
        }
    }
    v.unfinished_files = unfinished_files(&dir);
    Ok(v)
}

/// The config hash recorded in the folder's `prep_config.toml`.
fn config_hash(folder: &PrepDir) -> Result<String> {
    let path = folder.config_record();
    let text = std::fs::read_to_string(&path).map_err(|e| UsageError::new(format!("{}: {e}", path.display())))?;
    Ok(recorded_hash(&text).to_string())
}

/// Temporary files in `dir`, sorted by name.
fn unfinished_files(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return vec![] };
    let mut tmp: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    tmp.sort();
    tmp
}

fn check_shard(h5: &Path, pq: &Path, hash: &str, expect: [usize; 2]) -> Result<usize, String> {
    if !h5.exists() {
        return Err(format!("{} is missing", h5.display()));
    }
    if !pq.exists() {
        return Err(format!("{} is missing", pq.display()));
    }
    let r = ShardReader::open(h5).map_err(|e| format!("{e:#}"))?;
    if r.attrs.config_hash != hash {
        return Err(format!("{}: made with other settings (config hash {})", h5.display(), r.attrs.config_hash));
    }
    if r.attrs.manifest_rows != expect {
        return Err(format!("{}: covers manifest rows {:?}, expected {expect:?}", h5.display(), r.attrs.manifest_rows));
    }
    let df = PrepTable::read(pq).map_err(|e| format!("{e:#}"))?;
    if df.height() != expect[1] - expect[0] {
        return Err(format!("{}: {} rows, expected {}", pq.display(), df.height(), expect[1] - expect[0]));
    }
    let written =
        df.column(PrepTable::ROW).map(|c| c.len() - c.null_count()).map_err(|e| format!("{}: {e}", pq.display()))?;
    if written != r.len {
        return Err(format!("{}: {} clips, its table says {written}", h5.display(), r.len));
    }
    // Every frame must read back (and decode, in a JPEG shard).
    for i in 0..r.len {
        r.pixels(i).map_err(|e| format!("{e:#}"))?;
    }
    Ok(r.len)
}
