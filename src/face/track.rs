//! Primary-face tracking over a clip's stored frames: one face per shot (size × score), linked
//! from frame to frame by predicted motion rather than by box overlap, boxes interpolated only
//! between two detections of the same track inside one shot, frames without a face marked
//! `lost`, and boxes smoothed over time within a shot.

use super::{area, Detection};
use crate::face_source::FaceSource;
use crate::geometry::BoxF;

/// The tracked face of one sampled frame.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TrackedFrame {
    pub bbox: Option<BoxF>,
    /// Detector score where detected, else 0.
    pub score: f32,
    pub landmarks: [[f32; 2]; 5],
    pub source: FaceSource,
}

/// Box centre.
pub(crate) fn centre(b: &BoxF) -> [f32; 2] {
    [(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0]
}

/// Face size: √area, at least 1 pixel.
pub(crate) fn size(b: &BoxF) -> f32 {
    area(b).sqrt().max(1.0)
}

/// Larger over smaller face size of two boxes (≥ 1).
pub(crate) fn size_ratio(a: &BoxF, b: &BoxF) -> f32 {
    let (x, y) = (size(a), size(b));
    x.max(y) / x.min(y)
}

/// Centre distance of two boxes in units of their mean face size.
pub(crate) fn shift(a: &BoxF, b: &BoxF) -> f32 {
    let (ca, cb) = (centre(a), centre(b));
    (ca[0] - cb[0]).hypot(ca[1] - cb[1]) / ((size(a) + size(b)) / 2.0)
}

/// Linear interpolation between two boxes.
pub(crate) fn lerp_box(a: &BoxF, b: &BoxF, t: f32) -> BoxF {
    std::array::from_fn(|k| a[k] + (b[k] - a[k]) * t)
}

/// A candidate whose face size differs from the track's by more than this factor is another
/// face (a distractor), however close it is.
pub(crate) const MAX_LINK_SIZE_RATIO: f32 = 2.0;

/// The track's state while it is extended: last linked box, where, and centre velocity per
/// stored frame.
struct Motion {
    last: BoxF,
    at: usize,
    velocity: [f32; 2],
}

impl Motion {
    /// Predicted box at stored frame `i`: the centre moved at constant velocity, size kept.
    fn predict(&self, i: usize) -> BoxF {
        let dt = i as f32 - self.at as f32;
        let (dx, dy) = (self.velocity[0] * dt, self.velocity[1] * dt);
        [self.last[0] + dx, self.last[1] + dy, self.last[2] + dx, self.last[3] + dy]
    }

    fn update(&mut self, d: &BoxF, i: usize) {
        let dt = i as f32 - self.at as f32;
        let (c0, c1) = (centre(&self.last), centre(d));
        self.velocity = [(c1[0] - c0[0]) / dt, (c1[1] - c0[1]) / dt];
        self.last = *d;
        self.at = i;
    }
}

/// The candidate that continues a track predicted at `pred`: among candidates of a plausible
/// size, a lone one whatever its displacement, else the one nearest the prediction (centre
/// distance in face sizes plus the log size ratio).
fn link<'a>(pred: &BoxF, candidates: &'a [Detection]) -> Option<&'a Detection> {
    let plausible: Vec<&Detection> =
        candidates.iter().filter(|d| size_ratio(&d.bbox, pred) <= MAX_LINK_SIZE_RATIO).collect();
    let cost = |d: &Detection| shift(&d.bbox, pred) + size_ratio(&d.bbox, pred).ln();
    plausible.into_iter().min_by(|a, b| cost(a).total_cmp(&cost(b)))
}

