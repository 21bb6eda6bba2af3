//! Camera and face motion of a synthetic clip: where the background window is and where the
//! faces are in every frame. `slow` is the original drift; the others are the hard cases for
//! sparse detection and tracking: fast crossings, zooms, camera shake, cuts to a face-free
//! shot, and two faces crossing.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// How the camera and the face move in a synthetic clip (`dfer synth --motion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Motion {
    /// The face drifts between two random points while the camera pans slowly.
    #[default]
    Slow,
    /// The face crosses the frame at 1.5–2.5 face widths per second, turning back at the edges.
    Fast,
    /// The camera zooms in (or out, every other clip) by 2.5× about the frame centre.
    Zoom,
    /// Slow drift, and the whole view jumps by up to 3 % of the frame height every frame.
    Shake,
    /// A fast crossing, then a cut to a face-free shot of another scene (or the other way round,
    /// every other clip) half-way through.
    Cut,
    /// Two faces of similar size cross each other; the nearer, larger one is the primary face.
    Cross,
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
            Motion::Slow | Motion::Zoom => {}
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
        }
        pose
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
        };
        p.extend(75, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
        p
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
