//! Building a clip manifest: split files → one row per clip, every source probed in parallel
//! with ffmpeg (needs the `media` feature).

use std::path::Path;

use anyhow::Result;
use rayon::prelude::*;

use super::{ClipRow, Manifest};
use crate::clip_status::ClipStatus;
use crate::dataset::splits;
use crate::dataset::{path_inside_root, DatasetDesc, SourceKind};
use crate::error::UsageError;
use crate::logging::Progress;
use crate::video::probe;
use crate::video::ProbeInfo;

fn probe_source(kind: SourceKind, path: &Path) -> Result<ProbeInfo, probe::ProbeError> {
    match kind {
        SourceKind::Video => probe::probe_video(path),
        SourceKind::Frames => probe::probe_frames(path),
    }
}

/// Builds a manifest: reads the split files, then probes every clip's source in parallel.
/// Problems with single clips become rows with a status, never an error.
pub(crate) fn build(desc: &DatasetDesc, root: &Path, source: Option<SourceKind>) -> Result<Manifest> {
    if !root.is_dir() {
        return Err(UsageError::new(format!("{}: dataset root is not a folder", root.display())).into());
    }
    let index = splits::read(desc, root)?;
    if let (Some(kind), Some(src)) = (source, &desc.sources) {
        if src.pattern(kind).is_none() {
            return Err(UsageError::new(format!("dataset {} has no {} sources", desc.name, kind.as_str())).into());
        }
    }
    let progress = Progress::new(index.entries.len() as u64, "probing clips");
    let rows: Vec<ClipRow> = index
        .entries
        .par_iter()
        .map(|e| {
            let (kind, rel) = match (&e.path, &desc.sources) {
                (Some(p), _) => {
                    let kind = if root.join(p).is_dir() { SourceKind::Frames } else { SourceKind::Video };
                    (kind, p.clone())
                }
                (None, Some(src)) => {
                    let kind = source.unwrap_or(src.default);
                    let pat = src.pattern(kind).expect("checked above");
                    (kind, pat.replace("{id}", &e.id))
                }
                (None, None) => unreachable!("validated: split files come with sources"),
            };
            let (probe, mut status, mut error) = match path_inside_root(root, &rel) {
                Err(m) => (None, ClipStatus::OutsideRoot, Some(m)),
                Ok(path) => match probe_source(kind, &path) {
                    Ok(p) => (Some(p), ClipStatus::Ok, None),
                    Err(err) => (None, err.status(), Some(err.message().to_string())),
                },
            };
            if let Some(c) = &e.conflict {
                status = c.status;
                error = Some(c.to_string());
            }
            progress.inc();
            ClipRow {
                clip_id: e.id.clone(),
                label: e.label,
                roles: e.roles.clone(),
                source_kind: kind,
                source_path: rel,
                probe,
                status,
                error,
            }
        })
        .collect();
    progress.finish();
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    Ok(Manifest { desc: desc.clone(), root, folds: index.folds, rows, diagnostics: index.diagnostics })
}
