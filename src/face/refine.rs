//! Self-checking sparse detection: which stored frames the detector must look at so that
//! interpolating the rest is safe, and where in them. Search frames first (every k-th stored
//! frame and both ends of every shot, searched whole); then, wherever two neighbouring
//! detected-on frames of a shot are too far apart or disagree, the frame halfway between them,
//! again and again until every gap is short and safe or closed. A frame between two detections
//! of the track, in a shot where no detection saw a second face, is first looked at around the
//! box the track predicts there only ([`look`]); a frame where the face appears or vanishes,
//! searched again at full size, around the track's box at its neighbour ([`edge_look`]).

use super::track::{lerp_box, shift, shot_ranges, size, size_ratio};
use super::{iou, Detection};
use crate::geometry::BoxF;

/// Another face this many face sizes (centre distance over mean √area) from the track's cannot
/// be mistaken for it between two detections: a second face in the frame costs no extra
/// detections while it keeps that far.
pub(crate) const APART: f32 = 2.0;

/// When interpolating between two neighbouring detected-on frames is safe.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RefineRule {
    /// Largest centre move, in face sizes, between two neighbouring detections that is
    /// interpolated without a check.
    pub max_shift: f32,
    /// Largest face size ratio between two neighbouring detections interpolated without a check.
    pub max_scale: f32,
    /// A larger move or size change is still interpolated when a third detection next to the
    /// pair lies within this IoU of the line through the other two (constant velocity confirmed).
    pub check_iou: f32,
    /// Neighbouring detected-on frames further apart than this many stored frames always get a
    /// detection between them, however safe the gap looks.
    pub max_gap: usize,
}

/// The first stored frames to detect (searched whole): every `every`-th frame, and the first and
/// last frame of every shot, sorted.
pub(crate) fn search_frames(shots: &[usize], every: usize) -> Vec<usize> {
    let mut p: Vec<usize> = (0..shots.len()).step_by(every.max(1)).collect();
    for (start, end) in shot_ranges(shots) {
        p.extend([start, end - 1]);
    }
    p.sort_unstable();
    p.dedup();
    p
}

/// What is known of a clip so far: the detector's candidates per stored frame (`None` where it
/// did not run), the linked track, and each frame's shot.
pub(crate) struct Evidence<'a> {
    pub dets: &'a [Option<Vec<Detection>>],
    pub track: &'a [Option<Detection>],
    pub shots: &'a [usize],
}

impl Evidence<'_> {
    /// A detected-on frame where the track's face was found and no other candidate could be
    /// taken for it: every other face lies more than [`APART`] face sizes away.
    fn clean(&self, i: usize) -> bool {
        let (Some(t), Some(c)) = (&self.track[i], &self.dets[i]) else { return false };
        c.iter().all(|d| d.bbox == t.bbox || shift(&d.bbox, &t.bbox) > APART)
    }

    /// The tracked boxes of frames `a`, `b`, `c` lie on one line (within `check_iou` at `b`).
    fn linear(&self, [a, b, c]: [usize; 3], rule: &RefineRule) -> bool {
        let (Some(da), Some(db), Some(dc)) = (&self.track[a], &self.track[b], &self.track[c]) else { return false };
        let line = lerp_box(&da.bbox, &dc.bbox, (b - a) as f32 / (c - a) as f32);
        iou(&line, &db.bbox) >= rule.check_iou
    }

    /// The tracked face barely moves or scales between frames `a` and `b` (both tracked).
    fn still(&self, a: usize, b: usize, rule: &RefineRule) -> bool {
        let (Some(da), Some(db)) = (&self.track[a], &self.track[b]) else { return false };
        shift(&da.bbox, &db.bbox) <= rule.max_shift && size_ratio(&da.bbox, &db.bbox) <= rule.max_scale
    }

    /// Interpolating between neighbouring detected-on frames `ran[k]` and `ran[k + 1]` is safe:
    /// no candidate at either end; or the track's face at both ends, any other face far from
    /// it ([`Evidence::clean`]), and either it barely
    /// moved between them and on both sides of them (a face that moves on either side and not
    /// between may have turned in the gap), or the detection next to the pair lies on their
    /// line (constant velocity confirmed).
    fn safe(&self, ran: &[usize], k: usize, rule: &RefineRule) -> bool {
        let (a, b) = (ran[k], ran[k + 1]);
        let empty = |i: usize| self.dets[i].as_ref().is_some_and(|c| c.is_empty());
        if empty(a) && empty(b) {
            return true;
        }
        if !self.clean(a) || !self.clean(b) {
            return false;
        }
        let (prev, next) = (k.checked_sub(1).map(|j| ran[j]), ran.get(k + 2).copied());
        let calm = |o: Option<usize>, x: usize| o.is_none_or(|o| self.track[o].is_none() || self.still(o, x, rule));
        if self.still(a, b, rule) && calm(prev, a) && calm(next, b) {
            return true;
        }
        prev.is_some_and(|p| self.linear([p, a, b], rule)) || next.is_some_and(|n| self.linear([a, b, n], rule))
    }
}

