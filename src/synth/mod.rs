//! `dfer synth`: synthetic datasets in the exact official layouts of DFEW, FERV39k and MAFW
//! (videos, official face-frame folders, split files), deterministic for a seed, with the true
//! face box of every frame in `synth_truth.jsonl` and optional edge-case clips.

pub(crate) mod encode;
pub(crate) mod motion;
pub(crate) mod render;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use image::{imageops, RgbImage};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::assets::{self, Asset};
use crate::clip_status::ClipStatus;
use crate::dataset::splits::Role;
use crate::dataset::{DatasetDesc, Polarity, SourceKind};
use crate::error::UsageError;
use crate::geometry::BoxF;
use crate::logging::Progress;
use crate::text_enum::text_enum;
pub use motion::Motion;
use motion::{MotionPlan, Pose};
use render::FacePhoto;

text_enum! {
    /// Official layouts `dfer synth` can write.
    #[derive(clap::ValueEnum)]
    pub enum Layout("layout") {
        Dfew = "dfew",
        Ferv39k = "ferv39k",
        Mafw = "mafw",
    }
}

/// Deliberately awkward clips added by `--edge-cases`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeCase {
    /// 10 frames, fewer than the usual 16 sampled.
    Short,
    OneFrame,
    NoFace,
    TwoFaces,
    /// Stored rotated, with a `rotate=90` tag that makes it upright.
    Rotation,
    /// Frame rate halves part-way through.
    VariableFrameRate,
    /// Cut to 40% of its size.
    Truncated,
    ZeroByte,
    /// Non-ASCII file name (not in DFEW, whose ids are integers).
    NonAscii,
}

const EDGE_CASES: [EdgeCase; 9] = [
    EdgeCase::Short,
    EdgeCase::OneFrame,
    EdgeCase::NoFace,
    EdgeCase::TwoFaces,
    EdgeCase::Rotation,
    EdgeCase::VariableFrameRate,
    EdgeCase::Truncated,
    EdgeCase::ZeroByte,
    EdgeCase::NonAscii,
];

/// Frame sizes (display orientation) clips are drawn from.
const SIZES: [(u32, u32); 6] = [(320, 240), (480, 360), (640, 360), (640, 480), (960, 540), (1280, 720)];
const FPS: [u32; 3] = [24, 25, 30];
/// FERV39k scene folders.
const SCENES: [&str; 22] = [
    "Action",
    "Argue",
    "Business",
    "Conflict",
    "Contest",
    "Crime",
    "Crisis",
    "DailyLife",
    "ElegantArt",
    "Experiment",
    "History",
    "Interview",
    "Liveshow",
    "Medicine",
    "OfficialEvent",
    "ScholarReport",
    "School",
    "Social",
    "Speech",
    "Talkshow",
    "Terror",
    "War",
];

/// Settings of one `dfer synth` run.
#[derive(Debug, Clone)]
pub(crate) struct SynthOptions {
    pub layout: Layout,
    pub clips: usize,
    pub out: PathBuf,
    pub seed: u64,
    pub edge_cases: bool,
    /// Largest frame height drawn (from 240 to 720).
    pub max_height: u32,
    /// Frame sizes to draw from instead of the built-in 320x240 … 1280x720 list.
    pub sizes: Option<Vec<(u32, u32)>>,
    /// Frame rates to draw from instead of 24, 25, 30.
    pub fps: Option<Vec<u32>>,
    /// Frame count range of an ordinary clip (at least 16).
    pub min_frames: u32,
    pub max_frames: u32,
    /// How many LFW faces join the astronaut as identities.
    pub lfw_faces: usize,
    /// Write the official face-frame folders where the layout has them.
    pub face_frames: bool,
    /// Where the label shows.
    pub cue: Cue,
    /// Motions of the ordinary clips, taken in turn (clip i gets `motions[i % len]`).
    pub motions: Vec<Motion>,
    /// Share of each class's ordinary clips drawn at weak intensity (0: none).
    pub weak_share: f64,
    /// The label cue's strength in weak clips (0–1]: its colours faded toward grey.
    pub weak_intensity: f32,
}