/// Chooses the primary face of each shot: the track, among those grown from the two strongest
/// faces of the shot, whose detections weigh most in sum (√area × score each), so one frame's
/// score does not decide which of two similar faces is followed. A track grows from its anchor
/// both ways to the shot's ends, linking in each frame the candidate nearest the
/// motion-predicted box ([`link`]). `dets[i]` is `None` for frames the detector did not run on;
/// `shots[i]` is frame `i`'s shot (non-decreasing).
pub(crate) fn primary_track(dets: &[Option<Vec<Detection>>], shots: &[usize]) -> Vec<Option<Detection>> {
    let mut chosen: Vec<Option<Detection>> = vec![None; dets.len()];
    for (start, end) in shot_ranges(shots) {
        let in_shot = || (start..end).flat_map(|i| dets[i].iter().flatten().map(move |d| (i, d)));
        let strongest = |skip: &[Option<Detection>]| {
            in_shot()
                .filter(|(i, d)| skip.get(*i - start).and_then(|x| x.as_ref()) != Some(*d))
                .max_by(|a, b| weight(a.1).total_cmp(&weight(b.1)))
        };
        let Some((ai, anchor)) = strongest(&[]) else { continue };
        let first = follow(dets, (start, end), ai, anchor);
        let best = match strongest(&first) {
            Some((bi, other)) => {
                let second = follow(dets, (start, end), bi, other);
                let total = |t: &[Option<Detection>]| t.iter().flatten().map(weight).sum::<f32>();
                if total(&second) > total(&first) {
                    second
                } else {
                    first
                }
            }
            None => first,
        };
        chosen[start..end].clone_from_slice(&best);
    }
    chosen
}

/// A detection's weight as the primary face: √area × score.
fn weight(d: &Detection) -> f32 {
    area(&d.bbox).sqrt() * d.score
}

/// The track through `anchor` (a detection of frame `ai`) over the frames `[start, end)` of one
/// shot: from the anchor both ways, linking in each frame the candidate nearest the box the
/// track's motion predicts.
fn follow(
    dets: &[Option<Vec<Detection>>],
    (start, end): (usize, usize),
    ai: usize,
    anchor: &Detection,
) -> Vec<Option<Detection>> {
    let mut track: Vec<Option<Detection>> = vec![None; end - start];
    track[ai - start] = Some(anchor.clone());
    let orders: [Box<dyn Iterator<Item = usize>>; 2] = [Box::new(ai + 1..end), Box::new((start..ai).rev())];
    for order in orders {
        let mut motion = Motion { last: anchor.bbox, at: ai, velocity: [0.0; 2] };
        for i in order {
            if let Some(d) = dets[i].as_deref().and_then(|c| link(&motion.predict(i), c)) {
                motion.update(&d.bbox, i);
                track[i - start] = Some(d.clone());
            }
        }
    }
    track
}

/// `(start, end)` stored-frame ranges of each shot.
pub(crate) fn shot_ranges(shots: &[usize]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=shots.len() {
        if i == shots.len() || shots[i] != shots[start] {
            out.push((start, i));
            start = i;
        }
    }
    out
}

/// Turns the primary track into per-frame boxes: detected frames keep their box; a frame
/// between two detections of the track in its shot gets the linear interpolation
/// (`Interpolated`); every other frame gets no box (`Lost`): no box is held past the track's
/// ends or carried across a shot boundary. Then detector jitter is smoothed out
/// ([`smooth`], `window` stored frames, 1 = none); `times` are the stored frames' numbers.
pub(crate) fn fill_and_smooth(
    track: &[Option<Detection>],
    shots: &[usize],
    times: &[usize],
    window: usize,
) -> Vec<TrackedFrame> {
    let mut frames: Vec<TrackedFrame> = Vec::with_capacity(track.len());
    for (start, end) in shot_ranges(shots) {
        let known: Vec<usize> = (start..end).filter(|&i| track[i].is_some()).collect();
        for i in start..end {
            frames.push(match &track[i] {
                Some(d) => TrackedFrame {
                    bbox: Some(d.bbox),
                    score: d.score,
                    landmarks: d.landmarks,
                    source: FaceSource::Detected,
                },
                None => {
                    let before = known.iter().rev().find(|&&k| k < i);
                    let after = known.iter().find(|&&k| k > i);
                    let bbox = before.zip(after).map(|(&a, &b)| {
                        let (ba, bb) =
                            (&track[a].as_ref().expect("known").bbox, &track[b].as_ref().expect("known").bbox);
                        let t = (times[i] - times[a]) as f32 / (times[b] - times[a]) as f32;
                        lerp_box(ba, bb, t)
                    });
                    let source = if bbox.is_some() { FaceSource::Interpolated } else { FaceSource::Lost };
                    TrackedFrame { bbox, score: 0.0, landmarks: [[0.0; 2]; 5], source }
                }
            });
        }
    }
    if window > 1 {
        smooth(&mut frames, shots, times, window / 2);
    }
    frames
}

