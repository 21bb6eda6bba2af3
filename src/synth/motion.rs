//! Camera and face motion of a synthetic clip: where the background window is and where the
//! faces are in every frame. `slow` is the original drift; the others are the hard cases for
//! sparse detection and tracking: fast crossings, zooms, camera shake, cuts to a face-free
//! shot, two faces crossing, continuous curved motion and a fast pan, and film-like footage
//! (letterbox bars, a wide shot with a small face, low light with grain, heavy compression, a
//! brief occlusion, a second smaller face), whose look is drawn by the renderer.

use crate::text_enum::text_enum;
use rand::Rng;

text_enum! {
    /// How the camera and the face move in a synthetic clip (`dfer synth --motion`).
    #[derive(Default, clap::ValueEnum)]
    pub enum Motion("motion") {
        /// The face drifts between two random points while the camera pans slowly.
        #[default]
        Slow = "slow",
        /// The face crosses the frame at 1.5–2.5 face widths per second, turning back at the edges.
        Fast = "fast",
        /// The camera zooms in (or out, every other clip) by 2.5× about the frame centre.
        Zoom = "zoom",
        /// Slow drift, and the whole view jumps by up to 3 % of the frame height every frame.
        Shake = "shake",
        /// A fast crossing, then a cut to a face-free shot of another scene (or the other way round,
        /// every other clip) half-way through.
        Cut = "cut",
        /// Two faces of similar size cross each other; the nearer, larger one is the primary face.
        Cross = "cross",
        /// The face runs a figure-of-eight over the frame at about 1.2 face heights per second,
        /// never moving in a straight line, its size swelling and shrinking by 15 %.
        Curve = "curve",
        /// The camera pans fast (one and a half frame widths over the clip) past a face that stays
        /// put in the scene, so it crosses the frame and may leave it.
        Pan = "pan",
        /// Slow drift inside black letterbox bars (an eighth of the height at top and bottom).
        Letterbox = "letterbox",
        /// A wide shot: slow drift of a face 6–9 % of the frame height.
        Small = "small",
        /// Slow drift in low light: the frame at about a third of its brightness, with grain.
        Dark = "dark",
        /// Slow drift, encoded with heavy compression (x264 CRF 42).
        Compressed = "compressed",
        /// Slow drift, the face hidden for about 0.4 s by something passing in front of it.
        Occlusion = "occlusion",
        /// Slow drift with a second, smaller face (0.6×) elsewhere in the frame.
        Second = "second",
    }
}

/// A face in one frame: centre and face-box height, in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct FacePose {
    pub cx: f32,
    pub cy: f32,
    pub h: f32,
}

/// Camera and faces of one frame.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pose {
    /// Background window shown: left, top (canvas pixels) and zoom (≥ 1 shows a smaller window).
    pub view: (f32, f32, f32),
    pub face: Option<FacePose>,
    pub second: Option<FacePose>,
    /// False in the face-free shot of a `cut` clip (drawn from another background).
    pub main_scene: bool,
}

/// Everything drawn once per clip that a motion needs.
#[derive(Debug, Clone)]
pub(crate) struct MotionPlan {
    pub motion: Motion,
    pub w: f32,
    pub h: f32,
    /// Horizontal pan of the background over the clip, in pixels.
    pub pan: f32,
    pub fps: f32,
    /// Face height at the start and end, and centre at the start and end (slow drift).
    pub fh: (f32, f32),
    pub c0: (f32, f32),
    pub c1: (f32, f32),
    /// Every-other-clip variant: crossing direction, zoom out instead of in, face shot second.
    pub flip: bool,
    /// Crossing speed in face heights per second (fast, cut, cross).
    pub speed: f32,
    /// Per-frame view jitter (shake), in pixels.
    pub jitter: Vec<(f32, f32)>,
    /// First frame of the second shot (cut).
    pub cut: Option<usize>,
    /// Frames `[start, end)` during which the face is hidden (occlusion).
    pub hidden: Option<(usize, usize)>,
}

/// Canvas margin around the frame that a shaking camera needs, in pixels.
pub(crate) fn shake_margin(h: u32) -> u32 {
    (h as f32 * 0.03).ceil() as u32
}

impl MotionPlan {
    /// Draws what `motion` needs beyond the slow drift (nothing for `slow`, so slow clips stay
    /// as they were).
    pub(crate) fn extend(&mut self, n_frames: usize, rng: &mut impl Rng) {
        let a = shake_margin(self.h as u32) as f32;
        match self.motion {
            Motion::Shake => {
                self.jitter = (0..n_frames).map(|_| (rng.random_range(-a..=a), rng.random_range(-a..=a))).collect()
            }
            Motion::Fast | Motion::Cut | Motion::Cross => self.speed = rng.random_range(1.5..2.5) * 0.75,
            Motion::Curve => self.speed = rng.random_range(1.0..1.4),
            Motion::Occlusion => {
                let len = ((self.fps * 0.4).round() as usize).max(2);
                let start = rng.random_range(n_frames / 4..=(n_frames / 2).max(n_frames / 4));
                self.hidden = Some((start, (start + len).min(n_frames)));
            }
            _ => {}
        }
        if self.motion == Motion::Cut {
            self.cut = Some(n_frames / 2 + rng.random_range(0..=n_frames / 8));
        }
    }