text_enum! {
    /// Where a synthetic clip shows its label.
    #[derive(Default, clap::ValueEnum)]
    pub enum Cue("cue") {
        /// A class-coloured ring around the face; the scene palette follows the label's polarity.
        #[default]
        Face = "face",
        /// Only the scene: its palette is the class hue, the face has no ring (a face-only model
        /// cannot tell the classes apart).
        Scene = "scene",
    }
}

/// Ground truth of one synthetic clip, one JSON line in `synth_truth.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TruthClip {
    pub clip_id: String,
    pub label: usize,
    pub label_name: String,
    pub polarity: Polarity,
    /// Relative to the dataset root.
    pub video: String,
    pub frames_dir: Option<String>,
    /// Display size (after rotation).
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub n_frames: usize,
    pub rotation: i32,
    pub edge_case: Option<EdgeCase>,
    /// Status `dfer manifest` should give with video sources and with frame sources.
    pub expected_status: ClipStatus,
    pub expected_status_frames: Option<ClipStatus>,
    pub face: Option<String>,
    /// Presentation time of each frame.
    pub pts_s: Vec<f64>,
    /// True primary face box per frame in display pixels; `None` where no face is visible.
    pub boxes: Vec<Option<BoxF>>,
    /// Second, smaller face (two-face and crossing clips only).
    pub second_boxes: Vec<Option<BoxF>>,
    /// How the camera and the face move (absent in truth files written before motions).
    #[serde(default)]
    pub motion: Motion,
    /// First frame of the second shot, in clips with a camera cut.
    #[serde(default)]
    pub cut_frame: Option<usize>,
    /// Fold roles as written to the split files (`train`/`test`, one per fold or one).
    pub roles: Vec<Role>,
    /// Strength of the label cue: 1 in an ordinary clip, `--weak-intensity` in a weak one
    /// (absent in truth files written before intensities: 1).
    #[serde(default = "full_intensity")]
    pub intensity: f32,
}

fn full_intensity() -> f32 {
    1.0
}

/// What to make for one clip before drawing it.
#[derive(Debug, Clone)]
struct ClipPlan {
    index: usize,
    id: String,
    label: usize,
    edge: Option<EdgeCase>,
    width: u32,
    height: u32,
    fps: u32,
    n_frames: usize,
    roles: Vec<Role>,
    motion: Motion,
    /// Strength of the label cue (1: full).
    intensity: f32,
}

fn make_ids(layout: Layout, plans: &mut [ClipPlan], labels: &[String], rng: &mut ChaCha8Rng) {
    let mut counters = std::collections::BTreeMap::<(String, String), usize>::new();
    for p in plans.iter_mut() {
        let n = p.index + 1;
        let non_ascii = p.edge == Some(EdgeCase::NonAscii);
        p.id = match layout {
            Layout::Dfew => format!("{n:05}"),
            Layout::Mafw if non_ascii => format!("vidéo_été_{n:05}"),
            Layout::Mafw => format!("{n:05}"),
            Layout::Ferv39k => {
                let scene = SCENES[rng.random_range(0..SCENES.len())].to_string();
                let c = counters.entry((scene.clone(), labels[p.label].clone())).or_insert(0);
                *c += 1;
                let stem = if non_ascii { format!("scène_{:04}", *c) } else { format!("{:04}", *c) };
                format!("{scene}/{}/{stem}", labels[p.label])
            }
        };
    }
}

