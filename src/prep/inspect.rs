//! `dfer inspect prep.parquet`: clips by status with example errors, detection rates, lost
//! frames and shots, and where the time went (decode / detect / crop / write milliseconds per
//! clip).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context, Result};
use polars::prelude::*;
use serde::Serialize;

use crate::clip_status::ClipStatus;
use crate::manifest::prep_table::PrepTable;

/// What `dfer inspect` says about a prep table.
#[derive(Debug, Serialize)]
pub(crate) struct PrepTableSummary {
    pub clips: usize,
    pub written: usize,
    pub shards: usize,
    /// Status → (count, up to five `clip_id: error` examples).
    pub statuses: BTreeMap<ClipStatus, (usize, Vec<String>)>,
    pub mean_detection_rate: Option<f64>,
    /// Clips whose detection rate is under 1 (some frames without a face box).
    pub clips_with_gaps: usize,
    /// Frames marked lost (the detector ran, or ran on both neighbours, and found no face) and
    /// the clips that have any; `None` for tables written before they were counted.
    pub lost_frames: Option<(i64, usize)>,
    /// Clips with more than one shot.
    pub clips_with_cuts: Option<usize>,
    /// Mean stored frames per clip the detector ran on, and of them looked at in a window only.
    pub mean_detector_frames: Option<f64>,
    pub mean_windowed_frames: Option<f64>,
    /// Mean milliseconds per clip of each stage, over clips that were processed.
    pub mean_ms: BTreeMap<String, f64>,
}

pub(crate) fn summarise(df: &DataFrame) -> Result<PrepTableSummary> {
    let status = df.column(PrepTable::STATUS)?.str()?.clone();
    let ids = df.column(PrepTable::CLIP_ID)?.str()?.clone();
    let errors = df.column(PrepTable::ERROR)?.str()?.clone();
    let mut statuses: BTreeMap<ClipStatus, (usize, Vec<String>)> = BTreeMap::new();
    for ((s, id), e) in status.iter().zip(ids.iter()).zip(errors.iter()) {
        let s: ClipStatus = s.context("a null status")?.parse().map_err(anyhow::Error::msg)?;
        let entry = statuses.entry(s).or_default();
        entry.0 += 1;
        if let (Some(e), true) = (e, entry.1.len() < 5) {
            entry.1.push(format!("{}: {e}", id.unwrap_or("?")));
        }
    }
    let processed = df.filter(&df.column(PrepTable::DETECTION_RATE)?.is_not_null())?;
    let rates = processed.column(PrepTable::DETECTION_RATE)?.cast(&DataType::Float64)?;
    let rates = rates.f64()?;
    let mut mean_ms = BTreeMap::new();
    for stage in PrepTable::STAGE_MS {
        if let Some(m) = processed.column(stage)?.cast(&DataType::Float64)?.f64()?.mean() {
            mean_ms.insert(stage.trim_end_matches("_ms").to_string(), m);
        }
    }
    let shards = df.column(PrepTable::SHARD)?.cast(&DataType::Int64)?.i64()?.n_unique()?;
    let ints = |name: &str| -> Option<Vec<i64>> {
        processed.column(name).ok()?.i64().ok().map(|c| c.iter().flatten().collect())
    };
    let lost = ints(PrepTable::LOST_FRAMES);
    let shots = ints(PrepTable::SHOTS);
    let mean = |v: Option<Vec<i64>>| v.filter(|v| !v.is_empty()).map(|v| v.iter().sum::<i64>() as f64 / v.len() as f64);
    Ok(PrepTableSummary {
        clips: df.height(),
        written: df.column(PrepTable::ROW)?.is_not_null().sum().unwrap_or(0) as usize,
        shards,
        statuses,
        mean_detection_rate: rates.mean(),
        clips_with_gaps: rates.iter().flatten().filter(|r| *r < 1.0).count(),
        lost_frames: lost.map(|v| (v.iter().sum(), v.iter().filter(|&&n| n > 0).count())),
        clips_with_cuts: shots.map(|v| v.iter().filter(|&&n| n > 1).count()),
        mean_detector_frames: mean(ints(PrepTable::DETECTOR_FRAMES)),
        mean_windowed_frames: mean(ints(PrepTable::WINDOWED_FRAMES)),
        mean_ms,
    })
}

pub(crate) fn render(s: &PrepTableSummary) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "prep table: {} clips, {} written to {} shards", s.clips, s.written, s.shards);
    let _ = writeln!(
        o,
        "detection rate (stored frames with a face box): mean {}, {} clips under 100%",
        s.mean_detection_rate.map(|r| format!("{:.1}%", r * 100.0)).unwrap_or_else(|| "n/a".into()),
        s.clips_with_gaps
    );
    if let (Some((lost, clips)), Some(cuts)) = (s.lost_frames, s.clips_with_cuts) {
        let _ = writeln!(
            o,
            "lost frames (the detector ran and found no face, no box): {lost} in {clips} clips; {cuts} clips with a cut"
        );
    }
    if let Some(m) = s.mean_detector_frames {
        let windowed = s.mean_windowed_frames.map_or(String::new(), |w| format!(", {w:.1} of them in a window"));
        let _ = writeln!(o, "detector ran on {m:.1} stored frames per clip (search frames plus checks{windowed})");
    }
    let _ = writeln!(
        o,
        "mean ms per clip: {}",
        s.mean_ms.iter().map(|(k, v)| format!("{k} {v:.1}")).collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(o, "\nclips by status:");
    for (k, (n, examples)) in &s.statuses {
        let _ = writeln!(o, "  {k:<14} {n}");
        for e in examples {
            let _ = writeln!(o, "      {e}");
        }
    }
    o
}