    /// Position along a crossing: from one margin towards the other at `speed`, turning back
    /// at the edges (a triangle wave), for a face `fh` tall at time `secs`.
    fn crossing(&self, fh: f32, secs: f32, reverse: bool) -> f32 {
        let m = fh * 0.7;
        let span = (self.w - 2.0 * m).max(1.0);
        let d = (self.speed * fh * secs).rem_euclid(2.0 * span);
        let x = if d <= span { d } else { 2.0 * span - d };
        if reverse {
            self.w - m - x
        } else {
            m + x
        }
    }

    /// Camera and faces of frame `f` of `n`.
    pub(crate) fn pose(&self, f: usize, n: usize) -> Pose {
        let t = if n > 1 { f as f32 / (n - 1) as f32 } else { 0.0 };
        let secs = f as f32 / self.fps;
        let lerp = |a: f32, b: f32| a + (b - a) * t;
        let fh = lerp(self.fh.0, self.fh.1);
        let drift = FacePose {
            cx: lerp(self.c0.0, self.c1.0) + (t * 9.0).sin() * fh * 0.05,
            cy: lerp(self.c0.1, self.c1.1),
            h: fh,
        };
        let mut pose = Pose { view: (self.pan * t, 0.0, 1.0), face: Some(drift), second: None, main_scene: true };
        match self.motion {
            Motion::Slow => {}
            Motion::Fast => pose.face = Some(FacePose { cx: self.crossing(fh, secs, self.flip), ..drift }),
            Motion::Zoom => {
                let z = if self.flip { 2.5f32.powf(1.0 - t) } else { 2.5f32.powf(t) };
                let (cx, cy) = (self.w / 2.0, self.h / 2.0);
                // Start (or end) small and near the centre, so the grown face stays in frame.
                let h0 = self.h * 0.16;
                let (ox, oy) = ((self.c0.0 - cx) * 0.25, (self.c0.1 - cy) * 0.25);
                pose.view = (self.pan / 2.0 + cx * (1.0 - 1.0 / z), cy * (1.0 - 1.0 / z), z);
                pose.face = Some(FacePose { cx: cx + ox * z, cy: cy + oy * z, h: h0 * z });
            }
            Motion::Shake => {
                let (dx, dy) = self.jitter[f];
                let a = shake_margin(self.h as u32) as f32;
                pose.view = (self.pan * 0.1 + self.pan * 0.8 * t + dx, a + dy, 1.0);
                pose.face = Some(FacePose { cx: drift.cx - dx, cy: drift.cy - dy, h: fh });
            }
            Motion::Cut => {
                let cut = self.cut.expect("planned");
                let face_shot = (f < cut) != self.flip;
                pose.main_scene = face_shot;
                pose.face = face_shot.then(|| FacePose { cx: self.crossing(fh, secs, false), ..drift });
            }
            Motion::Cross => {
                let h1 = self.fh.0;
                pose.face = Some(FacePose { cx: self.crossing(h1, secs, self.flip), cy: self.h * 0.45, h: h1 });
                let h2 = h1 * 0.85;
                pose.second = Some(FacePose { cx: self.crossing(h2, secs, !self.flip), cy: self.h * 0.55, h: h2 });
            }
            Motion::Curve => pose.face = Some(self.figure_of_eight(secs)),
            Motion::Pan => {
                // The view slides 1.5 frame widths; the face is fixed in the scene, starting in
                // the right part of the frame (or the left, panning the other way).
                let dx = 1.5 * self.w * if self.flip { 1.0 - t } else { t };
                pose.view = (dx, 0.0, 1.0);
                let start = if self.flip { 1.5 * self.w + self.w * 0.25 } else { self.w * 0.75 };
                pose.face = Some(FacePose { cx: start - dx, cy: drift.cy, h: self.fh.0 });
            }
            Motion::Second => {
                let side = if drift.cx > self.w / 2.0 { 0.2 } else { 0.8 };
                pose.second = Some(FacePose { cx: self.w * side, cy: self.h * 0.5, h: fh * 0.6 });
            }
            _ => {}
        }
        pose
    }

