//! `dfer inspect shard.h5`: shapes, attributes and a per-clip detection summary, and a contact
//! sheet (`--grid out.png`) of each clip's test-view frames, face crops and scene frames with
//! the face boxes drawn, so a person can see what prep did and what a model is shown.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use image::{imageops, Rgb, RgbImage};
use imageproc::drawing::draw_hollow_rect_mut;
use imageproc::rect::Rect;
use serde::Serialize;

use super::ShardReader;
use crate::face_source::FaceSource;
use crate::geometry::fit_scene;
use crate::sampling;

/// Per-clip detection summary.
#[derive(Debug, Serialize)]
pub(crate) struct ClipSummary {
    pub row: usize,
    pub clip_id: String,
    pub label: String,
    /// Frames of the whole clip, and frames stored.
    pub clip_frames: usize,
    pub stored: usize,
    /// Frames by source: detected / interpolated / fallback / none / lost.
    pub sources: [usize; 5],
    /// Shots among the stored frames (`None` where no shot detection ran: dataset crops
    /// without a scene stream).
    pub shots: Option<usize>,
    pub mean_score: Option<f32>,
}

/// What `dfer inspect` says about a shard.
#[derive(Debug, Serialize)]
pub(crate) struct ShardSummary {
    pub path: String,
    pub clips: usize,
    pub shapes: BTreeMap<String, Vec<usize>>,
    pub attributes: BTreeMap<String, String>,
    pub labels: BTreeMap<String, usize>,
    pub clip_rows: Vec<ClipSummary>,
}

pub(crate) fn summarise(r: &ShardReader) -> Result<ShardSummary> {
    let a = &r.attrs;
    let n = r.len;
    let shapes = r.shapes()?;
    let attributes: BTreeMap<String, String> = [
        ("dataset", a.dataset.clone()),
        ("label_names", a.label_names.join(", ")),
        ("frames", a.frames.to_string()),
        ("store_frames", a.store_frames.to_string()),
        ("sampling", a.sampling.clone()),
        ("face_crops", a.face_crops.to_string()),
        ("face_size", a.face_size.to_string()),
        ("scene_size", if a.has_scene() { a.scene_size.to_string() } else { "0 (no scene stream)".into() }),
        ("detector", format!("{} ({})", a.detector, &a.detector_hash[..a.detector_hash.len().min(12)])),
        ("mask", format!("{} x{}", a.mask_mode, a.mask_scale)),
        ("margin", a.margin.to_string()),
        ("scene_fit", a.scene_fit.to_string()),
        ("config_hash", a.config_hash.clone()),
        ("tool_version", a.tool_version.clone()),
        ("manifest_rows", format!("{}..{}", a.manifest_rows[0], a.manifest_rows[1])),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let labels = r.labels()?;
    let ids = r.clip_ids()?;
    let mut by_label = BTreeMap::new();
    let mut clip_rows = Vec::with_capacity(n);
    for i in 0..n {
        let c = r.clip(i)?;
        let name = a.label_names.get(labels[i] as usize).cloned().unwrap_or_else(|| labels[i].to_string());
        *by_label.entry(name.clone()).or_insert(0) += 1;
        let mut sources = [0usize; 5];
        for &code in &c.face_source {
            sources[match FaceSource::from_code(code) {
                FaceSource::Detected => 0,
                FaceSource::Interpolated => 1,
                FaceSource::Fallback => 2,
                FaceSource::None => 3,
                FaceSource::Lost => 4,
            }] += 1;
        }
        let shots = c.shot.iter().max().filter(|&&m| m >= 0).map(|&m| m as usize + 1);
        let scores: Vec<f32> = c
            .face_source
            .iter()
            .zip(&c.face_score)
            .filter(|(s, _)| **s == FaceSource::Detected as u8)
            .map(|(_, v)| *v)
            .collect();
        let mean_score = (!scores.is_empty()).then(|| scores.iter().sum::<f32>() / scores.len() as f32);
        let (clip_frames, stored) = (c.clip_frames, c.frame_index.len());
        let label = name;
        clip_rows.push(ClipSummary {
            row: i,
            clip_id: ids[i].clone(),
            label,
            clip_frames,
            stored,
            sources,
            shots,
            mean_score,
        });
    }
    Ok(ShardSummary { path: r.path.display().to_string(), clips: n, shapes, attributes, labels: by_label, clip_rows })
}

pub(crate) fn render(s: &ShardSummary) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "shard {}  clips {}", s.path, s.clips);
    let _ = writeln!(o, "\ndatasets:");
    for (k, v) in &s.shapes {
        let _ = writeln!(o, "  {k:<12} {v:?}");
    }
    let _ = writeln!(o, "\nattributes:");
    for (k, v) in &s.attributes {
        let _ = writeln!(o, "  {k:<14} {v}");
    }
    let _ = writeln!(
        o,
        "\nclips per label: {}",
        s.labels.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(
        o,
        "\n{:>4} {:<24} {:<12} {:>6} {:>6} {:>8} {:>6} {:>8} {:>5} {:>5} {:>5} {:>6}",
        "row", "clip", "label", "frames", "stored", "detected", "interp", "fallback", "none", "lost", "shots", "score"
    );
    for c in &s.clip_rows {
        let score = c.mean_score.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
        let shots = c.shots.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        let [d, i, f, n, l] = c.sources;
        let _ = writeln!(
            o,
            "{:>4} {:<24} {:<12} {:>6} {:>6} {d:>8} {i:>6} {f:>8} {n:>5} {l:>5} {shots:>5} {score:>6}",
            c.row, c.clip_id, c.label, c.clip_frames, c.stored
        );
    }
    let _ = writeln!(
        o,
        "\nface_source: detected = the detector found the face; interp = between two detections of the \
         track in one shot; fallback = centre crop (no_face_policy centre); none = no detector ran (dataset \
         crops without a scene stream); lost = the detector ran and found no face (also a face-free shot): \
         no box, centre crop. frames = the clip's, stored = what the shard keeps (all, up to store_frames)"
    );
    o
}

