//! `dfer inspect prep.parquet`: clips by status with example errors, detection rates and
//! where the time went (decode / detect / crop / write milliseconds per clip).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Result;
use polars::prelude::*;
use serde::Serialize;

/// What `dfer inspect` says about a prep table.
#[derive(Debug, Serialize)]
pub struct PrepTableSummary {
    pub clips: usize,
    pub written: usize,
    pub shards: usize,
    /// Status → (count, up to five `clip_id: error` examples).
    pub statuses: BTreeMap<String, (usize, Vec<String>)>,
    pub mean_detection_rate: Option<f64>,
    /// Clips whose detection rate is under 1 (some frames interpolated).
    pub clips_with_gaps: usize,
    /// Mean milliseconds per clip of each stage, over clips that were processed.
    pub mean_ms: BTreeMap<String, f64>,
}

pub fn summarise(df: &DataFrame) -> Result<PrepTableSummary> {
    let status = df.column("status")?.str()?.clone();
    let ids = df.column("clip_id")?.str()?.clone();
    let errors = df.column("error")?.str()?.clone();
    let mut statuses: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::new();
    for ((s, id), e) in status.iter().zip(ids.iter()).zip(errors.iter()) {
        let entry = statuses.entry(s.unwrap_or("?").to_string()).or_default();
        entry.0 += 1;
        if let (Some(e), true) = (e, entry.1.len() < 5) {
            entry.1.push(format!("{}: {e}", id.unwrap_or("?")));
        }
    }
    let processed = df.filter(&df.column("detection_rate")?.is_not_null())?;
    let rates = processed.column("detection_rate")?.cast(&DataType::Float64)?;
    let rates = rates.f64()?;
    let mut mean_ms = BTreeMap::new();
    for stage in ["decode_ms", "detect_ms", "crop_ms", "write_ms"] {
        if let Some(m) = processed.column(stage)?.cast(&DataType::Float64)?.f64()?.mean() {
            mean_ms.insert(stage.trim_end_matches("_ms").to_string(), m);
        }
    }
    let shards = df.column("shard")?.cast(&DataType::Int64)?.i64()?.n_unique()?;
    Ok(PrepTableSummary {
        clips: df.height(),
        written: df.column("row")?.is_not_null().sum().unwrap_or(0) as usize,
        shards,
        statuses,
        mean_detection_rate: rates.mean(),
        clips_with_gaps: rates.iter().flatten().filter(|r| *r < 1.0).count(),
        mean_ms,
    })
}

pub fn render(s: &PrepTableSummary) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "prep table: {} clips, {} written to {} shards", s.clips, s.written, s.shards);
    let _ = writeln!(
        o,
        "detection rate: mean {}, {} clips with interpolated frames",
        s.mean_detection_rate.map(|r| format!("{:.1}%", r * 100.0)).unwrap_or_else(|| "n/a".into()),
        s.clips_with_gaps
    );
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
