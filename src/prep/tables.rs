//! Prep tables: the per-shard `shards/NNNNN.parquet` (one row per clip: status, shard row,
//! timings), `prep.parquet` joined from them once every shard is complete, and the tally of
//! their statuses; `dfer prep merge`, which joins per-worker tables into one in manifest order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use polars::prelude::*;

use super::clip::{ClipResult, FrameCounts};
use super::out_dir::{shard_files, PrepDir};
use crate::clip_status::ClipStatus;
use crate::error::UsageError;
use crate::manifest::prep_table::PrepTable;

/// One row of `prep.parquet`.
#[derive(Debug, Clone)]
pub(super) struct PrepRow {
    pub result: ClipResult,
    pub shard: usize,
    pub row: Option<usize>,
    pub write_ms: f64,
}

pub(super) fn rows_frame(rows: &[PrepRow]) -> PolarsResult<DataFrame> {
    let r = |f: &dyn Fn(&PrepRow) -> f64| rows.iter().map(f).collect::<Vec<f64>>();
    let count = |f: &dyn Fn(&FrameCounts) -> usize| {
        rows.iter().map(|x| x.result.frames.as_ref().map(|c| f(c) as i64)).collect::<Vec<_>>()
    };
    DataFrame::new_infer_height(vec![
        Column::new(PrepTable::CLIP_ID.into(), rows.iter().map(|x| x.result.clip_id.clone()).collect::<Vec<_>>()),
        Column::new(
            PrepTable::MANIFEST_ROW.into(),
            rows.iter().map(|x| x.result.manifest_row as i64).collect::<Vec<_>>(),
        ),
        Column::new(PrepTable::LABEL.into(), rows.iter().map(|x| x.result.label as i64).collect::<Vec<_>>()),
        Column::new(PrepTable::SHARD.into(), rows.iter().map(|x| x.shard as i64).collect::<Vec<_>>()),
        Column::new(PrepTable::ROW.into(), rows.iter().map(|x| x.row.map(|v| v as i64)).collect::<Vec<_>>()),
        Column::new(PrepTable::STATUS.into(), rows.iter().map(|x| x.result.status.as_str()).collect::<Vec<_>>()),
        Column::new(PrepTable::ERROR.into(), rows.iter().map(|x| x.result.error.clone()).collect::<Vec<_>>()),
        Column::new(PrepTable::DETECTION_RATE.into(), rows.iter().map(|x| x.result.detection_rate).collect::<Vec<_>>()),
        Column::new(PrepTable::MEAN_SCORE.into(), rows.iter().map(|x| x.result.mean_score).collect::<Vec<_>>()),
        Column::new(PrepTable::DETECTOR_FRAMES.into(), count(&|c| c.detector_frames)),
        Column::new(PrepTable::WINDOWED_FRAMES.into(), count(&|c| c.windowed_frames)),
        Column::new(PrepTable::LOST_FRAMES.into(), count(&|c| c.lost)),
        Column::new(PrepTable::SHOTS.into(), count(&|c| c.shots)),
        Column::new(
            PrepTable::CLIP_FRAMES.into(),
            rows.iter().map(|x| x.result.clip_frames.map(|v| v as i64)).collect::<Vec<_>>(),
        ),
        Column::new(
            PrepTable::STORED_FRAMES.into(),
            rows.iter().map(|x| x.result.stored_frames.map(|v| v as i64)).collect::<Vec<_>>(),
        ),
        Column::new(PrepTable::STAGE_MS[0].into(), r(&|x| x.result.decode_ms)),
        Column::new(PrepTable::STAGE_MS[1].into(), r(&|x| x.result.detect_ms)),
        Column::new(PrepTable::STAGE_MS[2].into(), r(&|x| x.result.crop_ms)),
        Column::new(PrepTable::STAGE_MS[3].into(), r(&|x| x.write_ms)),
    ])
}

/// Joins the per-shard tables into `prep.parquet` once every shard is complete.
pub(super) fn write_prep_parquet(out: &PrepDir, shards: usize) -> Result<Option<PathBuf>> {
    let dir = out.shards();
    let mut tables = Vec::with_capacity(shards);
    for k in 0..shards {
        let (h5, pq) = shard_files(&dir, k);
        if !h5.exists() || !pq.exists() {
            return Ok(None);
        }
        tables.push(pq);
    }
    let path = out.table();
    if tables.is_empty() {
        // An empty manifest: a table with the columns and no rows.
        PrepTable::write(&mut rows_frame(&[])?, &path)?;
    } else {
        merge(&tables, &path)?;
    }
    Ok(Some(path))
}

/// Status counts and mean detection rate of the complete shards in `owned`.
pub(super) fn tally(dir: &Path, owned: &[usize]) -> Result<(BTreeMap<ClipStatus, usize>, Option<f64>)> {
    let mut statuses = BTreeMap::new();
    let (mut rate_sum, mut rate_n) = (0.0, 0usize);
    for &k in owned {
        let table = shard_files(dir, k).1;
        let df = PrepTable::read(&table)?;
        for s in df.column(PrepTable::STATUS)?.str()?.iter().flatten() {
            let s: ClipStatus = s.parse().map_err(|e| UsageError::new(format!("{}: {e}", table.display())))?;
            *statuses.entry(s).or_insert(0) += 1;
        }
        for r in df.column(PrepTable::DETECTION_RATE)?.f32()?.iter().flatten() {
            rate_sum += r as f64;
            rate_n += 1;
        }
    }
    Ok((statuses, (rate_n > 0).then(|| rate_sum / rate_n as f64)))
}

/// `dfer prep merge`: joins prep tables (at least one) into `output`, sorted by manifest
/// row. A manifest row present in two inputs is an error naming both files. Returns the row
/// count.
pub(crate) fn merge(inputs: &[PathBuf], output: &Path) -> Result<usize> {
    let mut seen: BTreeMap<i64, PathBuf> = BTreeMap::new();
    let mut all: Option<DataFrame> = None;
    for path in inputs {
        let df = PrepTable::read(path)?;
        let rows = df
            .column(PrepTable::MANIFEST_ROW)
            .and_then(|c| c.i64().cloned())
            .map_err(|e| UsageError::new(format!("{}: no manifest_row column: {e}", path.display())))?;
        for r in rows.iter().flatten() {
            if let Some(first) = seen.insert(r, path.clone()) {
                return Err(UsageError::new(format!(
                    "manifest row {r} is in both {} and {}",
                    first.display(),
                    path.display()
                ))
                .into());
            }
        }
        match &mut all {
            None => all = Some(df),
            Some(acc) => {
                acc.vstack_mut(&df).map_err(|e| UsageError::new(format!("{}: other columns: {e}", path.display())))?;
            }
        }
    }
    let all = all.ok_or_else(|| UsageError::new("no prep tables to merge"))?;
    let mut all = all.sort([PrepTable::MANIFEST_ROW], Default::default())?;
    PrepTable::write(&mut all, output)?;
    Ok(all.height())
}