/// Stored frames to detect next: the midpoint of every gap between neighbouring detected-on
/// frames of one shot that is longer than `max_gap` or where interpolation is not yet safe.
/// Empty when the clip is done.
pub(crate) fn next_frames(ev: &Evidence, rule: &RefineRule) -> Vec<usize> {
    let mut out = Vec::new();
    for (start, end) in shot_ranges(ev.shots) {
        let ran: Vec<usize> = (start..end).filter(|&i| ev.dets[i].is_some()).collect();
        for k in 0..ran.len().saturating_sub(1) {
            let (a, b) = (ran[k], ran[k + 1]);
            if b - a >= 2 && (b - a > rule.max_gap || !ev.safe(&ran, k, rule)) {
                out.push((a + b) / 2);
            }
        }
    }
    out
}

/// The nearest detected-on frames before and after stored frame `i` in its shot.
fn neighbours(ev: &Evidence, i: usize) -> (Option<usize>, Option<usize>) {
    let in_shot = |j: &usize| ev.shots[*j] == ev.shots[i];
    let before = (0..i).rev().take_while(in_shot).find(|&j| ev.dets[j].is_some());
    let after = (i + 1..ev.shots.len()).take_while(in_shot).find(|&j| ev.dets[j].is_some());
    (before, after)
}

/// Stored frame `i` lies between a detected-on frame of its shot that holds a face and one that
/// holds none (or the shot's end): a face appears or vanishes there, so a search that finds
/// nothing at the reduced size is worth repeating at full size. Between two face-free frames,
/// or two frames with faces, it is not.
pub(crate) fn at_a_face_edge(ev: &Evidence, i: usize) -> bool {
    let (before, after) = neighbours(ev, i);
    let faces = |j: Option<usize>| j.and_then(|j| ev.dets[j].as_ref()).map(|c| !c.is_empty());
    let (b, a) = (faces(before), faces(after));
    b != a && (b == Some(true) || a == Some(true))
}

/// Where the tracked face of stored frame `i`, at a face edge ([`at_a_face_edge`]), may still
/// be when the search at the reduced size missed it: the track's box at the nearest
/// detected-on frame of the shot that holds it, widened by `margin` face sizes on every side.
/// `None` unless a neighbouring detected-on frame holds the track's face and no detected-on
/// frame of the shot holds a second face (as for [`look`]).
pub(crate) fn edge_look(ev: &Evidence, i: usize, margin: f32) -> Option<Look> {
    let (before, after) = neighbours(ev, i);
    let j = [before, after].into_iter().flatten().find(|&j| ev.track[j].is_some())?;
    if !lone(ev, i) {
        return None;
    }
    let face = ev.track[j].as_ref()?.bbox;
    Some(Look { region: widened(&face, margin * size(&face)), face })
}

/// No detected-on frame of stored frame `i`'s shot holds more than one face.
fn lone(ev: &Evidence, i: usize) -> bool {
    let in_shot = |j: &usize| ev.shots[*j] == ev.shots[i];
    (0..ev.shots.len()).filter(in_shot).all(|j| ev.dets[j].as_ref().is_none_or(|c| c.len() <= 1))
}

/// Where the tracked face of stored frame `i` must be, so that the detector need not search
/// the whole frame: the box the track predicts there (on the line between its boxes at the
/// nearest detected-on frames before and after `i` in its shot), widened by `margin` face
/// sizes (√area of the larger of those two) on every side. A face off that line by more than
/// the margin is cut by the window's edge and not taken, and the whole frame is searched.
/// `None` unless both of those frames hold the track's face and no detected-on frame of the
/// shot holds another face: which face is the primary one is decided by the detections of the
/// whole shot, and a window sees only the face it is put around, so a shot with two faces is
/// searched whole.
pub(crate) fn look(ev: &Evidence, i: usize, margin: f32) -> Option<Look> {
    let (Some(before), Some(after)) = neighbours(ev, i) else { return None };
    if !lone(ev, i) || ev.track[before].is_none() || ev.track[after].is_none() {
        return None;
    }
    let (a, b) = (&ev.track[before].as_ref()?.bbox, &ev.track[after].as_ref()?.bbox);
    let face = lerp_box(a, b, (i - before) as f32 / (after - before) as f32);
    Some(Look { region: widened(&face, margin * size(a).max(size(b))), face })
}