fn plan(opts: &SynthOptions, desc: &DatasetDesc) -> Vec<ClipPlan> {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let sizes: Vec<(u32, u32)> = match &opts.sizes {
        Some(s) => s.clone(),
        None => SIZES.iter().copied().filter(|s| s.1 <= opts.max_height).collect(),
    };
    let rates: Vec<u32> = opts.fps.clone().unwrap_or_else(|| FPS.to_vec());
    let n_labels = desc.labels.len();
    let mut edges: Vec<EdgeCase> = if opts.edge_cases { EDGE_CASES.to_vec() } else { vec![] };
    if opts.layout == Layout::Dfew {
        edges.retain(|e| *e != EdgeCase::NonAscii);
    }
    let total = opts.clips + edges.len();
    let mut plans: Vec<ClipPlan> = (0..total)
        .map(|i| {
            let edge = i.checked_sub(opts.clips).map(|k| edges[k]);
            let (width, height) = sizes[rng.random_range(0..sizes.len())];
            let n_frames = match edge {
                Some(EdgeCase::Short) => 10,
                Some(EdgeCase::OneFrame) => 1,
                _ => rng.random_range(opts.min_frames..=opts.max_frames) as usize,
            };
            ClipPlan {
                index: i,
                id: String::new(),
                label: i % n_labels,
                edge,
                width,
                height,
                fps: rates[rng.random_range(0..rates.len())],
                n_frames,
                roles: vec![],
                motion: if edge.is_some() { Motion::Slow } else { opts.motions[i % opts.motions.len()] },
                intensity: if edge.is_none() && is_weak(i / n_labels, opts.weak_share) {
                    opts.weak_intensity
                } else {
                    1.0
                },
            }
        })
        .collect();
    make_ids(opts.layout, &mut plans, &desc.labels, &mut rng);
    let folds = desc.folds() as usize;
    let mut order: Vec<usize> = (0..total).collect();
    order.shuffle(&mut rng);
    for (pos, &i) in order.iter().enumerate() {
        plans[i].roles = if folds == 0 {
            vec![if pos % 5 == 0 { Role::Test } else { Role::Train }]
        } else {
            (0..folds).map(|k| if pos % folds == k { Role::Test } else { Role::Train }).collect()
        };
    }
    plans
}

/// Whether the `rank`-th clip of a class is weak: spread evenly, so that of a class's first `n`
/// clips ⌊n · share⌋ are (no random draw, so datasets without weak clips are unchanged).
fn is_weak(rank: usize, share: f64) -> bool {
    ((rank + 1) as f64 * share).floor() > (rank as f64 * share).floor()
}

fn fold_path(pattern: &str, fold: usize) -> String {
    pattern.replace("{fold}", &fold.to_string())
}

/// Writes the layout's split files from the plans' roles.
fn write_splits(layout: Layout, desc: &DatasetDesc, root: &Path, plans: &[ClipPlan]) -> Result<()> {
    let s = desc.splits.as_ref().expect("built-in layouts use split files");
    let folds = desc.folds().max(1) as usize;
    for fold in 1..=folds {
        for (role, pattern) in [(Role::Train, &s.train), (Role::Test, &s.test)] {
            let path = root.join(fold_path(pattern, fold));
            std::fs::create_dir_all(path.parent().expect("split files sit in folders"))?;
            let mut text = String::new();
            if let Some(h) = &s.header {
                text.push_str(&h.join(","));
                text.push('\n');
            }
            for p in plans.iter().filter(|p| p.roles[fold - 1] == role) {
                let name = &desc.labels[p.label];
                let line = match layout {
                    // DFEW copies differ: ids are unpadded in train files and padded in test files here.
                    Layout::Dfew if role == Role::Train => format!("{},{}", p.id.trim_start_matches('0'), p.label + 1),
                    Layout::Dfew => format!("{},{}", p.id, p.label + 1),
                    Layout::Ferv39k => format!("{} {name}", p.id),
                    Layout::Mafw => format!("{}.mp4 {name}", p.id),
                };
                text.push_str(&line);
                text.push('\n');
            }
            std::fs::write(&path, text).with_context(|| format!("{}: cannot write", path.display()))?;
        }
    }
    Ok(())
}

/// Square crop around `b` scaled by 1.25, resized to 224: the official face-frame style.
fn face_crop(frame: &RgbImage, b: BoxF) -> RgbImage {
    let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
    let side = (b[2] - b[0]).max(b[3] - b[1]) * 1.25;
    let (w, h) = frame.dimensions();
    let x0 = (cx - side / 2.0).clamp(0.0, w as f32 - 1.0) as u32;
    let y0 = (cy - side / 2.0).clamp(0.0, h as f32 - 1.0) as u32;
    let cw = (side as u32).clamp(1, w - x0);
    let ch = (side as u32).clamp(1, h - y0);
    let crop = imageops::crop_imm(frame, x0, y0, cw, ch).to_image();
    imageops::resize(&crop, 224, 224, imageops::FilterType::Triangle)
}

