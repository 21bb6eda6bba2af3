//! Prep tables: the per-shard `shards/NNNNN.parquet` (one row per clip: status, shard row,
//! timings), `prep.parquet` joined from them once every shard is complete, and the tally of
//! their statuses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use polars::prelude::*;

use super::clip::{ClipResult, FrameCounts};
use super::shard_paths;
use crate::clip_status::ClipStatus;
use crate::error::UsageError;
use crate::manifest::merge::{merge_tables, write_prep_table};

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
        Column::new("clip_id".into(), rows.iter().map(|x| x.result.clip_id.clone()).collect::<Vec<_>>()),
        Column::new("manifest_row".into(), rows.iter().map(|x| x.result.manifest_row as i64).collect::<Vec<_>>()),
        Column::new("label".into(), rows.iter().map(|x| x.result.label as i64).collect::<Vec<_>>()),
        Column::new("shard".into(), rows.iter().map(|x| x.shard as i64).collect::<Vec<_>>()),
        Column::new("row".into(), rows.iter().map(|x| x.row.map(|v| v as i64)).collect::<Vec<_>>()),
        Column::new("status".into(), rows.iter().map(|x| x.result.status.as_str()).collect::<Vec<_>>()),
        Column::new("error".into(), rows.iter().map(|x| x.result.error.clone()).collect::<Vec<_>>()),
        Column::new("detection_rate".into(), rows.iter().map(|x| x.result.detection_rate).collect::<Vec<_>>()),
        Column::new("mean_score".into(), rows.iter().map(|x| x.result.mean_score).collect::<Vec<_>>()),
        Column::new("detector_frames".into(), count(&|c| c.detector_frames)),
        Column::new("lost_frames".into(), count(&|c| c.lost)),
        Column::new("shots".into(), count(&|c| c.shots)),
        Column::new("decode_ms".into(), r(&|x| x.result.decode_ms)),
        Column::new("detect_ms".into(), r(&|x| x.result.detect_ms)),
        Column::new("crop_ms".into(), r(&|x| x.result.crop_ms)),
        Column::new("write_ms".into(), r(&|x| x.write_ms)),
    ])
}

/// Joins the per-shard tables into `prep.parquet` once every shard is complete.
pub(super) fn write_prep_parquet(out: &Path, shards: usize) -> Result<Option<PathBuf>> {
    let dir = out.join("shards");
    let mut tables = Vec::with_capacity(shards);
    for k in 0..shards {
        let (h5, pq) = shard_paths(&dir, k);
        if !h5.exists() || !pq.exists() {
            return Ok(None);
        }
        tables.push(pq);
    }
    let path = out.join("prep.parquet");
    if tables.is_empty() {
        // An empty manifest: a table with the columns and no rows.
        write_prep_table(&mut rows_frame(&[])?, &path)?;
    } else {
        merge_tables(&tables, &path)?;
    }
    Ok(Some(path))
}

/// Status counts and mean detection rate of the complete shards in `owned`.
pub(super) fn tally(dir: &Path, owned: &[usize]) -> Result<(BTreeMap<ClipStatus, usize>, Option<f64>)> {
    let mut statuses = BTreeMap::new();
    let (mut rate_sum, mut rate_n) = (0.0, 0usize);
    for &k in owned {
        let table = shard_paths(dir, k).1;
        let (df, _) = crate::manifest::read_parquet(&table)?;
        for s in df.column("status")?.str()?.iter().flatten() {
            let s: ClipStatus = s.parse().map_err(|e| UsageError::new(format!("{}: {e}", table.display())))?;
            *statuses.entry(s).or_insert(0) += 1;
        }
        for r in df.column("detection_rate")?.f32()?.iter().flatten() {
            rate_sum += r as f64;
            rate_n += 1;
        }
    }
    Ok((statuses, (rate_n > 0).then(|| rate_sum / rate_n as f64)))
}