/// `b` widened by `pad` on every side.
fn widened(b: &BoxF, pad: f32) -> BoxF {
    [b[0] - pad, b[1] - pad, b[2] + pad, b[3] + pad]
}

/// Where to look for a frame's tracked face: the region that must hold it, and the box the
/// track predicts there (a face found in the region is taken only within 2× of its size).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Look {
    pub region: BoxF,
    pub face: BoxF,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::face::det;
    use crate::face::track::primary_track;

    const RULE: RefineRule = RefineRule { max_shift: 0.25, max_scale: 1.25, check_iou: 0.7, max_gap: 4 };

    /// Runs the refinement loop against a scripted "every-frame" truth, searching every
    /// `every`-th frame first; returns the frames detected, in order.
    fn run(truth: &[Vec<Detection>], shots: &[usize], every: usize) -> Vec<usize> {
        let mut dets: Vec<Option<Vec<Detection>>> = vec![None; truth.len()];
        let mut next = search_frames(shots, every);
        let mut ran = Vec::new();
        while !next.is_empty() {
            for &i in &next {
                dets[i] = Some(truth[i].clone());
            }
            ran.extend(next);
            let track = primary_track(&dets, shots);
            next = next_frames(&Evidence { dets: &dets, track: &track, shots }, &RULE);
        }
        ran.sort_unstable();
        ran
    }

    #[test]
    fn a_full_size_retry_is_worth_it_only_where_a_face_appears_or_vanishes() {
        let shots = [0, 0, 0, 0, 0, 0, 0, 1, 1];
        let dets: Vec<Option<Vec<Detection>>> =
            vec![Some(vec![]), None, Some(at(0.0, 40.0)), None, Some(at(10.0, 40.0)), None, Some(vec![]), None, None];
        let track = primary_track(&dets, &shots);
        let ev = Evidence { dets: &dets, track: &track, shots: &shots };
        let edges: Vec<usize> = (0..9).filter(|&i| dets[i].is_none() && at_a_face_edge(&ev, i)).collect();
        // 1: nothing before it, a face after; 3: faces on both sides; 5: a face before, none
        // after; 7 and 8: no detected-on frame of shot 1 at all.
        assert_eq!(edges, vec![1, 5]);
        // Where the face may still be: its box at the neighbour that holds it, widened.
        assert_eq!(edge_look(&ev, 1, 0.5).unwrap().region, [-20.0, -20.0, 60.0, 60.0]);
        assert_eq!(edge_look(&ev, 5, 1.0).unwrap().region, [-30.0, -40.0, 90.0, 80.0]);
        assert_eq!(edge_look(&ev, 5, 1.0).unwrap().face, [10.0, 0.0, 50.0, 40.0]);
        // A second face in the shot: no window.
        let mut two = dets.clone();
        two[4].as_mut().unwrap().push(det([300.0, 0.0, 340.0, 40.0], 0.8));
        let track = primary_track(&two, &shots);
        assert_eq!(edge_look(&Evidence { dets: &two, track: &track, shots: &shots }, 5, 1.0), None);
    }

    #[test]
    fn look_widens_the_predicted_box_and_only_for_a_lone_face() {
        let shots = [0, 0, 0, 0, 0, 1];
        let mut dets: Vec<Option<Vec<Detection>>> =
            vec![Some(at(100.0, 40.0)), None, None, Some(at(140.0, 40.0)), None, Some(at(0.0, 40.0))];
        let track = primary_track(&dets, &shots);
        let ev = Evidence { dets: &dets, track: &track, shots: &shots };
        // A third of the way from [100,0,140,40] to [140,0,180,40], widened by one face size.
        let at1 = look(&ev, 1, 1.0).unwrap();
        let x = 100.0 + 40.0 / 3.0;
        assert!((at1.face[0] - x).abs() < 1e-4, "a third of the way: {:?}", at1.face);
        let expect = [x - 40.0, -40.0, x + 80.0, 80.0];
        assert!(at1.region.iter().zip(expect).all(|(a, b)| (a - b).abs() < 1e-4), "{:?}", at1.region);
        let at2 = look(&ev, 2, 0.5).unwrap().region;
        let x = 100.0 + 80.0 / 3.0;
        let expect = [x - 20.0, -20.0, x + 60.0, 60.0];
        assert!(at2.iter().zip(expect).all(|(a, b)| (a - b).abs() < 1e-4), "{at2:?}");
        assert_eq!(look(&ev, 4, 1.0), None, "no detected-on frame after it in its shot");
        // A second face anywhere in the shot, however far: search the whole frame.
        dets[3].as_mut().unwrap().push(det([900.0, 0.0, 940.0, 40.0], 0.8));
        let track = primary_track(&dets, &shots);
        let ev = Evidence { dets: &dets, track: &track, shots: &shots };
        assert_eq!(look(&ev, 1, 1.0), None);
        // No face at an end: nothing to look around.
        dets[3] = Some(vec![]);
        let track = primary_track(&dets, &shots);
        assert_eq!(look(&Evidence { dets: &dets, track: &track, shots: &shots }, 1, 1.0), None);
    }

    fn at(x: f32, s: f32) -> Vec<Detection> {
        vec![det([x, 0.0, x + s, s], 0.9)]
    }

    #[test]
    fn search_frames_include_every_shot_end() {
        assert_eq!(search_frames(&[0; 16], 4), vec![0, 4, 8, 12, 15]);
        assert_eq!(search_frames(&[0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], 4), vec![0, 4, 5, 6, 8, 12, 15]);
        assert_eq!(search_frames(&[0], 4), vec![0]);
    }

    #[test]
    fn a_still_face_needs_only_keyframes() {
        let truth: Vec<_> = (0..16).map(|_| at(100.0, 80.0)).collect();
        assert_eq!(run(&truth, &[0; 16], 4), vec![0, 4, 8, 12, 15]);
        // Searched at 0 and 15 only: the 15-frame gap is halved until no gap exceeds 4 frames,
        // however still the face.
        assert_eq!(run(&truth, &[0; 16], 16), vec![0, 3, 7, 11, 15]);
    }

    #[test]
    fn constant_fast_motion_is_confirmed_by_the_next_keyframe() {
        // 80 px face moving 60 px per stored frame: 3 face sizes between keyframes, on a line.
        let truth: Vec<_> = (0..16).map(|i| at(60.0 * i as f32, 80.0)).collect();
        assert_eq!(run(&truth, &[0; 16], 4), vec![0, 4, 8, 12, 15]);
    }

    #[test]
    fn a_jolt_is_detected_frame_by_frame_and_the_still_rest_is_not() {
        // The camera jolts half a face size on stored frames 3..=5 only.
        let truth: Vec<_> = (0..16).map(|i| at(if (3..=5).contains(&i) { 140.0 } else { 100.0 }, 80.0)).collect();
        // Around the jolt every frame, and frame 1 (the face moved next to that gap); the still
        // rest only at keyframes.
        assert_eq!(run(&truth, &[0; 16], 4), vec![0, 1, 2, 3, 4, 5, 6, 8, 12, 15]);
    }

    #[test]
    fn a_face_that_turns_back_between_keyframes_is_followed() {
        // Moving right at 40 px per frame, turning at frame 10: keyframes 8 and 12 agree
        // (x 320 and 320), but the face was at 400 in between.
        let x = |i: i32| 40.0 * if i <= 10 { i } else { 20 - i } as f32;
        let truth: Vec<_> = (0..16).map(|i| at(x(i), 80.0)).collect();
        let ran = run(&truth, &[0; 16], 4);
        assert!(ran.contains(&10), "the turn is detected: {ran:?}");
    }

    #[test]
    fn a_face_that_vanishes_is_searched_for_up_to_the_frame_it_leaves() {
        let truth: Vec<_> = (0..16).map(|i| if i < 6 { at(100.0, 80.0) } else { vec![] }).collect();
        let ran = run(&truth, &[0; 16], 4);
        assert!(ran.contains(&5) && ran.contains(&6), "{ran:?}");
        assert!(!ran.contains(&10), "face-free keyframes agree: {ran:?}");
    }

    #[test]
    fn a_second_face_nearby_is_resolved_by_detecting_between_and_a_far_one_costs_nothing() {
        let with_second = |x: f32| -> Vec<_> {
            (0..8)
                .map(|i| vec![det([10.0 * i as f32, 0.0, 10.0 * i as f32 + 80.0, 80.0], 0.9), at(x, 60.0)[0].clone()])
                .collect()
        };
        // Close (its centre within 2 face sizes of the track's): every frame is looked at.
        assert_eq!(run(&with_second(120.0), &[0; 8], 4), (0..8).collect::<Vec<_>>());
        // Far (about 4 face sizes away): the keyframes do, as for a lone face.
        assert_eq!(run(&with_second(300.0), &[0; 8], 4), vec![0, 4, 7]);
    }

    #[test]
    fn zoom_off_the_line_is_refined() {
        // Size grows geometrically (1.3x per frame): keyframe neighbours are far off the line.
        let truth: Vec<_> = (0..9).map(|i| at(100.0, 20.0 * 1.3f32.powi(i))).collect();
        let ran = run(&truth, &[0; 9], 4);
        assert!(ran.len() > 3, "{ran:?}");
    }
}