    /// The face on a figure-of-eight (a 1:2 Lissajous curve) filling the frame inside a margin,
    /// run at `speed` face heights per second on average, its size swelling by ±15 %.
    fn figure_of_eight(&self, secs: f32) -> FacePose {
        let fh = self.fh.0;
        let (ax, ay) = ((self.w / 2.0 - fh * 0.75).max(1.0), (self.h / 2.0 - fh * 0.75).max(1.0));
        // The curve's length is about 2π·max(ax, 2·ay); the angle advances to cover it at speed.
        let omega = self.speed * fh / ax.max(2.0 * ay);
        let a = omega * secs + if self.flip { std::f32::consts::PI } else { 0.0 };
        FacePose {
            cx: self.w / 2.0 + ax * a.sin(),
            cy: self.h / 2.0 + ay * (2.0 * a).sin(),
            h: fh * (1.0 + 0.15 * (1.3 * a).sin()),
        }
    }

    /// Whether the face is hidden in frame `f` (occlusion).
    pub(crate) fn hidden(&self, f: usize) -> bool {
        self.hidden.is_some_and(|(a, b)| (a..b).contains(&f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn plan(motion: Motion) -> MotionPlan {
        let mut p = MotionPlan {
            motion,
            w: 640.0,
            h: 360.0,
            pan: 160.0,
            fps: 25.0,
            fh: (100.0, 120.0),
            c0: (200.0, 180.0),
            c1: (420.0, 200.0),
            flip: false,
            speed: 0.0,
            jitter: vec![],
            cut: None,
            hidden: None,
        };
        p.extend(75, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
        p
    }

    #[test]
    fn curves_never_run_straight_and_pans_cross_the_frame() {
        let p = plan(Motion::Curve);
        let c: Vec<(f32, f32)> = (0..75).map(|f| p.pose(f, 75).face.unwrap()).map(|x| (x.cx, x.cy)).collect();
        // The turn between successive steps is never zero for long: no three frames in a line.
        let mut straight = 0;
        for w in c.windows(3) {
            let (a, b) = ((w[1].0 - w[0].0, w[1].1 - w[0].1), (w[2].0 - w[1].0, w[2].1 - w[1].1));
            let cross = a.0 * b.1 - a.1 * b.0;
            if cross.abs() < 1e-3 * (a.0.hypot(a.1) * b.0.hypot(b.1)).max(1e-6) {
                straight += 1;
            }
        }
        assert!(straight <= 2, "{straight} straight steps");
        let path: f32 = c.windows(2).map(|w| (w[1].0 - w[0].0).hypot(w[1].1 - w[0].1)).sum();
        let per_s = path / 3.0;
        assert!(per_s > 0.6 * p.fh.0, "{per_s} px/s for a face {} px tall", p.fh.0);
        assert!(c.iter().all(|&(x, y)| (0.0..640.0).contains(&x) && (0.0..360.0).contains(&y)));
        let pan = plan(Motion::Pan);
        let (x0, x1) = (pan.pose(0, 75).face.unwrap().cx, pan.pose(74, 75).face.unwrap().cx);
        assert!(x0 - x1 > 1.4 * 640.0, "the face moves with the scene: {x0} → {x1}");
        let o = plan(Motion::Occlusion);
        let (a, b) = o.hidden.unwrap();
        assert!(b - a == 10 && o.hidden(a) && !o.hidden(b) && !o.hidden(a - 1));
    }

    #[test]
    fn fast_faces_cross_faster_than_their_width_per_second() {
        let p = plan(Motion::Fast);
        let x = |f| p.pose(f, 75).face.unwrap().cx;
        let per_s = (x(25) - x(0)).abs();
        let width = 0.75 * p.fh.1;
        assert!(per_s > width, "{per_s} px/s for a face about {width} px wide");
        assert!((0..75).all(|f| (0.0..640.0).contains(&x(f))), "stays in the frame");
    }

    #[test]
    fn cuts_leave_one_shot_without_a_face_and_zoom_grows_the_face() {
        let p = plan(Motion::Cut);
        let cut = p.cut.unwrap();
        assert!((37..=46).contains(&cut));
        assert!(p.pose(cut - 1, 75).face.is_some() && p.pose(cut, 75).face.is_none());
        assert!(!p.pose(cut, 75).main_scene);
        let z = plan(Motion::Zoom);
        let (a, b) = (z.pose(0, 75), z.pose(74, 75));
        assert!((b.face.unwrap().h / a.face.unwrap().h - 2.5).abs() < 1e-3);
        assert!((b.view.2 - 2.5).abs() < 1e-3);
        let s = plan(Motion::Shake);
        assert_eq!(s.jitter.len(), 75);
        assert!(s.jitter.iter().all(|(x, y)| x.abs() <= 11.0 && y.abs() <= 11.0));
        let c = plan(Motion::Cross);
        let (f0, s0) = (c.pose(0, 75).face.unwrap().cx, c.pose(0, 75).second.unwrap().cx);
        let (f1, s1) = (c.pose(74, 75).face.unwrap().cx, c.pose(74, 75).second.unwrap().cx);
        assert!(f0 < s0 && f1 > s1, "they swap sides: {f0} {s0} → {f1} {s1}");
    }
}