/// Colour of a frame's face source: detected green, interpolated yellow, fallback red, lost
/// blue, none grey.
fn source_colour(code: u8) -> Rgb<u8> {
    match FaceSource::from_code(code) {
        FaceSource::Detected => Rgb([0, 220, 0]),
        FaceSource::Interpolated => Rgb([240, 220, 0]),
        FaceSource::Fallback => Rgb([230, 0, 0]),
        FaceSource::Lost => Rgb([0, 90, 255]),
        FaceSource::None => Rgb([128, 128, 128]),
    }
}

/// Draws a contact sheet of up to `max_clips` clips: per clip one row of its test-view face
/// frames (border coloured by face source) and, with a scene stream, one row of its scene frames
/// with the face box drawn.
pub(crate) fn grid(r: &ShardReader, out: &Path, max_clips: usize, thumb: u32) -> Result<()> {
    let a = &r.attrs;
    let (t, s, s2) = (a.frames as u32, a.face_size, a.scene_size);
    let rows_per_clip = if a.has_scene() { 2 } else { 1 };
    let n = r.len.min(max_clips);
    let mut sheet = RgbImage::from_pixel(t * thumb, (rows_per_clip * n as u32).max(1) * thumb, Rgb([255, 255, 255]));
    for i in 0..n {
        let c = r.clip(i)?;
        let frames = sampling::test_indices(c.clip_frames, t as usize);
        // The scene transform depends only on the source frame size.
        let [w, h] = c.frame_size;
        let (_, tr) = fit_scene(&RgbImage::new(w.max(1), h.max(1)), s2.max(1), a.scene_fit);
        let top = rows_per_clip * i as u32 * thumb;
        for (k, frame) in frames.iter().enumerate() {
            let f = c.frame_index.binary_search(&(*frame as i32)).map_err(|_| {
                anyhow::anyhow!("{}: clip row {i} does not store its test frame {frame}", r.path.display())
            })?;
            let face_len = (s * s * 3) as usize;
            let face =
                RgbImage::from_raw(s, s, c.face[f * face_len..(f + 1) * face_len].to_vec()).context("face frame")?;
            let mut ft = imageops::resize(&face, thumb, thumb, imageops::FilterType::Triangle);
            let col = source_colour(c.face_source[f]);
            for b in 0..3 {
                draw_hollow_rect_mut(&mut ft, Rect::at(b, b).of_size(thumb - 2 * b as u32, thumb - 2 * b as u32), col);
            }
            imageops::replace(&mut sheet, &ft, (k as u32 * thumb) as i64, top as i64);
            if !a.has_scene() {
                continue;
            }
            let scene_len = (s2 * s2 * 3) as usize;
            let scene = RgbImage::from_raw(s2, s2, c.scene[f * scene_len..(f + 1) * scene_len].to_vec())
                .context("scene frame")?;
            let mut st = imageops::resize(&scene, thumb, thumb, imageops::FilterType::Triangle);
            let b = c.face_box[f];
            if b.iter().all(|v| v.is_finite()) {
                let sb = tr.apply(&b);
                let k = thumb as f32 / s2 as f32;
                let (x0, y0) = ((sb[0] * k) as i32, (sb[1] * k) as i32);
                let (bw, bh) = ((((sb[2] - sb[0]) * k) as u32).max(1), (((sb[3] - sb[1]) * k) as u32).max(1));
                draw_hollow_rect_mut(&mut st, Rect::at(x0, y0).of_size(bw, bh), col);
            }
            imageops::replace(&mut sheet, &st, (k as u32 * thumb) as i64, (top + thumb) as i64);
        }
    }
    sheet.save(out).with_context(|| format!("{}: cannot write", out.display()))?;
    Ok(())
}