/// The frame a camera sees: the window `(left, top, zoom)` of `bg`, resized to `w`×`h`.
fn view(bg: &RgbImage, (x, y, z): (f32, f32, f32), w: u32, h: u32) -> RgbImage {
    let cw = ((w as f32 / z).round() as u32).clamp(1, bg.width());
    let ch = ((h as f32 / z).round() as u32).clamp(1, bg.height());
    let x0 = (x.max(0.0) as u32).min(bg.width() - cw);
    let y0 = (y.max(0.0) as u32).min(bg.height() - ch);
    let crop = imageops::crop_imm(bg, x0, y0, cw, ch).to_image();
    if (cw, ch) == (w, h) {
        crop
    } else {
        imageops::resize(&crop, w, h, imageops::FilterType::Triangle)
    }
}

/// Backgrounds and faces of one clip, and how they move.
struct Scene<'a> {
    bg: RgbImage,
    /// Background of the face-free shot (cut clips).
    other_bg: Option<RgbImage>,
    photo: &'a FacePhoto,
    second: &'a FacePhoto,
    ring: Option<[u8; 3]>,
    cue: Cue,
    edge: Option<EdgeCase>,
    motion: MotionPlan,
    /// Seed of the grain of a low-light clip.
    grain: u64,
}

impl Scene<'_> {
    /// Draws frame `f` of `n` (`w`×`h`); returns it with the true primary and second face boxes.
    fn draw(&self, f: usize, n: usize, w: u32, h: u32) -> (RgbImage, Option<BoxF>, Option<BoxF>) {
        let pose: Pose = self.motion.pose(f, n);
        let bg = if pose.main_scene { &self.bg } else { self.other_bg.as_ref().expect("cut clips have two scenes") };
        let mut frame = view(bg, pose.view, w, h);
        if self.edge == Some(EdgeCase::NoFace) {
            return (frame, None, None);
        }
        let mut second_box = None;
        if let (Some(face), Some(EdgeCase::TwoFaces)) = (pose.face, self.edge) {
            let sx = if face.cx > w as f32 / 2.0 { w as f32 * 0.18 } else { w as f32 * 0.82 };
            let sb = render::paste_face(&mut frame, self.second, sx, h as f32 * 0.5, face.h * 0.55, None);
            second_box = render::clip_box(sb, w, h);
        }
        if let Some(s) = pose.second {
            second_box = render::clip_box(render::paste_face(&mut frame, self.second, s.cx, s.cy, s.h, None), w, h);
        }
        let mut b = pose.face.and_then(|face| {
            if self.cue == Cue::Scene {
                // A grey halo, so a face crop (1.25x the box) shows none of the class-coloured scene.
                render::fill_ellipse(&mut frame, face.cx, face.cy, face.h * 0.95, face.h * 0.95, [128, 128, 128], 1.0);
            }
            render::clip_box(render::paste_face(&mut frame, self.photo, face.cx, face.cy, face.h, self.ring), w, h)
        });
        self.film_look(&mut frame, f, &mut b, &mut second_box);
        (frame, b, second_box)
    }

    /// What film-like motions add to a drawn frame: something passing in front of the face,
    /// letterbox bars, low light with grain. Boxes of faces it hides become `None`.
    fn film_look(&self, frame: &mut RgbImage, f: usize, b: &mut Option<BoxF>, second: &mut Option<BoxF>) {
        let (w, h) = frame.dimensions();
        match self.motion.motion {
            Motion::Occlusion if self.motion.hidden(f) => {
                if let Some(fb) = b.take() {
                    let (cx, cy) = ((fb[0] + fb[2]) / 2.0, (fb[1] + fb[3]) / 2.0);
                    let r = (fb[2] - fb[0]).max(fb[3] - fb[1]) * 0.8;
                    render::fill_ellipse(frame, cx, cy, r, r * 1.4, [35, 30, 28], 1.0);
                }
            }
            Motion::Letterbox => {
                let bar = h / 8;
                render::letterbox(frame, bar);
                let active = [0.0, bar as f32, w as f32, (h - bar) as f32];
                *b = b.and_then(|x| render::clip_box_to(x, active));
                *second = second.and_then(|x| render::clip_box_to(x, active));
            }
            Motion::Dark => {
                render::darken_with_grain(frame, self.grain ^ (f as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
            }
            _ => {}
        }
    }
}

/// The palette of a face-free shot after a cut: the opposite mood of the clip's own.
fn other_palette(p: Polarity) -> [[u8; 3]; 3] {
    render::palette(if p == Polarity::Positive { Polarity::Negative } else { Polarity::Positive })
}

/// Draws the backgrounds, picks the faces and plans the motion of one clip.
fn plan_scene<'a>(
    p: &ClipPlan,
    opts: &SynthOptions,
    desc: &DatasetDesc,
    faces: &'a [FacePhoto],
    texture: &RgbImage,
    rng: &mut ChaCha8Rng,
) -> Scene<'a> {
    let polarity = desc.polarity_of(p.label);
    let (w, h) = (p.width, p.height);
    let pan = if p.motion == Motion::Pan { w * 3 / 2 } else { w / 4 };
    let pal = match opts.cue {
        Cue::Face => render::palette(polarity),
        Cue::Scene => render::class_palette(p.label, desc.labels.len()).map(|c| render::fade(c, p.intensity)),
    };
    let margin_y = if p.motion == Motion::Shake { 2 * motion::shake_margin(h) } else { 0 };
    let bg = render::background(w + pan, h + margin_y, pal, texture, rng);
    let face_idx = rng.random_range(0..faces.len());
    let hf = h as f32;
    // A wide shot's face is a quarter of the usual size.
    let size = if p.motion == Motion::Small { 0.25 * hf } else { hf };
    let (fh0, fh1) = (rng.random_range(0.22..0.42) * size, rng.random_range(0.22..0.42) * size);
    let pos = |rng: &mut ChaCha8Rng, fh: f32| {
        let m = fh * 0.7;
        (rng.random_range(m..(w as f32 - m).max(m + 1.0)), rng.random_range(m..(hf - m).max(m + 1.0)))
    };
    let (c0, c1) = (pos(rng, fh0), pos(rng, fh1));
    let mut motion = MotionPlan {
        motion: p.motion,
        w: w as f32,
        h: hf,
        pan: pan as f32,
        fps: p.fps as f32,
        fh: (fh0, fh1),
        c0,
        c1,
        // Every other clip of the same motion takes the variant.
        flip: (p.index / opts.motions.len()) % 2 == 1,
        speed: 0.0,
        jitter: vec![],
        cut: None,
        hidden: None,
    };
    motion.extend(p.n_frames, rng);
    let grain = if p.motion == Motion::Dark { rng.random() } else { 0 };
    let other_bg =
        (p.motion == Motion::Cut).then(|| render::background(w + pan, h, other_palette(polarity), texture, rng));
    Scene {
        bg,
        other_bg,
        photo: &faces[face_idx],
        second: &faces[(face_idx + 1) % faces.len()],
        ring: (opts.cue == Cue::Face)
            .then(|| render::fade(render::class_colour(p.label, desc.labels.len()), p.intensity)),
        cue: opts.cue,
        edge: p.edge,
        motion,
        grain,
    }
}

