//! The detector's side of one clip: runs CenterFace on the stored frames the sparse-detection
//! rule asks for, once per source frame, at a long side fitted to the clip's face; a frame
//! whose face the track already places is first looked at in a window around that place
//! (docs/prep.md "Detection that checks itself").

use std::collections::{BTreeMap, BTreeSet};

use image::RgbImage;

use super::config::PrepConfig;
use crate::face::refine::Look;
use crate::face::track::{size_ratio, MAX_LINK_SIZE_RATIO};
use crate::face::{centerface, Detection, Detector};
use crate::geometry::BoxF;
use crate::video::decode::{Converter, Sampled, Sampling};

/// Long side at which a face `face_h` pixels tall in a frame whose long side is `frame_long`
/// becomes about `target` pixels tall, clamped to `[min, max]`.
pub(crate) fn adaptive_long_side(frame_long: u32, face_h: f32, target: u32, min: u32, max: u32) -> u32 {
    if target == 0 || face_h <= 0.0 {
        return max;
    }
    ((frame_long as f32 * target as f32 / face_h).round() as u32).clamp(min, max)
}

/// A window is used only when it holds at most this share of the detector input's pixels;
/// otherwise the whole frame costs little more.
const WINDOW_MAX_SHARE: f32 = 0.5;

/// A box this close (input pixels) to a window edge that lies inside the image is cut by it.
const EDGE_PX: f32 = 1.0;

/// A window of the detector's input image (`image` = its width and height), each side a
/// multiple of 32, lying inside the image.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Window {
    x: u32,
    y: u32,
    w: u32,
    h: u32,
    image: (u32, u32),
}

impl Window {
    /// The window around `region` (input pixels), its sides rounded up to multiples of 32 and
    /// centred on the region, moved inside the image; `None` when it would not be much smaller
    /// than the image ([`WINDOW_MAX_SHARE`]).
    fn around(region: &BoxF, (iw, ih): (u32, u32)) -> Option<Window> {
        let side = |len: f32, max: u32| (((len.max(1.0) / 32.0).ceil() as u32) * 32).min(max);
        let (w, h) = (side(region[2] - region[0], iw), side(region[3] - region[1], ih));
        if (w * h) as f32 > WINDOW_MAX_SHARE * (iw * ih) as f32 {
            return None;
        }
        let place = |lo: f32, hi: f32, len: u32, max: u32| {
            ((((lo + hi) / 2.0 - len as f32 / 2.0).round().max(0.0)) as u32).min(max - len)
        };
        Some(Window {
            x: place(region[0], region[2], w, iw),
            y: place(region[1], region[3], h, ih),
            w,
            h,
            image: (iw, ih),
        })
    }

    /// The box (window pixels) touches a window edge that lies inside the image: the face goes
    /// on beyond the window, so the box is not the face's.
    fn cuts(&self, b: &BoxF) -> bool {
        let (iw, ih) = self.image;
        (self.x > 0 && b[0] <= EDGE_PX)
            || (self.y > 0 && b[1] <= EDGE_PX)
            || (self.x + self.w < iw && b[2] >= self.w as f32 - EDGE_PX)
            || (self.y + self.h < ih && b[3] >= self.h as f32 - EDGE_PX)
    }
}

/// A stored frame to detect: where its tracked face must lie (display pixels) when the track
/// already says so, and whether (and where first) a frame with no face at the reduced size is
/// searched again at `det_long_side`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Ask {
    pub position: usize,
    pub region: Option<Look>,
    pub retry: Retry,
}

/// What follows a search that finds no face at the reduced size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Retry {
    /// No search again: the reduced size's answer stands.
    No,
    /// The whole frame at `det_long_side`.
    Whole,
    /// A window at `det_long_side` around where the track's face may be (display pixels), then,
    /// when it holds no whole face of the track's size, the whole frame.
    Around(Look),
}

impl Retry {
    /// Which of two retries asked for one source frame is kept: a window first beats the whole
    /// frame only (it ends there when the window misses), which beats none.
    fn rank(self) -> u8 {
        match self {
            Retry::No => 0,
            Retry::Whole => 1,
            Retry::Around(_) => 2,
        }
    }
}

/// Runs the detector on stored frames of one clip, once per distinct source frame. The first
/// frame it is asked about is searched at `det_first_long_side` (then at `det_long_side` if
/// nothing is found); later frames at the long side that makes the first face found about
/// `det_face_px` tall, and, where the ask says so, a frame with no face at that reduced size
/// again at `det_long_side`. A frame asked with a region (and `det_crops` on) is first looked
/// at in a window around the region only, cut from the frame at that same reduced size; when
/// the window holds no whole face of the tracked face's size the whole frame is looked at. A
/// search again at `det_long_side` around a region ([`Retry::Around`]) does the same at that size.
pub(crate) struct ClipDetector<'a> {
    sampled: &'a Sampled,
    cfg: &'a PrepConfig,
    conv: &'a mut Converter,
    /// Long side for later frames, fixed by the first face found.
    long: Option<u32>,
    searched_first: bool,
    found: BTreeMap<usize, Vec<Detection>>,
    /// Source frames whose faces came from a window.
    windowed: BTreeSet<usize>,
}

