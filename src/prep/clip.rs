//! One clip through the pipeline: decode the sampled frames, find its shots, detect faces on
//! keyframes and wherever they disagree, track the primary face, crop it, fit and mask the
//! scene. Pure per-clip work, run by many workers at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use image::RgbImage;

use super::config::{NoFacePolicy, PrepConfig};
use super::sample;
use super::shots;
use crate::clip_status::ClipStatus;
use crate::dataset::SourceKind;
use crate::face::geometry::{self, centre_box, crop_resize, fit_scene, mask_face, square_box};
use crate::face::refine::{self, Evidence, RefineRule};
use crate::face::track::{fill_and_smooth, primary_track, FaceSource, TrackedFrame};
use crate::face::{Detection, Detector};
use crate::manifest::ClipRow;
use crate::shard::ClipTensors;
use crate::video::decode::{self, Sampled};

/// What happened to one manifest row.
#[derive(Debug, Clone)]
pub(crate) struct ClipResult {
    pub manifest_row: usize,
    pub clip_id: String,
    pub label: usize,
    /// `Ok`, `NoFace` (written or not, by policy), `DecodeError`, `DetectError`, or the
    /// manifest's own status for rows that were not usable there.
    pub status: ClipStatus,
    pub error: Option<String>,
    /// Present when the clip goes into the shard.
    pub tensors: Option<ClipTensors>,
    /// Share of stored frames with a face box (detected or interpolated).
    pub detection_rate: Option<f32>,
    pub mean_score: Option<f32>,
    /// Present when detection ran.
    pub frames: Option<FrameCounts>,
    pub decode_ms: f64,
    pub detect_ms: f64,
    pub crop_ms: f64,
}

impl ClipResult {
    fn failed(row: &ClipRow, index: usize, status: ClipStatus, error: String) -> ClipResult {
        ClipResult {
            manifest_row: index,
            clip_id: row.clip_id.clone(),
            label: row.label,
            status,
            error: Some(error),
            tensors: None,
            detection_rate: None,
            mean_score: None,
            frames: None,
            decode_ms: 0.0,
            detect_ms: 0.0,
            crop_ms: 0.0,
        }
    }
}

/// Per-clip frame counts recorded in the prep table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameCounts {
    /// Stored frames the detector ran on (keyframes plus those the checks added).
    pub detector_frames: usize,
    /// Stored frames marked `lost`.
    pub lost: usize,
    /// Shots found among the stored frames.
    pub shots: usize,
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Long side at which a face `face_h` pixels tall in a frame whose long side is `frame_long`
/// becomes about `target` pixels tall, clamped to `[min, max]`.
pub(crate) fn adaptive_long_side(frame_long: u32, face_h: f32, target: u32, min: u32, max: u32) -> u32 {
    if target == 0 || face_h <= 0.0 {
        return max;
    }
    ((frame_long as f32 * target as f32 / face_h).round() as u32).clamp(min, max)
}

/// Runs the detector on stored frames of one clip, once per distinct source frame. The first
/// frame it is asked about is searched at `det_first_long_side` (then at `det_long_side` if
/// nothing is found); later frames, batched, at the long side that makes the first face found
/// about `det_face_px` tall, and a frame with no face at that reduced size again at
/// `det_long_side`.
struct ClipDetector<'a> {
    sampled: &'a Sampled,
    cfg: &'a PrepConfig,
    /// Long side for later frames, fixed by the first face found.
    long: Option<u32>,
    searched_first: bool,
    found: BTreeMap<usize, Vec<Detection>>,
}

impl<'a> ClipDetector<'a> {
    fn new(sampled: &'a Sampled, cfg: &'a PrepConfig) -> Self {
        ClipDetector { sampled, cfg, long: None, searched_first: false, found: BTreeMap::new() }
    }

