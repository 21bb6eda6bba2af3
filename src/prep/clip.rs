//! One clip through the pipeline: decode the frames it stores, find its shots, search faces on
//! search frames and check between detections until no gap is long or unsafe, track the
//! primary face, crop it (or take the dataset's own face crops, `face_crops = "dataset"`), fit
//! and mask the scene, encode the frames. Pure per-clip work, run by many workers at once.

use std::path::{Path, PathBuf};
use std::time::Instant;

use image::RgbImage;

use super::config::{NoFacePolicy, PrepConfig};
use super::detector::{Ask, ClipDetector, Retry};
use super::shots;
use crate::clip_status::ClipStatus;
use crate::dataset::{path_inside_root, SourceKind, Sources};
use crate::face::refine::{self, Evidence, RefineRule};
use crate::face::track::{fill_and_smooth, primary_track, TrackedFrame};
use crate::face::{Detection, Detector};
use crate::face_source::FaceSource;
use crate::geometry::{self, centre_box, crop_resize, fit_scene, mask_face, square_box};
use crate::manifest::ClipRow;
use crate::sampling;
use crate::shard::{ClipTensors, EncodeError, Encoding, FaceCrops, FrameSink, StoredPixels, Stream};
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
    /// Present when the clip goes into the shard: its tensors (without the pixels, when the
    /// shard stores JPEG) and its pixels in the shard's format.
    pub tensors: Option<ClipTensors>,
    pub pixels: Option<StoredPixels>,
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
            pixels: None,
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
    /// Stored frames the detector ran on (search frames plus those the checks added).
    pub detector_frames: usize,
    /// Of those, the frames it looked at only in a window around the tracked face.
    pub windowed_frames: usize,
    /// Stored frames marked `lost`.
    pub lost: usize,
    /// Shots found among the stored frames.
    pub shots: usize,
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// What detection and tracking made of one clip's stored frames.
struct Tracking {
    tracked: Vec<TrackedFrame>,
    shots: Vec<usize>,
    /// Stored frames the detector ran on, and of them those it looked at in a window only.
    detector_frames: usize,
    windowed_frames: usize,
}