impl<'a> ClipDetector<'a> {
    pub(crate) fn new(sampled: &'a Sampled, cfg: &'a PrepConfig, conv: &'a mut Converter) -> Self {
        ClipDetector {
            sampled,
            cfg,
            conv,
            long: None,
            searched_first: false,
            found: BTreeMap::new(),
            windowed: BTreeSet::new(),
        }
    }

    /// Stored frames among `positions` whose faces came from a window.
    pub(crate) fn windowed(&self, positions: impl Iterator<Item = usize>) -> usize {
        positions.filter(|&p| self.windowed.contains(&self.sampled.indices[p])).count()
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

    /// The faces of source frame `f` found in a window around `look.region` (display pixels) of
    /// the frame at long side `long`, in display pixels; `None` when the window would not be
    /// much smaller than the frame, or it holds no face that its edges leave whole and the track
    /// could link (size within 2× of `look.face`).
    fn detect_window(
        &mut self,
        f: usize,
        look: &Look,
        long: u32,
        det: &mut dyn Detector,
    ) -> anyhow::Result<Option<Vec<Detection>>> {
        let region = &look.region;
        let frame = &self.sampled.images[&f];
        let (w, h) = frame.dimensions();
        let (iw, ih) = centerface::input_size(w, h, long);
        let (sx, sy) = (w as f32 / iw as f32, h as f32 / ih as f32);
        let scaled = [region[0] / sx, region[1] / sy, region[2] / sx, region[3] / sy];
        let Some(win) = Window::around(&scaled, (iw, ih)) else { return Ok(None) };
        let image = self.conv.rgb_scaled(frame, iw, ih, Sampling::Bilinear)?;
        let cut: RgbImage = image::imageops::crop_imm(&image, win.x, win.y, win.w, win.h).to_image();
        let found = det.detect(&[&cut], win.w.max(win.h))?.remove(0);
        let whole: Vec<Detection> = found
            .into_iter()
            .filter(|d| !win.cuts(&d.bbox))
            .map(|d| d.translated(win.x as f32, win.y as f32).scaled(sx, sy))
            .collect();
        // A face the track could not link (more than 2× larger or smaller than predicted) is not
        // the tracked one: the whole frame is looked at instead.
        let tracked = whole.iter().any(|d| size_ratio(&d.bbox, &look.face) <= MAX_LINK_SIZE_RATIO);
        Ok(tracked.then_some(whole))
    }

    /// With `det_crops` on, looks for source frame `f`'s tracked face in a window at long side
    /// `long` ([`ClipDetector::detect_window`]) and records the faces when it is there; whether
    /// it was.
    fn found_in_window(&mut self, f: usize, look: &Look, long: u32, det: &mut dyn Detector) -> anyhow::Result<bool> {
        if !self.cfg.det_crops {
            return Ok(false);
        }
        let Some(d) = self.detect_window(f, look, long, det)? else { return Ok(false) };
        self.found.insert(f, d);
        Ok(true)
    }

    /// Detects the stored frames `asks` names and records them in `dets`.
    pub(crate) fn run(
        &mut self,
        asks: &[Ask],
        dets: &mut [Option<Vec<Detection>>],
        det: &mut dyn Detector,
    ) -> anyhow::Result<()> {
        let mut frames = Vec::with_capacity(asks.len());
        for &Ask { position, region, .. } in asks {
            let f = self.sampled.indices[position];
            if self.found.contains_key(&f) {
                continue;
            }
            let found = match (region, self.long) {
                (Some(r), Some(long)) => self.found_in_window(f, &r, long, det)?,
                _ => false,
            };
            if found {
                self.windowed.insert(f);
            } else {
                frames.push(f);
            }
        }
        frames.sort_unstable();
        frames.dedup();
        frames.retain(|f| !self.found.contains_key(f));
        // Stored frames that share a source frame share its search: the widest retry asked wins.
        let mut retry: BTreeMap<usize, Retry> = BTreeMap::new();
        for a in asks {
            let r = retry.entry(self.sampled.indices[a.position]).or_insert(Retry::No);
            if a.retry.rank() > r.rank() {
                *r = a.retry;
            }
        }
        self.whole(frames, &retry, det)?;
        for a in asks {
            dets[a.position] = Some(self.found[&self.sampled.indices[a.position]].clone());
        }
        Ok(())
    }

    /// Detects whole source frames `frames` (sorted, none found yet) and records their faces;
    /// those found empty at the reduced size are searched again at `det_long_side` as `retry`
    /// says ([`ClipDetector::again`]).
    fn whole(
        &mut self,
        mut frames: Vec<usize>,
        retry: &BTreeMap<usize, Retry>,
        det: &mut dyn Detector,
    ) -> anyhow::Result<()> {
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
        if frames.is_empty() {
            return Ok(());
        }
        let long = self.long.unwrap_or(cfg.det_long_side);
        let batch = self.detect(&frames, long, det)?;
        let mut again = Vec::new();
        for (f, d) in frames.into_iter().zip(batch) {
            if d.is_empty() && long < cfg.det_long_side {
                match retry.get(&f) {
                    Some(Retry::Whole) => again.push((f, None)),
                    Some(Retry::Around(look)) => again.push((f, Some(*look))),
                    Some(Retry::No) | None => {}
                }
            }
            self.note_scale(&d, f);
            self.found.insert(f, d);
        }
        self.again(again, det)
    }

    /// Searches source frames found empty at the reduced size again at `det_long_side`: in a
    /// window first where a region is given ([`Retry::Around`]), then whole where that found no
    /// face. A face found in that window does not make the frame a windowed one: the whole
    /// frame was searched at the reduced size.
    fn again(&mut self, frames: Vec<(usize, Option<Look>)>, det: &mut dyn Detector) -> anyhow::Result<()> {
        let long = self.cfg.det_long_side;
        let mut whole = Vec::with_capacity(frames.len());
        for (f, near) in frames {
            let found = match near {
                Some(look) => self.found_in_window(f, &look, long, det)?,
                None => false,
            };
            if !found {
                whole.push(f);
            }
        }
        if !whole.is_empty() {
            let found = self.detect(&whole, long, det)?;
            for (f, d) in whole.into_iter().zip(found) {
                self.note_scale(&d, f);
                self.found.insert(f, d);
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::face::{det, iou};
    use crate::video::decode::Frame;

    /// Finds the white square of an image (its bounding box) unless the image is a whole frame
    /// at `blind_width` (a face the reduced size misses); records each input's size and long side.
    struct WhiteSquare {
        blind_width: u32,
        runs: Vec<(u32, u32, u32)>,
    }

    impl Detector for WhiteSquare {
        fn detect(&mut self, frames: &[&RgbImage], long_side: u32) -> anyhow::Result<Vec<Vec<Detection>>> {
            Ok(frames
                .iter()
                .map(|img| {
                    self.runs.push((img.width(), img.height(), long_side));
                    let white: Vec<(u32, u32)> =
                        img.enumerate_pixels().filter(|p| p.2[0] > 200).map(|(x, y, _)| (x, y)).collect();
                    if img.width() == self.blind_width || white.is_empty() {
                        return vec![];
                    }
                    let (x0, y0) = white.iter().fold((u32::MAX, u32::MAX), |m, p| (m.0.min(p.0), m.1.min(p.1)));
                    let (x1, y1) = white.iter().fold((0, 0), |m, p| (m.0.max(p.0 + 1), m.1.max(p.1 + 1)));
                    vec![det([x0 as f32, y0 as f32, x1 as f32, y1 as f32], 0.9)]
                })
                .collect())
        }
    }

    /// The face of [`retried`]'s frames.
    const FACE: BoxF = [200.0, 100.0, 290.0, 190.0];

    /// Runs a clip of identical frames holding [`FACE`] with `cfg`: a search of source frame 0,
    /// then source frame 1, which the reduced size misses, asked once per retry of `retries`
    /// (stored frames 1, 2, … all showing it); the detector's runs for frame 1, its faces, and
    /// the stored frames seen in a window only.
    fn retried(cfg: &PrepConfig, retries: &[Retry]) -> (Vec<(u32, u32, u32)>, Vec<Detection>, usize) {
        let frame = RgbImage::from_fn(640, 360, |x, y| {
            let inside = (200..290).contains(&x) && (100..190).contains(&y);
            image::Rgb([if inside { 255 } else { 40 }; 3])
        });
        let images = (0..2).map(|i| (i, Frame::Image(frame.clone()))).collect();
        let indices = std::iter::once(0).chain(retries.iter().map(|_| 1)).collect();
        let sampled = Sampled { count: 2, indices, images };
        let mut det = WhiteSquare { blind_width: 0, runs: vec![] };
        let mut conv = Converter::default();
        let mut clip = ClipDetector::new(&sampled, cfg, &mut conv);
        let mut dets = vec![None; sampled.indices.len()];
        clip.run(&[Ask { position: 0, region: None, retry: Retry::Whole }], &mut dets, &mut det).unwrap();
        // The face found at 320 (about 88 px) makes the reduced long side 640 × 64 / 88 ≈ 465: a
        // whole 640x360 frame at it is 480x256, where this detector is blind.
        assert_eq!(clip.long, Some(465), "runs: {:?}", det.runs);
        det.blind_width = 480;
        det.runs.clear();
        let asks: Vec<Ask> =
            retries.iter().enumerate().map(|(k, &retry)| Ask { position: k + 1, region: None, retry }).collect();
        clip.run(&asks, &mut dets, &mut det).unwrap();
        let windowed = clip.windowed(0..sampled.indices.len());
        (det.runs, dets[1].clone().unwrap(), windowed)
    }

    #[test]
    fn a_face_the_reduced_size_misses_at_a_face_edge_is_looked_for_in_a_window_first() {
        let cfg = PrepConfig::default();
        let f = FACE;
        let around = Retry::Around(Look { region: [f[0] - 45.0, f[1] - 45.0, f[2] + 45.0, f[3] + 45.0], face: f });
        // Around the face: the whole frame at the reduced size (nothing), then a 192x192 window
        // at 640 that finds it; no whole frame at 640. The frame was searched whole at the
        // reduced size, so it does not count as seen in a window only.
        let (runs, found, windowed) = retried(&cfg, &[around]);
        assert_eq!(runs, vec![(480, 256, 465), (192, 192, 192)]);
        assert!(found.len() == 1 && iou(&found[0].bbox, &FACE) > 0.9, "{found:?}");
        assert_eq!(windowed, 0);
        // Two stored frames showing that source frame, one asking for the window first and one
        // for the whole frame: one search, window first.
        assert_eq!(retried(&cfg, &[around, Retry::Whole]).0, runs);
        // A window that holds no face: then the whole frame at 640.
        let elsewhere = Look { region: [500.0, 200.0, 560.0, 260.0], face: [510.0, 210.0, 550.0, 250.0] };
        let (runs, found, _) = retried(&cfg, &[Retry::Around(elsewhere)]);
        assert_eq!(runs.len(), 3, "reduced, window, whole: {runs:?}");
        assert_eq!(runs[2], (640, 352, 640));
        assert!(found.len() == 1 && iou(&found[0].bbox, &FACE) > 0.9, "{found:?}");
        // No region: straight to the whole frame; no retry: nothing more; no windows
        // (`det_crops = false`): the whole frame.
        let whole = vec![(480, 256, 465), (640, 352, 640)];
        assert_eq!(retried(&cfg, &[Retry::Whole]).0, whole);
        assert_eq!(retried(&cfg, &[Retry::No]).0, vec![(480, 256, 465)]);
        let no_windows = PrepConfig { det_crops: false, ..PrepConfig::default() };
        assert_eq!(retried(&no_windows, &[around]).0, whole);
    }

    #[test]
    fn adaptive_long_side_targets_the_face_height() {
        // A 150 px face in a 1280 px frame is 48 px tall at a 410 px long side (rounded).
        assert_eq!(adaptive_long_side(1280, 150.0, 48, 160, 640), 410);
        assert_eq!(adaptive_long_side(1280, 400.0, 48, 160, 640), 160, "clamped below");
        assert_eq!(adaptive_long_side(640, 20.0, 48, 160, 640), 640, "clamped above");
        assert_eq!(adaptive_long_side(1280, 150.0, 0, 160, 640), 640, "0 disables");
    }

    #[test]
    fn windows_are_multiples_of_32_inside_the_image_and_only_when_small() {
        // A 70x50 region centred at (200, 100) of a 416x224 input: a 96x64 window around it.
        let w = Window::around(&[165.0, 75.0, 235.0, 125.0], (416, 224)).unwrap();
        assert_eq!((w.x, w.y, w.w, w.h), (152, 68, 96, 64));
        // Near the corner it is moved inside, not shrunk.
        let w = Window::around(&[-30.0, -20.0, 40.0, 30.0], (416, 224)).unwrap();
        assert_eq!((w.x, w.y, w.w, w.h), (0, 0, 96, 64));
        // Over half the image: search the whole frame instead.
        assert_eq!(Window::around(&[0.0, 0.0, 300.0, 200.0], (416, 224)), None);
    }

    #[test]
    fn a_box_cut_by_an_inner_window_edge_is_not_a_face() {
        let w = Window { x: 32, y: 0, w: 96, h: 64, image: (416, 224) };
        assert!(w.cuts(&[0.5, 10.0, 30.0, 40.0]), "left edge lies inside the image");
        assert!(w.cuts(&[60.0, 10.0, 95.5, 40.0]), "right edge lies inside the image");
        assert!(w.cuts(&[20.0, 30.0, 50.0, 63.5]), "bottom edge lies inside the image");
        assert!(!w.cuts(&[20.0, 0.0, 50.0, 30.0]), "the top edge is the image's own");
        assert!(!w.cuts(&[20.0, 10.0, 50.0, 40.0]));
    }
}
