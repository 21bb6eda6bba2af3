//! One clip through the pipeline: decode the sampled frames, detect faces, track the primary
//! face, crop it, fit and mask the scene. Pure per-clip work, run by many workers at once.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use image::RgbImage;

use super::config::{NoFacePolicy, PrepConfig};
use super::sample;
use crate::dataset::SourceKind;
use crate::face::geometry::{self, centre_box, crop_resize, fit_scene, mask_face, square_box};
use crate::face::track::{fill_and_smooth, primary_track, FaceSource, TrackedFrame};
use crate::face::{Detection, Detector};
use crate::manifest::ClipRow;
use crate::shard::ClipTensors;
use crate::video::decode::{self, Sampled};

/// What happened to one manifest row.
#[derive(Debug, Clone)]
pub struct ClipResult {
    pub manifest_row: usize,
    pub clip_id: String,
    pub label: usize,
    /// `ok`, `no_face` (written or not, by policy), `decode_error`, `detect_error`, or the
    /// manifest's own status for rows that were not usable there.
    pub status: String,
    pub error: Option<String>,
    /// Present when the clip goes into the shard.
    pub tensors: Option<ClipTensors>,
    pub detection_rate: Option<f32>,
    pub mean_score: Option<f32>,
    pub decode_ms: f64,
    pub detect_ms: f64,
    pub crop_ms: f64,
}