    fn img(&self, f: usize) -> &'a RgbImage {
        &self.sampled.images[&f]
    }

    /// Detects stored frames `positions` (sorted) and records them in `dets`.
    fn run(
        &mut self,
        positions: &[usize],
        dets: &mut [Option<Vec<Detection>>],
        det: &mut dyn Detector,
    ) -> anyhow::Result<()> {
        let mut frames: Vec<usize> = positions.iter().map(|&p| self.sampled.indices[p]).collect();
        frames.sort_unstable();
        frames.dedup();
        frames.retain(|f| !self.found.contains_key(f));
        let cfg = self.cfg;
        if !self.searched_first && !frames.is_empty() {
            let first = frames.remove(0);
            let mut d = det.detect(&[self.img(first)], cfg.det_first_long_side)?.remove(0);
            if d.is_empty() && cfg.det_first_long_side < cfg.det_long_side {
                d = det.detect(&[self.img(first)], cfg.det_long_side)?.remove(0);
            }
            self.searched_first = true;
            self.note_scale(&d, first);
            self.found.insert(first, d);
        }
        if !frames.is_empty() {
            let long = self.long.unwrap_or(cfg.det_long_side);
            let batch = det.detect(&frames.iter().map(|&f| self.img(f)).collect::<Vec<_>>(), long)?;
            let mut retry = Vec::new();
            for (f, d) in frames.into_iter().zip(batch) {
                if d.is_empty() && long < cfg.det_long_side {
                    retry.push(f);
                }
                self.note_scale(&d, f);
                self.found.insert(f, d);
            }
            if !retry.is_empty() {
                let again = det.detect(&retry.iter().map(|&f| self.img(f)).collect::<Vec<_>>(), cfg.det_long_side)?;
                for (f, d) in retry.into_iter().zip(again) {
                    self.note_scale(&d, f);
                    self.found.insert(f, d);
                }
            }
        }
        for &p in positions {
            dets[p] = Some(self.found[&self.sampled.indices[p]].clone());
        }
        Ok(())
    }

    /// Fixes the reduced long side from the first face found in the clip.
    fn note_scale(&mut self, d: &[Detection], frame: usize) {
        if let (None, Some(face)) = (self.long, d.first()) {
            let (w, h) = self.img(frame).dimensions();
            let cfg = self.cfg;
            let face_h = face.bbox[3] - face.bbox[1];
            self.long =
                Some(adaptive_long_side(w.max(h), face_h, cfg.det_face_px, cfg.det_min_long_side, cfg.det_long_side));
        }
    }
}

/// What detection and tracking made of one clip's stored frames.
struct Tracking {
    tracked: Vec<TrackedFrame>,
    shots: Vec<usize>,
    /// Stored frames the detector ran on.
    detector_frames: usize,
}

/// Finds the shots, detects keyframes, then detects between neighbouring detections until
/// interpolation is safe ([`refine::next_frames`]), links the primary face and fills the boxes.
fn detect_and_track(sampled: &Sampled, cfg: &PrepConfig, det: &mut dyn Detector) -> anyhow::Result<Tracking> {
    let t = sampled.indices.len();
    let frames: Vec<&RgbImage> = sampled.indices.iter().map(|f| &sampled.images[f]).collect();
    let shots = shots::shots(&frames, cfg.cut_threshold);
    let rule = RefineRule { max_shift: cfg.refine_shift, max_scale: cfg.refine_scale, check_iou: cfg.refine_check_iou };
    let mut detector = ClipDetector::new(sampled, cfg);
    let mut dets: Vec<Option<Vec<Detection>>> = vec![None; t];
    let mut next = refine::keyframes(&shots, cfg.det_every);
    let chosen = loop {
        detector.run(&next, &mut dets, det)?;
        let track = primary_track(&dets, &shots);
        next = refine::next_frames(&Evidence { dets: &dets, track: &track, shots: &shots }, &rule);
        if next.is_empty() {
            break track;
        }
    };
    Ok(Tracking {
        tracked: fill_and_smooth(&chosen, &shots, cfg.smooth_window),
        detector_frames: dets.iter().filter(|d| d.is_some()).count(),
        shots,
    })
}

/// A clip's frames by face source, and the detection rate and mean score they give.
struct Tally {
    detected: usize,
    interpolated: usize,
    lost: usize,
    /// Share of stored frames with a face box.
    rate: f32,
    mean_score: Option<f32>,
}

impl Tally {
    fn of(tracked: &[TrackedFrame]) -> Tally {
        let count = |s: FaceSource| tracked.iter().filter(|f| f.source == s).count();
        let (detected, interpolated) = (count(FaceSource::Detected), count(FaceSource::Interpolated));
        let scores: Vec<f32> = tracked.iter().filter(|f| f.source == FaceSource::Detected).map(|f| f.score).collect();
        Tally {
            detected,
            interpolated,
            lost: count(FaceSource::Lost),
            rate: (detected + interpolated) as f32 / tracked.len().max(1) as f32,
            mean_score: (!scores.is_empty()).then(|| scores.iter().sum::<f32>() / scores.len() as f32),
        }
    }

    fn no_face_error(&self, path: &Path, cfg: &PrepConfig) -> String {
        let (d, i, l) = (self.detected, self.interpolated, self.lost);
        format!(
            "{}: face in {}/{} stored frames ({d} detected, {i} interpolated, {l} lost: the detector ran and \
             found none), under min_detection_rate {} (policy {:?})",
            path.display(),
            d + i,
            cfg.store_frames,
            cfg.min_detection_rate,
            cfg.no_face_policy
        )
    }
}

