//! `dfer inspect clips.parquet`: a readable (or JSON) summary of a clip manifest — clips per
//! class and fold role, frame-count / fps / resolution distributions, problems by kind.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Result;
use polars::prelude::*;
use serde::Serialize;

use super::{role_columns, Manifest};
use crate::clip_status::ClipStatus;
use crate::dataset::splits::Severity;

/// Distribution of a numeric column over usable clips.
#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct Dist {
    pub min: f64,
    pub p5: f64,
    pub median: f64,
    pub p95: f64,
    pub max: f64,
    pub mean: f64,
}

/// Counts for one class.
#[derive(Debug, Serialize)]
pub(crate) struct ClassCounts {
    pub label: usize,
    pub name: String,
    pub polarity: String,
    pub clips: usize,
    pub ok: usize,
    /// Role column -> role -> count (e.g. `fold_1_role` -> `test` -> 12).
    pub roles: BTreeMap<String, BTreeMap<String, usize>>,
}

/// Rows that cannot be used, grouped by status.
#[derive(Debug, Serialize)]
pub(crate) struct Problem {
    pub count: usize,
    /// Up to five `clip_id: error` lines.
    pub examples: Vec<String>,
}

/// Everything `dfer inspect` says about a manifest.
#[derive(Debug, Serialize)]
pub(crate) struct ManifestSummary {
    pub dataset: String,
    pub root: String,
    pub clips: usize,
    pub ok: usize,
    pub folds: u32,
    pub classes: Vec<ClassCounts>,
    pub source_kinds: BTreeMap<String, usize>,
    pub n_frames: Option<Dist>,
    pub fps: Option<Dist>,
    pub duration_s: Option<Dist>,
    /// `WxH` -> clips, most common first.
    pub resolutions: Vec<(String, usize)>,
    pub rotations: BTreeMap<String, usize>,
    pub problems: BTreeMap<ClipStatus, Problem>,
    /// Split-file diagnostics by severity, and the first twenty of them.
    pub diagnostic_counts: BTreeMap<String, usize>,
    pub diagnostics: Vec<String>,
}

fn dist(s: &Series) -> PolarsResult<Option<Dist>> {
    let s = s.cast(&DataType::Float64)?.drop_nulls();
    if s.is_empty() {
        return Ok(None);
    }
    let ca = s.f64()?;
    let q = |p: f64| -> PolarsResult<f64> { Ok(ca.quantile(p, QuantileMethod::Nearest)?.unwrap_or(f64::NAN)) };
    Ok(Some(Dist {
        min: ca.min().unwrap_or(f64::NAN),
        p5: q(0.05)?,
        median: q(0.5)?,
        p95: q(0.95)?,
        max: ca.max().unwrap_or(f64::NAN),
        mean: ca.mean().unwrap_or(f64::NAN),
    }))
}

/// Counts of `(key columns) -> n` via a polars group-by, largest first (ties in first-seen order).
fn counts(df: &DataFrame, keys: &[&str]) -> PolarsResult<DataFrame> {
    let groups = df.group_by_stable(keys.iter().copied())?;
    let mut n = groups.get_groups().group_count();
    n.rename("n".into());
    let mut columns = groups.keys();
    columns.push(n.into_column());
    DataFrame::new_infer_height(columns)?
        .sort(["n"], SortMultipleOptions::default().with_order_descending(true).with_maintain_order(true))
}

fn str_count_pairs(df: &DataFrame, key: &str) -> PolarsResult<Vec<(Option<String>, usize)>> {
    let k = df.column(key)?.cast(&DataType::String)?;
    let n = df.column("n")?.cast(&DataType::UInt64)?;
    Ok(k.str()?.iter().zip(n.u64()?.iter()).map(|(k, n)| (k.map(str::to_string), n.unwrap_or(0) as usize)).collect())
}

/// Summarises a manifest with polars.
pub(crate) fn summarise(m: &Manifest) -> Result<ManifestSummary> {
    let df = m.to_frame()?;
    let ok_df = df.filter(&df.column("status")?.str()?.equal(ClipStatus::Ok.as_str()))?;
    Ok(ManifestSummary {
        dataset: m.desc.name.clone(),
        root: m.root.to_string_lossy().into_owned(),
        clips: df.height(),
        ok: ok_df.height(),
        folds: m.folds,
        classes: class_counts(m, &df, &ok_df)?,
        source_kinds: value_counts(&df, "source_kind")?,
        n_frames: dist(ok_df.column("n_frames")?.as_materialized_series())?,
        fps: dist(ok_df.column("fps")?.as_materialized_series())?,
        duration_s: dist(ok_df.column("duration_s")?.as_materialized_series())?,
        resolutions: resolutions(&ok_df)?,
        rotations: value_counts(&ok_df, "rotation")?,
        problems: problems(m),
        diagnostic_counts: diagnostic_counts(m),
        diagnostics: m.diagnostics.iter().take(20).map(|d| d.to_string()).collect(),
    })
}