impl ClipResult {
    fn failed(row: &ClipRow, index: usize, status: &str, error: String) -> ClipResult {
        ClipResult {
            manifest_row: index,
            clip_id: row.clip_id.clone(),
            label: row.label,
            status: status.into(),
            error: Some(error),
            tensors: None,
            detection_rate: None,
            mean_score: None,
            decode_ms: 0.0,
            detect_ms: 0.0,
            crop_ms: 0.0,
        }
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Stored positions the detector runs on: every `every`-th, plus the last.
pub fn detection_positions(t: usize, every: usize) -> Vec<usize> {
    let mut p: Vec<usize> = (0..t).step_by(every).collect();
    if p.last() != Some(&(t - 1)) {
        p.push(t - 1);
    }
    p
}

/// Long side at which a face `face_h` pixels tall in a frame whose long side is `frame_long`
/// becomes about `target` pixels tall, clamped to `[min, max]`.
pub fn adaptive_long_side(frame_long: u32, face_h: f32, target: u32, min: u32, max: u32) -> u32 {
    if target == 0 || face_h <= 0.0 {
        return max;
    }
    ((frame_long as f32 * target as f32 / face_h).round() as u32).clamp(min, max)
}

/// Runs the detector once per distinct frame among `positions`; `None` where it did not run.
/// The first position is searched at `det_first_long_side` (then at `det_long_side` if nothing
/// is found); the rest, batched, at the long side that makes the face found there about
/// `det_face_px` tall; a frame with no face at that reduced size is searched again at
/// `det_long_side`.
fn detect(
    sampled: &Sampled,
    positions: &[usize],
    cfg: &PrepConfig,
    det: &mut dyn Detector,
) -> anyhow::Result<Vec<Option<Vec<Detection>>>> {
    let mut frames: Vec<usize> = positions.iter().map(|&p| sampled.indices[p]).collect();
    frames.sort_unstable();
    frames.dedup();
    let img = |f: &usize| &sampled.images[f];
    let (w, h) = img(&frames[0]).dimensions();
    let first_frame = sampled.indices[positions[0]];
    let mut found: BTreeMap<usize, Vec<Detection>> = BTreeMap::new();
    let mut first = det.detect(&[img(&first_frame)], cfg.det_first_long_side)?.remove(0);
    if first.is_empty() && cfg.det_first_long_side < cfg.det_long_side {
        first = det.detect(&[img(&first_frame)], cfg.det_long_side)?.remove(0);
    }
    let long = match first.first() {
        Some(d) => adaptive_long_side(
            w.max(h),
            d.bbox[3] - d.bbox[1],
            cfg.det_face_px,
            cfg.det_min_long_side,
            cfg.det_long_side,
        ),
        None => cfg.det_long_side,
    };
    found.insert(first_frame, first);
    let rest: Vec<usize> = frames.iter().copied().filter(|f| *f != first_frame).collect();
    if !rest.is_empty() {
        let dets = det.detect(&rest.iter().map(img).collect::<Vec<_>>(), long)?;
        let mut retry = Vec::new();
        for (f, d) in rest.into_iter().zip(dets) {
            if d.is_empty() && long < cfg.det_long_side {
                retry.push(f);
            }
            found.insert(f, d);
        }
        if !retry.is_empty() {
            let dets = det.detect(&retry.iter().map(img).collect::<Vec<_>>(), cfg.det_long_side)?;
            found.extend(retry.into_iter().zip(dets));
        }
    }
    let mut out = vec![None; sampled.indices.len()];
    for &p in positions {
        out[p] = Some(found[&sampled.indices[p]].clone());
    }
    Ok(out)
}

/// Processes manifest row `index` (`row`) of a dataset rooted at `root`.
pub fn process(row: &ClipRow, index: usize, root: &Path, cfg: &PrepConfig, det: &mut dyn Detector) -> ClipResult {
    if row.status != "ok" {
        let msg = row.error.clone().unwrap_or_else(|| format!("manifest status {}", row.status));
        return ClipResult::failed(row, index, &row.status, msg);
    }
    let t = cfg.store_frames;
    let started = Instant::now();
    let path = match crate::dataset::path_inside_root(root, &row.source_path) {
        Ok(p) => p,
        Err(m) => return ClipResult::failed(row, index, "outside_root", m),
    };
    let sampled = match row.source_kind {
        SourceKind::Video => {
            let rotation = row.probe.as_ref().map(|p| p.rotation).unwrap_or(0);
            decode::sample_video(&path, rotation, |times| sample::by_time(times, t))
        }
        SourceKind::Frames => decode::sample_folder(&path, |n| sample::by_index(n, t)),
    };
    let sampled = match sampled {
        Ok(s) => s,
        Err(e) => return ClipResult::failed(row, index, "decode_error", format!("{e:#}")),
    };
    let decode_ms = ms(started);

    let started = Instant::now();
    let positions = detection_positions(t, cfg.det_every);
    let dets = match detect(&sampled, &positions, cfg, det) {
        Ok(d) => d,
        Err(e) => {
            let mut r = ClipResult::failed(row, index, "detect_error", format!("{}: {e:#}", path.display()));
            r.decode_ms = decode_ms;
            return r;
        }
    };
    let chosen = primary_track(&dets);
    let detected: Vec<&Detection> = chosen.iter().flatten().collect();
    let rate = detected.len() as f32 / positions.len() as f32;
    let mean_score =
        (!detected.is_empty()).then(|| detected.iter().map(|d| d.score).sum::<f32>() / detected.len() as f32);
    let mut tracked = fill_and_smooth(&chosen, cfg.smooth_window);
    let detect_ms = ms(started);

    let mut status = "ok".to_string();
    let mut error = None;
    if rate < cfg.min_detection_rate {
        status = "no_face".into();
        error = Some(format!(
            "{}: face detected in {}/{} frames, under min_detection_rate {} (policy {:?})",
            path.display(),
            detected.len(),
            positions.len(),
            cfg.min_detection_rate,
            cfg.no_face_policy
        ));
        match cfg.no_face_policy {
            NoFacePolicy::Skip => {
                return ClipResult {
                    status,
                    error,
                    detection_rate: Some(rate),
                    mean_score,
                    decode_ms,
                    detect_ms,
                    ..ClipResult::failed(row, index, "", String::new())
                };
            }
            NoFacePolicy::Centre => {
                tracked.fill(TrackedFrame {
                    bbox: None,
                    score: 0.0,
                    landmarks: [[0.0; 2]; 5],
                    source: FaceSource::Fallback,
                });
            }
            NoFacePolicy::Keep => {}
        }
    }
    let started = Instant::now();
    let tensors = render(&sampled, &tracked, cfg);
    ClipResult {
        manifest_row: index,
        clip_id: row.clip_id.clone(),
        label: row.label,
        status,
        error,
        tensors: Some(tensors),
        detection_rate: Some(rate),
        mean_score,
        decode_ms,
        detect_ms,
        crop_ms: ms(started),
    }
}

/// Face crops and masked scenes for every stored frame.
fn render(sampled: &Sampled, tracked: &[TrackedFrame], cfg: &PrepConfig) -> ClipTensors {
    let t = tracked.len();
    let (s, s2) = (cfg.face_size, cfg.scene_size);
    let mut out = ClipTensors {
        face: Vec::with_capacity(t * (s * s * 3) as usize),
        scene: Vec::with_capacity(t * (s2 * s2 * 3) as usize),
        frame_index: Vec::with_capacity(t),
        face_box: Vec::with_capacity(t),
        face_score: Vec::with_capacity(t),
        face_source: Vec::with_capacity(t),
        landmarks: Vec::with_capacity(t),
        frame_size: [0, 0],
    };
    // The scene fit of a frame does not depend on the box: compute it once per distinct frame.
    let mut fitted: std::collections::BTreeMap<usize, (RgbImage, geometry::SceneTransform)> = Default::default();
    for (p, tf) in tracked.iter().enumerate() {
        let idx = sampled.indices[p];
        let frame = &sampled.images[&idx];
        let (w, h) = frame.dimensions();
        out.frame_size = [w, h];
        let region = match tf.bbox {
            Some(b) => square_box(&b, cfg.margin),
            None => centre_box(w, h),
        };
        out.face.extend_from_slice(crop_resize(frame, &region, s).as_raw());
        let (base, tr) = fitted.entry(idx).or_insert_with(|| fit_scene(frame, s2, cfg.scene_fit));
        let mut scene = base.clone();
        if let Some(b) = tf.bbox {
            mask_face(&mut scene, &tr.apply(&b), cfg.mask_scale, cfg.mask_mode);
        }
        out.scene.extend_from_slice(scene.as_raw());
        out.frame_index.push(idx as i32);
        out.face_box.push(tf.bbox.unwrap_or([f32::NAN; 4]));
        out.face_score.push(tf.score);
        out.face_source.push(tf.source as u8);
        out.landmarks.push(tf.landmarks);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_positions_include_first_and_last() {
        assert_eq!(detection_positions(16, 1), (0..16).collect::<Vec<_>>());
        assert_eq!(detection_positions(16, 4), vec![0, 4, 8, 12, 15]);
        assert_eq!(detection_positions(16, 5), vec![0, 5, 10, 15]);
        assert_eq!(detection_positions(1, 3), vec![0]);
    }

    #[test]
    fn adaptive_long_side_targets_the_face_height() {
        // A 150 px face in a 1280 px frame is 48 px tall at a 410 px long side (rounded).
        assert_eq!(adaptive_long_side(1280, 150.0, 48, 160, 640), 410);
        assert_eq!(adaptive_long_side(1280, 400.0, 48, 160, 640), 160, "clamped below");
        assert_eq!(adaptive_long_side(640, 20.0, 48, 160, 640), 640, "clamped above");
        assert_eq!(adaptive_long_side(1280, 150.0, 0, 160, 640), 640, "0 disables");
    }
}
