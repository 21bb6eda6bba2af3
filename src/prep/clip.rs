//! One clip through the pipeline: decode the frames it stores, find its shots, detect faces on
//! keyframes and wherever they disagree, track the primary face, crop it (or take the dataset's
//! own face crops, `face_crops = "dataset"`), fit and mask the scene. Pure per-clip work, run
//! by many workers at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use image::RgbImage;

use super::config::{NoFacePolicy, PrepConfig};
use super::shots;
use crate::clip_status::ClipStatus;
use crate::dataset::{path_inside_root, SourceKind, Sources};
use crate::face::centerface;
use crate::face::refine::{self, Evidence, RefineRule};
use crate::face::track::{fill_and_smooth, primary_track, TrackedFrame};
use crate::face::{Detection, Detector};
use crate::face_source::FaceSource;
use crate::geometry::{self, centre_box, crop_resize, fit_scene, mask_face, square_box};
use crate::manifest::ClipRow;
use crate::sampling;
use crate::shard::{ClipTensors, FaceCrops};
use crate::video::decode::{self, Converter, Sampled, Sampling};

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
    /// Frames of the whole clip and frames stored, when it was decoded.
    pub clip_frames: Option<usize>,
    pub stored_frames: Option<usize>,
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
            clip_frames: None,
            stored_frames: None,
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
    conv: &'a mut Converter,
    /// Long side for later frames, fixed by the first face found.
    long: Option<u32>,
    searched_first: bool,
    found: BTreeMap<usize, Vec<Detection>>,
}

impl<'a> ClipDetector<'a> {
    fn new(sampled: &'a Sampled, cfg: &'a PrepConfig, conv: &'a mut Converter) -> Self {
        ClipDetector { sampled, cfg, conv, long: None, searched_first: false, found: BTreeMap::new() }
    }