/// Processes manifest row `index` (`row`) of a dataset rooted at `root`.
pub(crate) fn process(
    row: &ClipRow,
    index: usize,
    root: &Path,
    cfg: &PrepConfig,
    det: &mut dyn Detector,
) -> ClipResult {
    if !row.status.is_ok() {
        let msg = row.error.clone().unwrap_or_else(|| format!("manifest status {}", row.status));
        return ClipResult::failed(row, index, row.status, msg);
    }
    let started = Instant::now();
    let (path, sampled) = match sample_source(row, root, cfg) {
        Ok(x) => x,
        Err((status, msg)) => return ClipResult::failed(row, index, status, msg),
    };
    let decode_ms = ms(started);

    let started = Instant::now();
    let Tracking { mut tracked, shots, detector_frames } = match detect_and_track(&sampled, cfg, det) {
        Ok(x) => x,
        Err(e) => {
            let mut r = ClipResult::failed(row, index, ClipStatus::DetectError, format!("{}: {e:#}", path.display()));
            r.decode_ms = decode_ms;
            return r;
        }
    };
    let tally = Tally::of(&tracked);
    let (rate, mean_score) = (tally.rate, tally.mean_score);
    let frames = FrameCounts { detector_frames, lost: tally.lost, shots: shots.last().map_or(0, |s| s + 1) };
    let detect_ms = ms(started);

    let mut status = ClipStatus::Ok;
    let mut error = None;
    if rate < cfg.min_detection_rate {
        status = ClipStatus::NoFace;
        error = Some(tally.no_face_error(&path, cfg));
        match cfg.no_face_policy {
            NoFacePolicy::Skip => {
                return ClipResult {
                    status,
                    error,
                    detection_rate: Some(rate),
                    mean_score,
                    frames: Some(frames),
                    decode_ms,
                    detect_ms,
                    ..ClipResult::failed(row, index, status, String::new())
                };
            }
            NoFacePolicy::Centre => centre_fallback(&mut tracked),
            NoFacePolicy::Keep => {}
        }
    }
    let started = Instant::now();
    let tensors = render(&sampled, &tracked, &shots, cfg);
    ClipResult {
        manifest_row: index,
        clip_id: row.clip_id.clone(),
        label: row.label,
        status,
        error,
        tensors: Some(tensors),
        detection_rate: Some(rate),
        mean_score,
        frames: Some(frames),
        decode_ms,
        detect_ms,
        crop_ms: ms(started),
    }
}

/// Finds the clip's source under `root` and samples its stored frames; on failure the status
/// and the message.
fn sample_source(row: &ClipRow, root: &Path, cfg: &PrepConfig) -> Result<(PathBuf, Sampled), (ClipStatus, String)> {
    let t = cfg.store_frames;
    let path = crate::dataset::path_inside_root(root, &row.source_path).map_err(|m| (ClipStatus::OutsideRoot, m))?;
    let sampled = match row.source_kind {
        SourceKind::Video => {
            let rotation = row.probe.as_ref().map(|p| p.rotation).unwrap_or(0);
            decode::sample_video(&path, rotation, |times| sample::by_time(times, t))
        }
        SourceKind::Frames => decode::sample_folder(&path, |n| sample::by_index(n, t)),
    };
    let sampled = sampled.map_err(|e| (ClipStatus::DecodeError, format!("{e:#}")))?;
    Ok((path, sampled))
}

/// `no_face_policy = "centre"`: every frame takes the centre fallback instead of a face.
fn centre_fallback(tracked: &mut [TrackedFrame]) {
    tracked.fill(TrackedFrame { bbox: None, score: 0.0, landmarks: [[0.0; 2]; 5], source: FaceSource::Fallback });
}

/// Face crops and masked scenes for every stored frame.
fn render(sampled: &Sampled, tracked: &[TrackedFrame], shots: &[usize], cfg: &PrepConfig) -> ClipTensors {
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
        shot: shots.iter().map(|&s| s as i32).collect(),
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
    fn adaptive_long_side_targets_the_face_height() {
        // A 150 px face in a 1280 px frame is 48 px tall at a 410 px long side (rounded).
        assert_eq!(adaptive_long_side(1280, 150.0, 48, 160, 640), 410);
        assert_eq!(adaptive_long_side(1280, 400.0, 48, 160, 640), 160, "clamped below");
        assert_eq!(adaptive_long_side(640, 20.0, 48, 160, 640), 640, "clamped above");
        assert_eq!(adaptive_long_side(1280, 150.0, 0, 160, 640), 640, "0 disables");
    }
}