/// Draws, encodes and (where the layout has them) writes face frames for one clip.
fn make_clip(
    p: &ClipPlan,
    opts: &SynthOptions,
    desc: &DatasetDesc,
    faces: &[FacePhoto],
    texture: &RgbImage,
) -> Result<TruthClip> {
    let root = &opts.out;
    let src = desc.sources.as_ref().expect("built-in layouts have sources");
    let video_rel = src.pattern(SourceKind::Video).expect("video sources").replace("{id}", &p.id);
    let frames_rel = src.pattern(SourceKind::Frames).filter(|_| opts.face_frames).map(|f| f.replace("{id}", &p.id));
    let video = root.join(&video_rel);
    std::fs::create_dir_all(video.parent().expect("videos sit in folders"))?;
    let polarity = desc.polarity_of(p.label);
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ (p.index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let (w, h) = (p.width, p.height);
    let scene = plan_scene(p, opts, desc, faces, texture, &mut rng);
    let edge = p.edge;
    let stored_rotated = edge == Some(EdgeCase::Rotation);
    let frames_dir = frames_rel.as_ref().map(|f| root.join(f));
    let writes_frames =
        frames_dir.is_some() && !matches!(edge, Some(EdgeCase::NoFace | EdgeCase::Truncated | EdgeCase::ZeroByte));
    if let (true, Some(d)) = (writes_frames, &frames_dir) {
        std::fs::create_dir_all(d)?;
    }
    let written_frames = frames_dir.as_deref().filter(|_| writes_frames);
    let (boxes, second_boxes) = draw_frames(p, opts, &scene, written_frames, &video)?;
    let pts_s = apply_edge_case(p, &video)?;
    let expected_status = match edge {
        Some(EdgeCase::Truncated) => ClipStatus::Truncated,
        Some(EdgeCase::ZeroByte) => ClipStatus::Empty,
        _ => ClipStatus::Ok,
    };
    let expected_status_frames =
        frames_rel.as_ref().map(|_| if writes_frames { ClipStatus::Ok } else { ClipStatus::Missing });
    Ok(TruthClip {
        clip_id: p.id.clone(),
        label: p.label,
        label_name: desc.labels[p.label].clone(),
        polarity,
        video: video_rel,
        frames_dir: frames_rel.filter(|_| writes_frames),
        width: w,
        height: h,
        fps: p.fps,
        n_frames: p.n_frames,
        rotation: if stored_rotated { 90 } else { 0 },
        edge_case: edge,
        expected_status,
        expected_status_frames,
        face: (edge != Some(EdgeCase::NoFace)).then(|| scene.photo.name.clone()),
        pts_s,
        boxes,
        second_boxes,
        motion: p.motion,
        cut_frame: scene.motion.cut,
        roles: p.roles.clone(),
        intensity: p.intensity,
    })
}

/// Boxes of every frame (the second face's too, where the clip has two).
type FrameBoxes = (Vec<Option<BoxF>>, Vec<Option<BoxF>>);

/// Draws every frame of the clip and encodes them into `video` (stored rotated for the
/// rotation edge case, a zero-byte file for that one), writing face crops into `frames_dir`.
fn draw_frames(
    p: &ClipPlan,
    opts: &SynthOptions,
    scene: &Scene,
    frames_dir: Option<&Path>,
    video: &Path,
) -> Result<FrameBoxes> {
    let (w, h) = (p.width, p.height);
    let edge = p.edge;
    let stored_rotated = edge == Some(EdgeCase::Rotation);
    let (sw, sh) = if stored_rotated { (h, w) } else { (w, h) };
    let mut boxes = Vec::with_capacity(p.n_frames);
    let mut second_boxes = Vec::new();
    let two_faces = edge == Some(EdgeCase::TwoFaces) || matches!(p.motion, Motion::Cross | Motion::Second);
    let crf = if p.motion == Motion::Compressed { 42 } else { 20 };
    let mut encoder =
        if edge == Some(EdgeCase::ZeroByte) { None } else { Some(encode::Encoder::start(sw, sh, p.fps, crf, video)?) };
    for f in 0..p.n_frames {
        let (frame, b, second) = scene.draw(f, p.n_frames, w, h);
        if two_faces {
            second_boxes.push(second);
        }
        if let (Some(d), Some(b)) = (frames_dir, b) {
            let name = if opts.layout == Layout::Dfew { format!("{:05}.jpg", f + 1) } else { format!("{}.jpg", f + 1) };
            face_crop(&frame, b).save(d.join(name))?;
        }
        boxes.push(b);
        if let Some(enc) = encoder.as_mut() {
            if stored_rotated {
                enc.push(&imageops::rotate270(&frame))?;
            } else {
                enc.push(&frame)?;
            }
        }
    }
    match encoder {
        Some(enc) => enc.finish()?,
        None => std::fs::write(video, b"")?,
    }
    Ok((boxes, second_boxes))
}

/// Damages or retags the encoded `video` as the clip's edge case asks; returns the frames'
/// presentation times.
fn apply_edge_case(p: &ClipPlan, video: &Path) -> Result<Vec<f64>> {
    let mut pts_s: Vec<f64> = (0..p.n_frames).map(|n| n as f64 / p.fps as f64).collect();
    match p.edge {
        Some(EdgeCase::Rotation) => encode::tag_rotation(video, 90)?,
        Some(EdgeCase::VariableFrameRate) => pts_s = encode::make_vfr(video, p.fps, p.n_frames, p.n_frames / 2)?,
        Some(EdgeCase::Truncated) => encode::truncate(video, 0.4)?,
        _ => {}
    }
    Ok(pts_s)
}

/// Writes a synthetic dataset; returns the truth of every clip, in clip order.
pub(crate) fn synthesise(opts: &SynthOptions) -> Result<Vec<TruthClip>> {
    if opts.clips == 0 && !opts.edge_cases {
        return Err(UsageError::new("--clips must be at least 1 (or add --edge-cases)").into());
    }
    if opts.max_height < 240 || opts.min_frames < 16 || opts.max_frames < opts.min_frames {
        return Err(UsageError::new("--max-height must be at least 240, and 16 <= --min-frames <= --max-frames").into());
    }
    if let Some(bad) = opts.sizes.iter().flatten().find(|(w, h)| w % 2 == 1 || h % 2 == 1 || *w < 64 || *h < 64) {
        return Err(UsageError::new(format!("--sizes: {}x{} must be even and at least 64x64", bad.0, bad.1)).into());
    }
    if opts.motions.is_empty() {
        return Err(UsageError::new("--motion: name at least one motion").into());
    }
    let intensity_ok = opts.weak_intensity > 0.0 && opts.weak_intensity <= 1.0;
    if !((0.0..=1.0).contains(&opts.weak_share) && intensity_ok) {
        return Err(UsageError::new("--weak-share must lie in 0..=1 and --weak-intensity in (0, 1]").into());
    }
    if opts.fps.iter().flatten().any(|f| *f == 0 || *f > 240) || opts.fps.as_ref().is_some_and(|f| f.is_empty()) {
        return Err(UsageError::new("--fps: rates must lie in 1..=240").into());
    }
    if opts.out.exists() && std::fs::read_dir(&opts.out)?.next().is_some() {
        return Err(
            UsageError::new(format!("{}: output folder is not empty; choose a new one", opts.out.display())).into()
        );
    }
    let desc = DatasetDesc::load(opts.layout.as_str())?;
    let faces = render::load_faces(opts.lfw_faces)?;
    // The lower part of camera.png (coat, tripod, grass): texture without a face in it, so the
    // only faces in a clip are the ones whose boxes the truth file records.
    let camera = image::open(assets::path(Asset::Camera)?)?.to_rgb8();
    let texture = image::imageops::crop_imm(&camera, 0, 320, camera.width(), camera.height() - 320).to_image();
    std::fs::create_dir_all(&opts.out).with_context(|| format!("{}: cannot create", opts.out.display()))?;
    let plans = plan(opts, &desc);
    write_splits(opts.layout, &desc, &opts.out, &plans)?;
    let progress = Progress::new(plans.len() as u64, "synthesising clips");
    let truth: Vec<TruthClip> = plans
        .par_iter()
        .map(|p| {
            let t = make_clip(p, opts, &desc, &faces, &texture).with_context(|| format!("clip {}", p.id));
            progress.inc();
            t
        })
        .collect::<Result<_>>()?;
    progress.finish();
    let path = opts.out.join("synth_truth.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
    for t in &truth {
        serde_json::to_writer(&mut f, t)?;
        f.write_all(b"\n")?;
    }
    f.flush()?;
    Ok(truth)
}

/// Reads `synth_truth.jsonl` from a synthetic dataset root.
pub fn read_truth(root: &Path) -> Result<Vec<TruthClip>> {
    let path = root.join("synth_truth.jsonl");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{}:{}: bad truth line", path.display(), i + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(layout: Layout, edge: bool) -> SynthOptions {
        SynthOptions {
            layout,
            clips: 23,
            out: PathBuf::new(),
            seed: 7,
            edge_cases: edge,
            max_height: 720,
            sizes: None,
            fps: None,
            min_frames: 16,
            max_frames: 120,
            lfw_faces: 0,
            face_frames: true,
            cue: Cue::Face,
            motions: vec![Motion::Slow],
            weak_share: 0.0,
            weak_intensity: 1.0,
        }
    }

    #[test]
    fn plans_are_deterministic_balanced_and_fold_complete() {
        let desc = DatasetDesc::load("dfew").unwrap();
        let a = plan(&opts(Layout::Dfew, true), &desc);
        let b = plan(&opts(Layout::Dfew, true), &desc);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert_eq!(a.len(), 23 + 8, "DFEW has no non-ASCII edge case");
        for p in &a {
            assert_eq!(
                p.roles.iter().filter(|r| **r == Role::Test).count(),
                1,
                "each clip is tested in exactly one fold"
            );
            assert!((320..=1280).contains(&p.width) && p.width % 2 == 0 && p.height % 2 == 0);
        }
        let c = plan(&SynthOptions { seed: 8, ..opts(Layout::Dfew, true) }, &desc);
        assert_ne!(format!("{a:?}"), format!("{c:?}"));
    }

    #[test]
    fn ferv39k_ids_follow_scene_emotion_number() {
        let desc = DatasetDesc::load("ferv39k").unwrap();
        let plans = plan(&opts(Layout::Ferv39k, true), &desc);
        for p in &plans {
            let parts: Vec<&str> = p.id.split('/').collect();
            assert_eq!(parts.len(), 3, "{}", p.id);
            assert!(SCENES.contains(&parts[0]));
            assert_eq!(parts[1], desc.labels[p.label]);
            assert_eq!(p.roles.len(), 1);
        }
        assert!(plans.iter().any(|p| !p.id.is_ascii()));
    }

    #[test]
    fn weak_clips_are_an_even_share_of_each_class_and_change_nothing_else() {
        let desc = DatasetDesc::load("dfew").unwrap();
        let weak = SynthOptions { clips: 70, weak_share: 0.3, weak_intensity: 0.4, ..opts(Layout::Dfew, true) };
        let plans = plan(&weak, &desc);
        for label in 0..7 {
            let n = plans.iter().filter(|p| p.label == label && p.edge.is_none() && p.intensity == 0.4).count();
            assert_eq!(n, 3, "class {label}: 3 of its 10 clips are weak");
        }
        assert!(plans.iter().filter(|p| p.edge.is_some()).all(|p| p.intensity == 1.0), "edge cases stay full");
        let full = plan(&SynthOptions { weak_share: 0.0, ..weak }, &desc);
        assert!(full.iter().all(|p| p.intensity == 1.0));
        let key = |p: &ClipPlan| (p.id.clone(), p.label, p.width, p.height, p.fps, p.n_frames, p.roles.clone());
        assert_eq!(plans.iter().map(key).collect::<Vec<_>>(), full.iter().map(key).collect::<Vec<_>>());
        for (share, intensity) in [(1.5, 0.4), (0.5, 0.0), (0.5, 1.2)] {
            let bad = SynthOptions { weak_share: share, weak_intensity: intensity, ..opts(Layout::Dfew, false) };
            let e = synthesise(&bad).unwrap_err().to_string();
            assert!(e.contains("--weak-share") && e.contains("--weak-intensity"), "{e}");
        }
    }

    #[test]
    fn max_height_caps_sizes() {
        let desc = DatasetDesc::load("mafw").unwrap();
        let plans = plan(&SynthOptions { max_height: 360, ..opts(Layout::Mafw, false) }, &desc);
        assert!(plans.iter().all(|p| p.height <= 360));
        let sizes = Some(vec![(640, 360), (1280, 720)]);
        let o =
            SynthOptions { sizes, fps: Some(vec![25]), min_frames: 70, max_frames: 80, ..opts(Layout::Mafw, false) };
        for p in plan(&o, &desc) {
            assert!(
                matches!((p.width, p.height), (640, 360) | (1280, 720))
                    && p.fps == 25
                    && (70..=80).contains(&p.n_frames)
            );
        }
    }
}