    /// Detects source frames `frames` at `long_side`: each converted straight to the detector's
    /// input size, its boxes mapped back to display pixels.
    fn detect(
        &mut self,
        frames: &[usize],
        long_side: u32,
        det: &mut dyn Detector,
    ) -> anyhow::Result<Vec<Vec<Detection>>> {
        let mut views = Vec::with_capacity(frames.len());
        let mut back = Vec::with_capacity(frames.len());
        for &f in frames {
            let frame = &self.sampled.images[&f];
            let (w, h) = frame.dimensions();
            let (iw, ih) = centerface::input_size(w, h, long_side);
            views.push(self.conv.rgb_scaled(frame, iw, ih, Sampling::Bilinear)?);
            back.push((w as f32 / iw as f32, h as f32 / ih as f32));
        }
        let found = det.detect(&views.iter().collect::<Vec<_>>(), long_side)?;
        Ok(found.into_iter().zip(back).map(|(d, (sx, sy))| d.into_iter().map(|x| x.scaled(sx, sy)).collect()).collect())
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
            let mut d = self.detect(&[first], cfg.det_first_long_side, det)?.remove(0);
            if d.is_empty() && cfg.det_first_long_side < cfg.det_long_side {
                d = self.detect(&[first], cfg.det_long_side, det)?.remove(0);
            }
            self.searched_first = true;
            self.note_scale(&d, first);
            self.found.insert(first, d);
        }
        if !frames.is_empty() {
            let long = self.long.unwrap_or(cfg.det_long_side);
            let batch = self.detect(&frames, long, det)?;
            let mut retry = Vec::new();
            for (f, d) in frames.into_iter().zip(batch) {
                if d.is_empty() && long < cfg.det_long_side {
                    retry.push(f);
                }
                self.note_scale(&d, f);
                self.found.insert(f, d);
            }
            if !retry.is_empty() {
                let again = self.detect(&retry, cfg.det_long_side, det)?;
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
            let (w, h) = self.sampled.images[&frame].dimensions();
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
fn detect_and_track(
    sampled: &Sampled,
    cfg: &PrepConfig,
    det: &mut dyn Detector,
    conv: &mut Converter,
) -> anyhow::Result<Tracking> {
    let t = sampled.indices.len();
    let thumbs = sampled
        .indices
        .iter()
        .map(|f| {
            let frame = &sampled.images[f];
            let (w, h) = frame.dimensions();
            let (tw, th) = shots::thumbnail_size(w, h);
            conv.rgb_scaled(frame, tw, th, Sampling::Nearest)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let shots = shots::shots(&thumbs.iter().collect::<Vec<_>>(), cfg.cut_threshold);
    let rule = RefineRule { max_shift: cfg.refine_shift, max_scale: cfg.refine_scale, check_iou: cfg.refine_check_iou };
    let mut detector = ClipDetector::new(sampled, cfg, conv);
    let mut dets: Vec<Option<Vec<Detection>>> = vec![None; t];
    let mut next = refine::keyframes(&shots, cfg.det_every);
    loop {
        let chosen = loop {
            detector.run(&next, &mut dets, det)?;
            let track = primary_track(&dets, &shots);
            next = refine::next_frames(&Evidence { dets: &dets, track: &track, shots: &shots }, &rule);
            if next.is_empty() {
                break track;
            }
        };
        let tracked = fill_and_smooth(&chosen, &shots, &sampled.indices, cfg.smooth_window);
        // Too few faces for the clip to count as having one: before saying so, look at every
        // stored frame the detector skipped (a face it finds only now and then, in the dark say,
        // falls between sparse detections), so sparse detection never gives up on a clip that
        // detection on every frame would keep.
        next = (0..t).filter(|&i| dets[i].is_none()).collect();
        if Tally::of(&tracked).rate >= cfg.min_detection_rate || next.is_empty() {
            let detector_frames = dets.iter().filter(|d| d.is_some()).count();
            return Ok(Tracking { tracked, detector_frames, shots });
        }
    }
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

/// Where a clip's inputs are: the dataset root (the manifest's, or `--root`) and the dataset
/// description's source patterns (for the face-crop folders and videos of `face_crops = "dataset"`).
pub(crate) struct Inputs<'a> {
    pub root: &'a Path,
    pub sources: Option<&'a Sources>,
}

impl Inputs<'_> {
    /// The path of clip `id`'s source of `kind` by the description's pattern, checked to stay
    /// inside the root.
    fn source(&self, kind: SourceKind, id: &str) -> Result<PathBuf, (ClipStatus, String)> {
        let pattern = self.sources.and_then(|s| s.pattern(kind)).ok_or_else(|| {
            let m =
                format!("clip {id}: the dataset description has no sources.{kind} pattern (face_crops = \"dataset\")");
            (ClipStatus::Missing, m)
        })?;
        path_inside_root(self.root, &pattern.replace("{id}", id)).map_err(|m| (ClipStatus::OutsideRoot, m))
    }
}

/// An estimate from above of the bytes of decoded frames [`process`] holds for `row`: the frames
/// it keeps ([`sampling::stored_frames`] of the probed count; the most it keeps when the count is
/// unknown) at the probed size, as an 8-bit 4:2:0 decoder gives them (1.5 bytes a pixel) or as
/// RGB images from a frame folder. 0 for a row without a probe (it is never decoded).
pub(crate) fn frame_bytes(row: &ClipRow, cfg: &PrepConfig) -> u64 {
    let Some(p) = row.probe.as_ref() else { return 0 };
    let kept = match p.n_frames {
        0 => cfg.store_frames + cfg.frames,
        n => sampling::stored_frames(n as usize, cfg.frames, cfg.store_frames).len(),
    };
    let half_bytes_per_pixel = match row.source_kind {
        SourceKind::Video => 3,
        SourceKind::Frames => 6,
    };
    u64::from(p.width) * u64::from(p.height) * half_bytes_per_pixel / 2 * kept as u64
}

/// Processes manifest row `index` (`row`).
pub(crate) fn process(
    row: &ClipRow,
    index: usize,
    inputs: &Inputs,
    cfg: &PrepConfig,
    det: &mut dyn Detector,
) -> ClipResult {
    if !row.status.is_ok() {
        let msg = row.error.clone().unwrap_or_else(|| format!("manifest status {}", row.status));
        return ClipResult::failed(row, index, row.status, msg);
    }
    let outcome = match cfg.face_crops {
        FaceCrops::Detect => detected_crops(row, inputs, cfg, det),
        FaceCrops::Dataset => dataset_crops(row, inputs, cfg, det),
    };
    match outcome {
        Ok(done) => done.into_result(row, index),
        Err(f) => {
            let mut r = ClipResult::failed(row, index, f.status, f.message);
            r.decode_ms = f.decode_ms;
            r
        }
    }
}

/// Why a clip could not be prepared, and the decoding time spent on it.
struct Failure {
    status: ClipStatus,
    message: String,
    decode_ms: f64,
}

impl From<(ClipStatus, String)> for Failure {
    fn from((status, message): (ClipStatus, String)) -> Failure {
        Failure { status, message, decode_ms: 0.0 }
    }
}

/// A prepared clip, before it becomes a [`ClipResult`].
struct Prepared {
    tensors: ClipTensors,
    status: ClipStatus,
    error: Option<String>,
    tally: Option<(f32, Option<f32>, FrameCounts)>,
    decode_ms: f64,
    detect_ms: f64,
    crop_ms: f64,
}

impl Prepared {
    fn into_result(self, row: &ClipRow, index: usize) -> ClipResult {
        ClipResult {
            manifest_row: index,
            clip_id: row.clip_id.clone(),
            label: row.label,
            status: self.status,
            error: self.error,
            clip_frames: Some(self.tensors.clip_frames),
            stored_frames: Some(self.tensors.frame_index.len()),
            tensors: Some(self.tensors),
            detection_rate: self.tally.map(|t| t.0),
            mean_score: self.tally.and_then(|t| t.1),
            frames: self.tally.map(|t| t.2),
            decode_ms: self.decode_ms,
            detect_ms: self.detect_ms,
            crop_ms: self.crop_ms,
        }
    }
}

/// What detection and tracking made of a clip's stored frames, with its tally and timing.
struct Tracked {
    tracked: Vec<TrackedFrame>,
    shots: Vec<usize>,
    tally: Tally,
    counts: FrameCounts,
    detect_ms: f64,
}

fn track(
    sampled: &Sampled,
    path: &Path,
    cfg: &PrepConfig,
    det: &mut dyn Detector,
    conv: &mut Converter,
) -> Result<Tracked, Failure> {
    let started = Instant::now();
    let Tracking { tracked, shots, detector_frames } = detect_and_track(sampled, cfg, det, conv)
        .map_err(|e| Failure::from((ClipStatus::DetectError, format!("{}: {e:#}", path.display()))))?;
    let tally = Tally::of(&tracked);
    let counts = FrameCounts { detector_frames, lost: tally.lost, shots: shots.last().map_or(0, |s| s + 1) };
    Ok(Tracked { tracked, shots, tally, counts, detect_ms: ms(started) })
}

/// `face_crops = "detect"`: the clip's source (video or frame folder) decoded, faces detected,
/// tracked and cropped; a clip without a usable face takes the no-face policy.
fn detected_crops(
    row: &ClipRow,
    inputs: &Inputs,
    cfg: &PrepConfig,
    det: &mut dyn Detector,
) -> Result<Prepared, Failure> {
    let started = Instant::now();
    let path = path_inside_root(inputs.root, &row.source_path).map_err(|m| (ClipStatus::OutsideRoot, m))?;
    let budget = |n: usize| sampling::stored_frames(n, cfg.frames, cfg.store_frames);
    let sampled = match row.source_kind {
        SourceKind::Video => decode::sample_video(&path, row.probe.as_ref().map_or(0, |p| p.rotation), budget),
        SourceKind::Frames => decode::sample_folder(&path, budget),
    }
    .map_err(|e| (ClipStatus::DecodeError, format!("{e:#}")))?;
    let decode_ms = ms(started);
    let mut conv = Converter::default();
    let Tracked { mut tracked, shots, tally, counts, detect_ms } =
        track(&sampled, &path, cfg, det, &mut conv).map_err(|f| Failure { decode_ms, ..f })?;
    let (mut status, mut error) = (ClipStatus::Ok, None);
    if tally.rate < cfg.min_detection_rate {
        status = ClipStatus::NoFace;
        error = Some(tally.no_face_error(&path, cfg));
        if cfg.no_face_policy == NoFacePolicy::Centre {
            centre_fallback(&mut tracked);
        }
    }
    let stored = Stored { faces: Faces::Crop, frames: &sampled, tracked: Some(&tracked), shots: Some(&shots) };
    let tally = Some((tally.rate, tally.mean_score, counts));
    rendered(&stored, cfg, &mut conv, (status, error), tally, [decode_ms, detect_ms])
}

/// Renders a clip's stored frames and assembles its result: `outcome` its status and error,
/// `tally` what detection found (absent when none ran), `times` its decode and detect times.
fn rendered(
    stored: &Stored,
    cfg: &PrepConfig,
    conv: &mut Converter,
    outcome: (ClipStatus, Option<String>),
    tally: Option<(f32, Option<f32>, FrameCounts)>,
    times: [f64; 2],
) -> Result<Prepared, Failure> {
    let started = Instant::now();
    let tensors = render(stored, cfg, conv).map_err(|e| Failure {
        status: ClipStatus::DecodeError,
        message: format!("{e:#}"),
        decode_ms: times[0],
    })?;
    let (status, error) = outcome;
    Ok(Prepared { tensors, status, error, tally, decode_ms: times[0], detect_ms: times[1], crop_ms: ms(started) })
}

/// `face_crops = "dataset"`: the face stream is the dataset's crop folder, frame for frame;
/// with a scene stream, the video's frame at the same place in the clip (frame `k` of a folder
/// of `n_f` frames is video frame `floor((k + 0.5)·n_v / n_f)`), with the face dfer detects and
/// tracks there masked.
fn dataset_crops(
    row: &ClipRow,
    inputs: &Inputs,
    cfg: &PrepConfig,
    det: &mut dyn Detector,
) -> Result<Prepared, Failure> {
    let started = Instant::now();
    let folder = inputs.source(SourceKind::Frames, &row.clip_id)?;
    let faces = decode::sample_folder(&folder, |n| sampling::stored_frames(n, cfg.frames, cfg.store_frames))
        .map_err(|e| (ClipStatus::DecodeError, format!("{e:#}")))?;
    let mut conv = Converter::default();
    if cfg.scene_size == 0 {
        let stored = Stored { faces: Faces::Dataset(&faces), frames: &faces, tracked: None, shots: None };
        return rendered(&stored, cfg, &mut conv, (ClipStatus::Ok, None), None, [ms(started), 0.0]);
    }
    let video = inputs.source(SourceKind::Video, &row.clip_id)?;
    let rotation = match (row.source_kind, &row.probe) {
        (SourceKind::Video, Some(p)) => p.rotation,
        _ => crate::video::probe::probe_video(&video).map_err(|e| (e.status(), e.message().to_string()))?.rotation,
    };
    let n_f = faces.count;
    let matched = |n_v: usize| -> Vec<usize> {
        faces.indices.iter().map(|&k| (((k as f64 + 0.5) * n_v as f64 / n_f as f64) as usize).min(n_v - 1)).collect()
    };
    let scenes =
        decode::sample_video(&video, rotation, matched).map_err(|e| (ClipStatus::DecodeError, format!("{e:#}")))?;
    let decode_ms = ms(started);
    let Tracked { tracked, shots, tally, counts, detect_ms } =
        track(&scenes, &video, cfg, det, &mut conv).map_err(|f| Failure { decode_ms, ..f })?;
    let stored =
        Stored { faces: Faces::Dataset(&faces), frames: &scenes, tracked: Some(&tracked), shots: Some(&shots) };
    let tally = Some((tally.rate, tally.mean_score, counts));
    rendered(&stored, cfg, &mut conv, (ClipStatus::Ok, None), tally, [decode_ms, detect_ms])
}

/// `no_face_policy = "centre"`: every frame takes the centre fallback instead of a face.
fn centre_fallback(tracked: &mut [TrackedFrame]) {
    tracked.fill(TrackedFrame { bbox: None, score: 0.0, landmarks: [[0.0; 2]; 5], source: FaceSource::Fallback });
}

/// Where a clip's face frames come from.
enum Faces<'a> {
    /// Cropped from `Stored::frames` around the tracked box.
    Crop,
    /// A dataset's own crops, stored frame for stored frame.
    Dataset(&'a Sampled),
}

/// What a clip's stored frames are made from: the face source, the decoded frames (of the video
/// or frame folder) the scenes and detected crops come from, and the tracked face in each
/// (absent when nothing was detected: dataset crops without a scene stream).
struct Stored<'a> {
    faces: Faces<'a>,
    frames: &'a Sampled,
    tracked: Option<&'a [TrackedFrame]>,
    shots: Option<&'a [usize]>,
}

/// Face frames and masked scenes for every stored frame, with their provenance.
fn render(st: &Stored, cfg: &PrepConfig, conv: &mut Converter) -> anyhow::Result<ClipTensors> {
    let m = st.frames.indices.len();
    let (s, s2) = (cfg.face_size, cfg.scene_size);
    let numbering = match st.faces {
        Faces::Crop => st.frames,
        Faces::Dataset(d) => d,
    };
    let lost = TrackedFrame { bbox: None, score: 0.0, landmarks: [[0.0; 2]; 5], source: FaceSource::None };
    let mut out = ClipTensors {
        face: Vec::with_capacity(m * (s * s * 3) as usize),
        scene: Vec::with_capacity(m * (s2 * s2 * 3) as usize),
        clip_frames: numbering.count,
        frame_index: numbering.indices.iter().map(|&i| i as i32).collect(),
        scene_frame: Vec::with_capacity(m),
        face_box: Vec::with_capacity(m),
        face_score: Vec::with_capacity(m),
        face_source: Vec::with_capacity(m),
        landmarks: Vec::with_capacity(m),
        shot: match st.shots {
            Some(shots) => shots.iter().map(|&s| s as i32).collect(),
            None => vec![-1; m],
        },
        frame_size: [0, 0],
    };
    // The scene fit of a frame does not depend on the box: compute it once per distinct frame.
    let mut fitted: BTreeMap<usize, (RgbImage, geometry::SceneTransform)> = Default::default();
    for p in 0..m {
        let tf = st.tracked.map_or(&lost, |t| &t[p]);
        let idx = st.frames.indices[p];
        let has_scene = s2 > 0 && st.tracked.is_some();
        // Full-size RGB of the source frame, made only where a crop or a scene needs it.
        let needs_rgb = matches!(st.faces, Faces::Crop) || (has_scene && !fitted.contains_key(&idx));
        let frame = if needs_rgb { Some(conv.rgb(&st.frames.images[&idx])?) } else { None };
        let (w, h) = st.frames.images[&idx].dimensions();
        out.frame_size = [w, h];
        match st.faces {
            Faces::Crop => {
                let region = match tf.bbox {
                    Some(b) => square_box(&b, cfg.margin),
                    None => centre_box(w, h),
                };
                let frame = frame.as_deref().expect("converted for the crop");
                out.face.extend_from_slice(crop_resize(frame, &region, s).as_raw());
            }
            Faces::Dataset(d) => {
                let img = conv.rgb_scaled(&d.images[&d.indices[p]], s, s, Sampling::Bilinear)?;
                out.face.extend_from_slice(img.as_raw());
            }
        }
        if has_scene {
            let (base, tr) = fitted
                .entry(idx)
                .or_insert_with(|| fit_scene(frame.as_deref().expect("converted for a first fit"), s2, cfg.scene_fit));
            let mut scene = base.clone();
            if let Some(b) = tf.bbox {
                mask_face(&mut scene, &tr.apply(&b), cfg.mask_scale, cfg.mask_mode);
            }
            out.scene.extend_from_slice(scene.as_raw());
        }
        out.scene_frame.push(if has_scene { idx as i32 } else { -1 });
        out.face_box.push(tf.bbox.unwrap_or([f32::NAN; 4]));
        out.face_score.push(tf.score);
        out.face_source.push(tf.source as u8);
        out.landmarks.push(tf.landmarks);
    }
    Ok(out)
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