/// How far smoothing may move a detected box: its centre by at most this share of its face
/// size (√area), its width and height by at most this share of themselves. A detection is
/// written as detected up to this much jitter.
pub(crate) const DETECTED_TOLERANCE: f32 = 0.05;

/// Smooths without lag: each box of a run of boxed frames (one shot, no lost frame between)
/// takes the centre of a straight line fitted (least squares, over frame numbers) to the
/// centres within `half` stored frames on each side, and the mean width and height there; so a
/// face moving at constant velocity is not held back and a still one loses its jitter. A
/// detected box moves at most [`DETECTED_TOLERANCE`] from the detection.
fn smooth(frames: &mut [TrackedFrame], shots: &[usize], times: &[usize], half: usize) {
    let raw: Vec<Option<BoxF>> = frames.iter().map(|f| f.bbox).collect();
    // The run of each boxed frame: contiguous boxed frames of one shot.
    let run_start: Vec<usize> = (0..raw.len())
        .scan(0, |start, i| {
            if i == 0 || raw[i - 1].is_none() || shots[i - 1] != shots[i] {
                *start = i;
            }
            Some(*start)
        })
        .collect();
    for (i, f) in frames.iter_mut().enumerate() {
        let Some(own) = raw[i] else { continue };
        let (lo, hi) = (i.saturating_sub(half).max(run_start[i]), (i + half).min(raw.len() - 1));
        let near: Vec<(f32, BoxF)> = (lo..=hi)
            .take_while(|&j| j <= i || run_start[j] == run_start[i])
            .filter_map(|j| raw[j].map(|b| (times[j] as f32, b)))
            .collect();
        let fitted = fit(&near, times[i] as f32);
        f.bbox = Some(match f.source {
            FaceSource::Detected => clamp_to(&fitted, &own, DETECTED_TOLERANCE),
            _ => fitted,
        });
    }
}

