//! `--export-frames DIR`: JPEG folders of the face crops and masked scenes, plus annotation
//! lists in the format the popular PyTorch DFER repositories read
//! (`<frame_dir> <num_frames> <label>`, one file per fold and role; `num_frames` is what the
//! folder holds, every frame of the clip when it is no longer than `store_frames`). DFER-CLIP's and Former-DFER's
//! loaders return the third column as the class index and ship 0-based DFEW lists, so labels are
//! 0-based by default; forks whose loaders return `label - 1` take `label_base = 1`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use image::RgbImage;

use super::config::PrepConfig;
use crate::atomic::write_atomic;
use crate::dataset::splits::Role;
use crate::manifest::prep_table::PrepTable;
use crate::manifest::{role_columns, Manifest};
use crate::shard::{ClipTensors, StoredPixels, Stream};

/// Writes `DIR/face/<clip_id>/NNNNN.jpg` and `DIR/scene/<clip_id>/NNNNN.jpg` (1-based, zero
/// padded so lexicographic order is frame order). Frames a JPEG shard stores are written as they
/// are, byte for byte; raw frames are encoded here.
pub(crate) fn write_clip(
    dir: &Path,
    clip_id: &str,
    t: &ClipTensors,
    stored: &StoredPixels,
    cfg: &PrepConfig,
) -> Result<()> {
    let (face_jpeg, scene_jpeg) = match stored {
        StoredPixels::Jpeg { face, scene } => (Some(face), Some(scene)),
        StoredPixels::Raw => (None, None),
    };
    let streams =
        [(Stream::Face, &t.face, face_jpeg, cfg.face_size), (Stream::Scene, &t.scene, scene_jpeg, cfg.scene_size)];
    for (kind, data, jpeg, size) in streams.into_iter().filter(|s| s.3 > 0) {
        let out = dir.join(kind.as_str()).join(clip_id);
        std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create", out.display()))?;
        let name = |i: usize| out.join(format!("{:05}.jpg", i + 1));
        match jpeg {
            Some(frames) => {
                for (i, f) in frames.iter().enumerate() {
                    let p = name(i);
                    std::fs::write(&p, f).with_context(|| format!("{}: cannot write", p.display()))?;
                }
            }
            None => {
                for (i, chunk) in data.chunks_exact((size * size * 3) as usize).enumerate() {
                    let (p, img) = (name(i), RgbImage::from_raw(size, size, chunk.to_vec()).expect("frame size"));
                    img.save(&p).with_context(|| format!("{}: cannot write", p.display()))?;
                }
            }
        }
    }
    Ok(())
}

/// Writes one list per fold and role (`DFEW_set_1_train.txt`, or `FERV39K_train.txt` for
/// single-split datasets) for faces, and the same with `_scene` for scenes, listing the clips
/// that prep wrote, labels counted from `label_base`.
pub(crate) fn write_annotations(
    dir: &Path,
    manifest: &Manifest,
    prep_parquet: &Path,
    cfg: &PrepConfig,
    label_base: u8,
) -> Result<()> {
    let df = PrepTable::read(prep_parquet)?;
    // Manifest row → frames its shard row stores, for the clips prep wrote.
    let written: std::collections::HashMap<usize, i64> = df
        .column(PrepTable::MANIFEST_ROW)?
        .i64()?
        .iter()
        .zip(df.column(PrepTable::ROW)?.i64()?.iter())
        .zip(df.column(PrepTable::STORED_FRAMES)?.i64()?.iter())
        .filter_map(|((m, r), n)| Some((r.and(m)? as usize, n?)))
        .collect();
    let dataset = manifest.desc.name.to_uppercase();
    let dir_abs = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    for slot in 0..role_columns(manifest.folds).len() {
        for &role in Role::ALL {
            let kinds: &[Stream] = if cfg.scene_size > 0 { Stream::ALL } else { &[Stream::Face] };
            for &kind in kinds {
                let mut text = String::new();
                for (i, row) in manifest.rows.iter().enumerate() {
                    match written.get(&i) {
                        Some(n) if row.roles.get(slot).copied().flatten() == Some(role) => {
                            let d = dir_abs.join(kind.as_str()).join(&row.clip_id);
                            let _ = writeln!(text, "{} {n} {}", d.display(), row.label + label_base as usize);
                        }
                        _ => {}
                    }
                }
                if text.is_empty() {
                    continue;
                }
                let fold = if manifest.folds > 0 { format!("_set_{}", slot + 1) } else { String::new() };
                let suffix = if kind == Stream::Scene { "_scene" } else { "" };
                let p = dir.join(format!("{dataset}{fold}_{role}{suffix}.txt"));
                write_atomic(&p, text.as_bytes())?;
            }
        }
    }
    Ok(())
}