/// Finds the shots, searches the search frames, then checks between neighbouring detections
/// until no gap is longer than `det_every` and interpolation is safe ([`refine::next_frames`]),
/// each check in a window around the tracked face where the shot's track is alone
/// ([`refine::look`]); links the primary face and fills the boxes. A clip with too few faces
/// has every skipped frame searched at the reduced size before it is called faceless.
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
    let rule = RefineRule {
        max_shift: cfg.refine_shift,
        max_scale: cfg.refine_scale,
        check_iou: cfg.refine_check_iou,
        max_gap: cfg.det_every,
    };
    let mut detector = ClipDetector::new(sampled, cfg, conv);
    let mut dets: Vec<Option<Vec<Detection>>> = vec![None; t];
    let mut next = refine::search_frames(&shots, cfg.det_search_every);
    let search = |i: &usize| Ask { position: *i, region: None, retry: Retry::Whole };
    let mut asks: Vec<Ask> = next.iter().map(search).collect();
    loop {
        let chosen = loop {
            detector.run(&asks, &mut dets, det)?;
            let track = primary_track(&dets, &shots);
            let ev = Evidence { dets: &dets, track: &track, shots: &shots };
            next = refine::next_frames(&ev, &rule);
            if next.is_empty() {
                break track;
            }
            let check = |&i: &usize| Ask {
                position: i,
                region: refine::look(&ev, i, cfg.det_crop_margin),
                retry: if refine::at_a_face_edge(&ev, i) {
                    refine::edge_look(&ev, i, cfg.det_crop_margin).map_or(Retry::Whole, Retry::Around)
                } else {
                    Retry::No
                },
            };
            asks = next.iter().map(check).collect();
        };
        let tracked = fill_and_smooth(&chosen, &shots, &sampled.indices, cfg.smooth_window);
        // Too few faces for the clip to count as having one: before saying so, look at every
        // stored frame the detector skipped (a face it finds only now and then, in the dark say,
        // falls between sparse detections), so sparse detection does not give up on a clip that
        // detection on every frame would keep. At the reduced size only: a face too small for it
        // was looked for at `det_long_side` on the shot's search frames, and could not continue
        // a track of the face that set the size (more than 2x smaller). A face the reduced size
        // misses for another reason (dark, blurred) and `det_long_side` would find is not
        // looked for again here (docs/prep.md "No face").
        next = (0..t).filter(|&i| dets[i].is_none()).collect();
        asks = next.iter().map(|&i| Ask { position: i, region: None, retry: Retry::No }).collect();
        if Tally::of(&tracked).rate >= cfg.min_detection_rate || next.is_empty() {
            let ran = || (0..t).filter(|&i| dets[i].is_some());
            let (detector_frames, windowed_frames) = (ran().count(), detector.windowed(ran()));
            return Ok(Tracking { tracked, detector_frames, windowed_frames, shots });
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
) -> anyhow::Result<ClipResult> {
    if !row.status.is_ok() {
        let msg = row.error.clone().unwrap_or_else(|| format!("manifest status {}", row.status));
        return Ok(ClipResult::failed(row, index, row.status, msg));
    }
    let outcome = match cfg.face_crops {
        FaceCrops::Detect => detected_crops(row, inputs, cfg, det),
        FaceCrops::Dataset => dataset_crops(row, inputs, cfg, det),
    };
    match outcome {
        Ok(done) => Ok(done.into_result(row, index)),
        Err(f) if f.fatal => anyhow::bail!("clip {}: {}", row.clip_id, f.message),
        Err(f) => {
            let mut r = ClipResult::failed(row, index, f.status, f.message);
            r.decode_ms = f.decode_ms;
            Ok(r)
        }
    }
}

/// Why a clip could not be prepared, and the decoding time spent on it; `fatal` when the fault
/// is the run's, not the clip's (a frame the JPEG encoder refused): prep stops.
struct Failure {
    status: ClipStatus,
    message: String,
    decode_ms: f64,
    fatal: bool,
}

impl From<(ClipStatus, String)> for Failure {
    fn from((status, message): (ClipStatus, String)) -> Failure {
        Failure { status, message, decode_ms: 0.0, fatal: false }
    }
}

/// A prepared clip, before it becomes a [`ClipResult`].
struct Prepared {
    tensors: ClipTensors,
    pixels: StoredPixels,
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
            pixels: Some(self.pixels),
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
    let Tracking { tracked, shots, detector_frames, windowed_frames } = detect_and_track(sampled, cfg, det, conv)
        .map_err(|e| Failure::from((ClipStatus::DetectError, format!("{}: {e:#}", path.display()))))?;
    let tally = Tally::of(&tracked);
    let shots_found = shots.last().map_or(0, |s| s + 1);
    let counts = FrameCounts { detector_frames, windowed_frames, lost: tally.lost, shots: shots_found };
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
    let (tensors, pixels) = render(stored, cfg, conv).map_err(|e| Failure {
        status: ClipStatus::DecodeError,
        message: format!("{e:#}"),
        decode_ms: times[0],
        fatal: e.is::<EncodeError>(),
    })?;
    let (status, error) = outcome;
    let (decode_ms, detect_ms, crop_ms) = (times[0], times[1], ms(started));
    Ok(Prepared { tensors, pixels, status, error, tally, decode_ms, detect_ms, crop_ms })
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

/// Face frames and masked scenes for every stored frame, with their provenance; the pixels
/// in the shard's format (JPEG frames encoded one by one, the raw arrays left empty).
fn render(st: &Stored, cfg: &PrepConfig, conv: &mut Converter) -> anyhow::Result<(ClipTensors, StoredPixels)> {
    let m = st.frames.indices.len();
    let (s, s2) = (cfg.face_size, cfg.scene_size);
    let numbering = match st.faces {
        Faces::Crop => st.frames,
        Faces::Dataset(d) => d,
    };
    let lost = TrackedFrame { bbox: None, score: 0.0, landmarks: [[0.0; 2]; 5], source: FaceSource::None };
    let jpeg = cfg.encoding == Encoding::Jpeg;
    let mut out = ClipTensors {
        // Raw frames only: JPEG frames go to the sink one by one.
        face: Vec::with_capacity(if jpeg { 0 } else { m * (s * s * 3) as usize }),
        scene: Vec::with_capacity(if jpeg { 0 } else { m * (s2 * s2 * 3) as usize }),
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
    let mut sink = FrameSink::new(cfg.pixel_format());
    // The scene fit of a frame does not depend on the box: a frame stored twice in a row (with
    // dataset crops, a video shorter than its crop folder) is fitted once.
    let mut fitted: Option<(usize, RgbImage, geometry::SceneTransform)> = None;
    for p in 0..m {
        let tf = st.tracked.map_or(&lost, |t| &t[p]);
        let idx = st.frames.indices[p];
        let has_scene = s2 > 0 && st.tracked.is_some();
        // Full-size RGB of the source frame, made only where a crop or a scene needs it.
        let refit = fitted.as_ref().is_none_or(|f| f.0 != idx);
        let needs_rgb = matches!(st.faces, Faces::Crop) || (has_scene && refit);
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
                sink.push(Stream::Face, crop_resize(frame, &region, s).as_raw(), s, &mut out.face)?;
            }
            Faces::Dataset(d) => {
                let img = conv.rgb_scaled(&d.images[&d.indices[p]], s, s, Sampling::Bilinear)?;
                sink.push(Stream::Face, img.as_raw(), s, &mut out.face)?;
            }
        }
        if has_scene {
            if refit {
                let (base, tr) = fit_scene(frame.as_deref().expect("converted for a first fit"), s2, cfg.scene_fit);
                fitted = Some((idx, base, tr));
            }
            let (_, base, tr) = fitted.as_ref().expect("fitted above");
            let mut scene = base.clone();
            if let Some(b) = tf.bbox {
                mask_face(&mut scene, &tr.apply(&b), cfg.mask_scale, cfg.mask_mode);
            }
            sink.push(Stream::Scene, scene.as_raw(), s2, &mut out.scene)?;
        }
        out.scene_frame.push(if has_scene { idx as i32 } else { -1 });
        out.face_box.push(tf.bbox.unwrap_or([f32::NAN; 4]));
        out.face_score.push(tf.score);
        out.face_source.push(tf.source as u8);
        out.landmarks.push(tf.landmarks);
    }
    Ok((out, sink.finish()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::face::det;
    use crate::video::decode::Frame;

    /// Finds a face a quarter of the image tall in frames 0-4 only (each frame's top-left block
    /// holds its number) and records the long sides it ran at per frame.
    struct Recorder(BTreeMap<u8, Vec<u32>>);

    impl Detector for Recorder {
        fn detect(&mut self, frames: &[&RgbImage], long_side: u32) -> anyhow::Result<Vec<Vec<Detection>>> {
            Ok(frames
                .iter()
                .map(|f| {
                    let n = f.get_pixel(0, 0)[0];
                    self.0.entry(n).or_default().push(long_side);
                    let h = f.height() as f32 / 4.0;
                    if n < 5 {
                        vec![det([10.0, 10.0, 10.0 + h, 10.0 + h], 0.9)]
                    } else {
                        vec![]
                    }
                })
                .collect())
        }
    }

    #[test]
    fn a_clip_with_too_few_faces_has_its_skipped_frames_searched_at_the_reduced_size() {
        let frame = |n: u8| {
            let img = RgbImage::from_fn(640, 360, |x, y| image::Rgb(if x < 64 && y < 64 { [n; 3] } else { [128; 3] }));
            (n as usize, Frame::Image(img))
        };
        let sampled = Sampled { count: 20, indices: (0..20).collect(), images: (0..20).map(frame).collect() };
        let cfg = PrepConfig::default();
        let mut rec = Recorder(BTreeMap::new());
        let tracking = detect_and_track(&sampled, &cfg, &mut rec, &mut Converter::default()).unwrap();
        assert_eq!(tracking.shots, vec![0; 20], "one shot");
        assert_eq!(tracking.detector_frames, 20, "a face in 5 of 20 frames: every frame is searched");
        // The first face (90 px of 360) makes the reduced long side 640 × 64 / 90 = 455. The
        // search frames (16 and 19, the shot's end) that find nothing there are searched again
        // whole at det_long_side; the checks where the face vanishes (8, then 6 and 5; 4 finds
        // the face, 12 lies between two empty frames) first in a window at det_long_side around
        // the face at frame 4 (90 px widened by 45 each side: 192 × 192 in the frame's corner),
        // then whole; the frames searched only because the clip has too few faces are not.
        let reduced = 455;
        for n in [16, 19] {
            assert_eq!(rec.0[&n], vec![reduced, cfg.det_long_side], "frame {n}");
        }
        for n in [5, 6, 8] {
            assert_eq!(rec.0[&n], vec![reduced, 192, cfg.det_long_side], "frame {n}");
        }
        for n in [1, 2, 3, 4, 7, 9, 10, 11, 12, 13, 14, 15, 17, 18] {
            assert_eq!(rec.0[&n], vec![reduced], "frame {n}");
        }
    }
}