/// Clips per class: all, usable (`ok_df`), and by role in each fold.
fn class_counts(m: &Manifest, df: &DataFrame, ok_df: &DataFrame) -> Result<Vec<ClassCounts>> {
    let mut classes: Vec<ClassCounts> = m
        .desc
        .labels
        .iter()
        .enumerate()
        .map(|(i, name)| ClassCounts {
            label: i,
            name: name.clone(),
            polarity: m.desc.polarity_of(i).as_str().to_string(),
            clips: 0,
            ok: 0,
            roles: BTreeMap::new(),
        })
        .collect();
    for (frame, ok) in [(df, false), (ok_df, true)] {
        let c = counts(frame, &["label"])?;
        let labels = c.column("label")?.i64()?.clone();
        let n = c.column("n")?.cast(&DataType::UInt64)?;
        for (l, n) in labels.iter().zip(n.u64()?.iter()) {
            let (l, n) = (l.unwrap_or(0) as usize, n.unwrap_or(0) as usize);
            if ok {
                classes[l].ok = n;
            } else {
                classes[l].clips = n;
            }
        }
    }
    for role_col in role_columns(m.folds) {
        let c = counts(df, &["label", &role_col])?;
        let labels = c.column("label")?.i64()?.clone();
        let roles = str_count_pairs(&c, &role_col)?;
        for (l, (role, n)) in labels.iter().zip(roles) {
            let role = role.unwrap_or_else(|| "none".into());
            classes[l.unwrap_or(0) as usize].roles.entry(role_col.clone()).or_default().insert(role, n);
        }
    }
    Ok(classes)
}

/// Clips per `WxH` display size.
fn resolutions(ok_df: &DataFrame) -> Result<Vec<(String, usize)>> {
    let c = counts(ok_df, &["width", "height"])?;
    let w = c.column("width")?.u32()?.clone();
    let h = c.column("height")?.u32()?.clone();
    let n = c.column("n")?.cast(&DataType::UInt64)?;
    Ok(w.iter()
        .zip(h.iter())
        .zip(n.u64()?.iter())
        .map(|((w, h), n)| (format!("{}x{}", w.unwrap_or(0), h.unwrap_or(0)), n.unwrap_or(0) as usize))
        .collect())
}

/// Clips per value of `key` (`none` for a missing value).
fn value_counts(frame: &DataFrame, key: &str) -> Result<BTreeMap<String, usize>> {
    Ok(str_count_pairs(&counts(frame, &[key])?, key)?
        .into_iter()
        .map(|(k, n)| (k.unwrap_or_else(|| "none".into()), n))
        .collect())
}

/// Unusable clips by status, with up to five examples each.
fn problems(m: &Manifest) -> BTreeMap<ClipStatus, Problem> {
    let mut problems = BTreeMap::new();
    for row in m.rows.iter().filter(|r| !r.status.is_ok()) {
        let p = problems.entry(row.status).or_insert(Problem { count: 0, examples: vec![] });
        p.count += 1;
        if p.examples.len() < 5 {
            p.examples.push(format!("{}: {}", row.clip_id, row.error.as_deref().unwrap_or("")));
        }
    }
    problems
}

/// Split-file diagnostics by severity.
fn diagnostic_counts(m: &Manifest) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for d in &m.diagnostics {
        let k = match d.severity {
            Severity::Note => "notes",
            Severity::Warning => "warnings",
            Severity::Error => "errors",
        };
        *counts.entry(k.to_string()).or_insert(0) += 1;
    }
    counts
}

fn fmt_dist(d: &Option<Dist>) -> String {
    match d {
        Some(d) => format!(
            "min {:.1}  p5 {:.1}  median {:.1}  p95 {:.1}  max {:.1}  mean {:.1}",
            d.min, d.p5, d.median, d.p95, d.max, d.mean
        ),
        None => "n/a".into(),
    }
}

/// Human-readable rendering of a summary.
pub(crate) fn render(s: &ManifestSummary) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "dataset {}  root {}", s.dataset, s.root);
    let _ = writeln!(o, "clips {}  usable {}  problems {}", s.clips, s.ok, s.clips - s.ok);
    let role_cols: Vec<String> = s.classes.first().map(|c| c.roles.keys().cloned().collect()).unwrap_or_default();
    let _ = write!(o, "\n{:<16} {:<9} {:>6} {:>6}", "class", "polarity", "clips", "usable");
    for c in &role_cols {
        let short = c.trim_end_matches("_role");
        let _ = write!(o, " {:>16}", format!("{short} tr/va/te"));
    }
    let _ = writeln!(o);
    for c in &s.classes {
        let _ = write!(o, "{:<16} {:<9} {:>6} {:>6}", format!("{} {}", c.label, c.name), c.polarity, c.clips, c.ok);
        for rc in &role_cols {
            let r = c.roles.get(rc);
            let g = |k: &str| r.and_then(|m| m.get(k)).copied().unwrap_or(0);
            let _ = write!(o, " {:>16}", format!("{}/{}/{}", g("train"), g("val"), g("test")));
        }
        let _ = writeln!(o);
    }
    let _ = writeln!(
        o,
        "\nsources     {}",
        s.source_kinds.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(o, "frames      {}", fmt_dist(&s.n_frames));
    let _ = writeln!(o, "fps         {}", fmt_dist(&s.fps));
    let _ = writeln!(o, "duration s  {}", fmt_dist(&s.duration_s));
    let res: Vec<String> = s.resolutions.iter().take(8).map(|(r, n)| format!("{r} ({n})")).collect();
    let _ = writeln!(o, "resolution  {}{}", res.join(", "), if s.resolutions.len() > 8 { ", ..." } else { "" });
    let _ = writeln!(
        o,
        "rotation    {}",
        s.rotations.iter().map(|(k, n)| format!("{k}° ({n})")).collect::<Vec<_>>().join(", ")
    );
    if s.problems.is_empty() {
        let _ = writeln!(o, "\nproblems    none");
    } else {
        let _ = writeln!(o, "\nproblems by kind:");
        for (k, p) in &s.problems {
            let _ = writeln!(o, "  {k:<15} {}", p.count);
            for e in &p.examples {
                let _ = writeln!(o, "      {e}");
            }
        }
    }
    if !s.diagnostics.is_empty() {
        let counts: Vec<String> = s.diagnostic_counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let _ = writeln!(o, "\nsplit-file diagnostics ({}):", counts.join(", "));
        for d in &s.diagnostics {
            let _ = writeln!(o, "  {d}");
        }
    }
    o
}