/// The box at time `t` from `(time, box)` samples: centre on the least-squares line through
/// their centres, width and height their means.
fn fit(samples: &[(f32, BoxF)], t: f32) -> BoxF {
    let n = samples.len() as f32;
    let mean_t = samples.iter().map(|s| s.0).sum::<f32>() / n;
    let var_t = samples.iter().map(|s| (s.0 - mean_t).powi(2)).sum::<f32>();
    let line = |value: &dyn Fn(&BoxF) -> f32| {
        let mean = samples.iter().map(|s| value(&s.1)).sum::<f32>() / n;
        if var_t == 0.0 {
            return mean;
        }
        let slope = samples.iter().map(|s| (s.0 - mean_t) * (value(&s.1) - mean)).sum::<f32>() / var_t;
        mean + slope * (t - mean_t)
    };
    let (cx, cy) = (line(&|b| (b[0] + b[2]) / 2.0), line(&|b| (b[1] + b[3]) / 2.0));
    let w = samples.iter().map(|s| s.1[2] - s.1[0]).sum::<f32>() / n;
    let h = samples.iter().map(|s| s.1[3] - s.1[1]).sum::<f32>() / n;
    [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
}

/// `b` moved toward `anchor` until its centre is within `tol` face sizes of the anchor's and its
/// sides within `tol` of the anchor's.
fn clamp_to(b: &BoxF, anchor: &BoxF, tol: f32) -> BoxF {
    let (c, ca) = (centre(b), centre(anchor));
    let reach = tol * size(anchor);
    let (dx, dy) = (c[0] - ca[0], c[1] - ca[1]);
    let k = (reach / dx.hypot(dy).max(f32::MIN_POSITIVE)).min(1.0);
    let (cx, cy) = (ca[0] + dx * k, ca[1] + dy * k);
    let side = |v: f32, a: f32| v.clamp(a * (1.0 - tol), a * (1.0 + tol));
    let w = side(b[2] - b[0], anchor[2] - anchor[0]);
    let h = side(b[3] - b[1], anchor[3] - anchor[1]);
    [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::face::{det, iou};
    use crate::geometry::scale_box;

    fn face(x: f32, y: f32, s: f32) -> Detection {
        det([x, y, x + s, y + s], 0.9)
    }

    #[test]
    fn follows_the_big_face_not_a_small_distractor() {
        let big = |x: f32| det([x, 10.0, x + 100.0, 130.0], 0.9);
        let small = det([400.0, 10.0, 430.0, 40.0], 0.95);
        let dets = vec![
            Some(vec![big(0.0), small.clone()]),
            Some(vec![small.clone()]),
            Some(vec![small.clone(), big(20.0)]),
            None,
        ];
        let t = primary_track(&dets, &[0; 4]);
        assert_eq!(t[0].as_ref().unwrap().bbox[0], 0.0);
        assert!(t[1].is_none(), "a face a third of the size never continues the track");
        assert_eq!(t[2].as_ref().unwrap().bbox[0], 20.0);
        assert!(t[3].is_none());
    }

    #[test]
    fn a_lone_fast_face_is_linked_whatever_its_displacement() {
        // 80 px face moving 200 px between detections: no overlap at all between neighbours.
        let dets: Vec<Option<Vec<Detection>>> =
            (0..5).map(|k| Some(vec![face(10.0 + 200.0 * k as f32, 50.0, 80.0)])).collect();
        let t = primary_track(&dets, &[0; 5]);
        assert!(t.iter().all(|d| d.is_some()), "{t:?}");
    }

    #[test]
    fn crossing_faces_are_told_apart_by_predicted_motion() {
        // A moves right, B moves left, both 100 px; they cross between frames 2 and 3. The
        // score makes A the anchor; overlap alone would jump to B after the crossing.
        let a = |k: usize| det([100.0 * k as f32, 0.0, 100.0 * k as f32 + 100.0, 100.0], 0.95);
        let b = |k: usize| det([500.0 - 100.0 * k as f32, 0.0, 600.0 - 100.0 * k as f32, 100.0], 0.8);
        let dets: Vec<Option<Vec<Detection>>> = (0..6).map(|k| Some(vec![b(k), a(k)])).collect();
        let t = primary_track(&dets, &[0; 6]);
        for (k, d) in t.iter().enumerate() {
            assert_eq!(d.as_ref().unwrap().bbox, a(k).bbox, "frame {k}");
        }
    }

    #[test]
    fn one_frames_score_does_not_choose_the_primary_face() {
        // A (100 px) and B (85 px) cross; in frame 3 alone B scores high enough to be the single
        // strongest detection. Over the shot A weighs more, so A is followed.
        let a = |k: usize| det([60.0 * k as f32, 0.0, 60.0 * k as f32 + 100.0, 100.0], 0.8);
        let b = |k: usize, s: f32| det([500.0 - 60.0 * k as f32, 10.0, 585.0 - 60.0 * k as f32, 95.0], s);
        let dets: Vec<Option<Vec<Detection>>> =
            (0..7).map(|k| Some(vec![a(k), b(k, if k == 3 { 0.99 } else { 0.8 })])).collect();
        let t = primary_track(&dets, &[0; 7]);
        for (k, d) in t.iter().enumerate() {
            assert_eq!(d.as_ref().unwrap().bbox, a(k).bbox, "frame {k}");
        }
    }

    #[test]
    fn a_cut_starts_a_new_track_and_no_box_crosses_it() {
        // Shot 0 has the face at the left; shot 1 has no face; shot 2 a face at the right.
        let dets = vec![
            Some(vec![face(0.0, 0.0, 50.0)]),
            None,
            Some(vec![face(4.0, 0.0, 50.0)]),
            Some(vec![]),
            None,
            Some(vec![]),
            Some(vec![face(400.0, 0.0, 60.0)]),
            None,
            Some(vec![face(404.0, 0.0, 60.0)]),
        ];
        let shots = [0, 0, 0, 1, 1, 1, 2, 2, 2];
        let t = primary_track(&dets, &shots);
        let f = fill_and_smooth(&t, &shots, &(0..9).collect::<Vec<_>>(), 1);
        let src: Vec<FaceSource> = f.iter().map(|x| x.source).collect();
        let (d, i, l) = (FaceSource::Detected, FaceSource::Interpolated, FaceSource::Lost);
        assert_eq!(src, vec![d, i, d, l, l, l, d, i, d]);
        assert!(f[3..6].iter().all(|x| x.bbox.is_none()), "no box held into the face-free shot");
        assert_eq!(f[7].bbox.unwrap(), [402.0, 0.0, 462.0, 60.0]);
        let smoothed = fill_and_smooth(&t, &shots, &(0..9).collect::<Vec<_>>(), 3);
        assert_eq!(smoothed[6].bbox.unwrap(), f[6].bbox.unwrap(), "a steady face: smoothing stays inside the shot");
    }

    #[test]
    fn vanish_and_appear_are_lost_not_held() {
        let dets =
            vec![Some(vec![]), Some(vec![face(0.0, 0.0, 50.0)]), None, Some(vec![face(20.0, 0.0, 50.0)]), Some(vec![])];
        let f = fill_and_smooth(&primary_track(&dets, &[0; 5]), &[0; 5], &[0, 1, 2, 3, 4], 1);
        let src: Vec<FaceSource> = f.iter().map(|x| x.source).collect();
        let (d, i, l) = (FaceSource::Detected, FaceSource::Interpolated, FaceSource::Lost);
        assert_eq!(src, vec![l, d, i, d, l]);
        assert_eq!(f[2].bbox.unwrap(), [10.0, 0.0, 60.0, 50.0]);
        assert_eq!(f[2].score, 0.0);
        assert!(f[0].bbox.is_none() && f[4].bbox.is_none());
    }

    #[test]
    fn smoothing_removes_jitter_without_lagging_a_moving_face() {
        let times: Vec<usize> = (0..7).collect();
        // A face moving 30 px per frame: every box stays where it was detected, the run's ends too.
        let moving: Vec<Option<Detection>> =
            (0..7).map(|k| Some(det([30.0 * k as f32, 0.0, 30.0 * k as f32 + 40.0, 40.0], 0.9))).collect();
        let f = fill_and_smooth(&moving, &[0; 7], &times, 3);
        for (k, x) in f.iter().enumerate() {
            let b = x.bbox.unwrap();
            assert!((b[0] - 30.0 * k as f32).abs() < 1e-3, "frame {k}: {b:?}");
        }
        // A still face jittering by ±1 px is steadied; a 10 px outlier moves at most 5 % of
        // the 40 px face (2 px) toward the line.
        let jitter = [100.0, 101.0, 99.0, 110.0, 100.0, 101.0, 99.0];
        let still: Vec<Option<Detection>> = jitter.iter().map(|&x| Some(det([x, 0.0, x + 40.0, 40.0], 0.9))).collect();
        let f = fill_and_smooth(&still, &[0; 7], &times, 3);
        assert!((f[1].bbox.unwrap()[0] - 100.0).abs() < 0.5, "{:?}", f[1].bbox);
        assert!((f[3].bbox.unwrap()[0] - 108.0).abs() < 1e-3, "clamped to the tolerance: {:?}", f[3].bbox);
        // Frame numbers, not positions, are the clock: an unevenly stored clip still fits a line.
        let uneven = [0usize, 1, 5, 6, 10];
        let track: Vec<Option<Detection>> =
            uneven.iter().map(|&t| Some(det([12.0 * t as f32, 0.0, 12.0 * t as f32 + 40.0, 40.0], 0.9))).collect();
        let f = fill_and_smooth(&track, &[0; 5], &uneven, 3);
        for (x, &t) in f.iter().zip(&uneven) {
            assert!((x.bbox.unwrap()[0] - 12.0 * t as f32).abs() < 1e-3, "frame {t}: {:?}", x.bbox);
        }
        let none = fill_and_smooth(&[None, None], &[0, 0], &[0, 1], 3);
        assert!(none.iter().all(|f| f.bbox.is_none() && f.source == FaceSource::Lost));
    }

    #[test]
    fn measures() {
        let (a, b) = ([0.0, 0.0, 10.0, 10.0], [10.0, 0.0, 30.0, 20.0]);
        assert_eq!(size_ratio(&a, &b), 2.0);
        assert!((shift(&a, &b) - 15.0f32.hypot(5.0) / 15.0).abs() < 1e-6);
        assert_eq!(lerp_box(&a, &b, 0.5), [5.0, 0.0, 20.0, 15.0]);
        assert_eq!(iou(&a, &scale_box(&a, 1.0)), 1.0);
        assert_eq!(shot_ranges(&[0, 0, 1, 2, 2]), vec![(0, 2), (2, 3), (3, 5)]);
        for s in
            [FaceSource::None, FaceSource::Detected, FaceSource::Interpolated, FaceSource::Fallback, FaceSource::Lost]
        {
            assert_eq!(FaceSource::from_code(s as u8), s);
        }
        assert_eq!(FaceSource::from_code(9), FaceSource::None);
    }
}
