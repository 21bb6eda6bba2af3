//! Primary-face tracking over a clip's sampled frames: pick one face per clip (size × score ×
//! continuity), fill frames without a detection by interpolation, smooth boxes over time.

use serde::{Deserialize, Serialize};

use super::{area, iou, BoxF, Detection};

/// Where a frame's face box came from (stored per frame as `face_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum FaceSource {
    /// No face box: the crop is the centre of the frame and nothing is masked (policy `keep`
    /// on a clip without any detection).
    None = 0,
    /// The detector found the primary face in this frame.
    Detected = 1,
    /// Interpolated (or held) from the nearest frames where the face was detected.
    Interpolated = 2,
    /// Centre crop chosen by the `centre` no-face policy.
    Fallback = 3,
}

/// The tracked face of one sampled frame.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackedFrame {
    pub bbox: Option<BoxF>,
    /// Detector score where detected, else 0.
    pub score: f32,
    pub landmarks: [[f32; 2]; 5],
    pub source: FaceSource,
}

/// Box scaled about its centre.
pub fn scale_box(b: &BoxF, s: f32) -> BoxF {
    let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
    let (hw, hh) = ((b[2] - b[0]) * s / 2.0, (b[3] - b[1]) * s / 2.0);
    [cx - hw, cy - hh, cx + hw, cy + hh]
}

/// How well `d` continues a track last seen at `prev`: IoU of the boxes doubled in size, so a
/// face that moved between sparse samples still matches.
fn continuity(prev: &BoxF, d: &BoxF) -> f32 {
    iou(&scale_box(prev, 2.0), &scale_box(d, 2.0))
}

/// Chooses the primary face: the detection with the largest √area × score in the clip is the
/// anchor; from it the track extends both ways, taking in each frame the candidate with the best
/// √area × score × continuity (a candidate with no overlap is never taken).
/// `dets[i]` is `None` for frames the detector did not run on.
pub fn primary_track(dets: &[Option<Vec<Detection>>]) -> Vec<Option<Detection>> {
    let weight = |d: &Detection| area(&d.bbox).sqrt() * d.score;
    let mut chosen: Vec<Option<Detection>> = vec![None; dets.len()];
    let anchor = dets
        .iter()
        .enumerate()
        .flat_map(|(i, ds)| ds.iter().flatten().map(move |d| (i, d)))
        .max_by(|a, b| weight(a.1).total_cmp(&weight(b.1)));
    let Some((ai, anchor)) = anchor else { return chosen };
    chosen[ai] = Some(anchor.clone());
    for order in [Box::new(ai + 1..dets.len()) as Box<dyn Iterator<Item = usize>>, Box::new((0..ai).rev())] {
        let mut prev = anchor.bbox;
        for i in order {
            let best = dets[i]
                .iter()
                .flatten()
                .map(|d| (weight(d) * continuity(&prev, &d.bbox), d))
                .filter(|(w, _)| *w > 0.0)
                .max_by(|a, b| a.0.total_cmp(&b.0));
            if let Some((_, d)) = best {
                prev = d.bbox;
                chosen[i] = Some(d.clone());
            }
        }
    }
    chosen
}

fn lerp_box(a: &BoxF, b: &BoxF, t: f32) -> BoxF {
    std::array::from_fn(|k| a[k] + (b[k] - a[k]) * t)
}

/// Turns the primary track into per-frame boxes: detected frames keep their box, gaps are
/// interpolated linearly between the nearest detected frames and held at the ends; then centres
/// and sizes are smoothed with a centred moving average of `window` frames (1 = none).
pub fn fill_and_smooth(track: &[Option<Detection>], window: usize) -> Vec<TrackedFrame> {
    let known: Vec<usize> = (0..track.len()).filter(|&i| track[i].is_some()).collect();
    let mut frames: Vec<TrackedFrame> = (0..track.len())
        .map(|i| match &track[i] {
            Some(d) => TrackedFrame {
                bbox: Some(d.bbox),
                score: d.score,
                landmarks: d.landmarks,
                source: FaceSource::Detected,
            },
            None => {
                let before = known.iter().rev().find(|&&k| k < i).copied();
                let after = known.iter().find(|&&k| k > i).copied();
                let bbox = match (before, after) {
                    (Some(a), Some(b)) => {
                        let (ba, bb) = (track[a].as_ref().unwrap().bbox, track[b].as_ref().unwrap().bbox);
                        Some(lerp_box(&ba, &bb, (i - a) as f32 / (b - a) as f32))
                    }
                    (Some(a), None) | (None, Some(a)) => Some(track[a].as_ref().unwrap().bbox),
                    (None, None) => None,
                };
                let source = if bbox.is_some() { FaceSource::Interpolated } else { FaceSource::None };
                TrackedFrame { bbox, score: 0.0, landmarks: [[0.0; 2]; 5], source }
            }
        })
        .collect();
    if window > 1 && !known.is_empty() {
        let raw: Vec<BoxF> = frames.iter().map(|f| f.bbox.expect("filled")).collect();
        let half = window / 2;
        for (i, f) in frames.iter_mut().enumerate() {
            let (lo, hi) = (i.saturating_sub(half), (i + half).min(raw.len() - 1));
            let n = (hi - lo + 1) as f32;
            let mean: BoxF = std::array::from_fn(|k| raw[lo..=hi].iter().map(|b| b[k]).sum::<f32>() / n);
            f.bbox = Some(mean);
        }
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::face::det;

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
        let t = primary_track(&dets);
        assert_eq!(t[0].as_ref().unwrap().bbox[0], 0.0);
        assert!(t[1].is_none(), "the distractor never continues the track");
        assert_eq!(t[2].as_ref().unwrap().bbox[0], 20.0);
        assert!(t[3].is_none());
    }

    #[test]
    fn gaps_are_interpolated_and_ends_held() {
        let t = vec![None, Some(det([0.0, 0.0, 10.0, 10.0], 0.8)), None, Some(det([20.0, 0.0, 30.0, 10.0], 0.7)), None];
        let f = fill_and_smooth(&t, 1);
        let src: Vec<FaceSource> = f.iter().map(|x| x.source).collect();
        let (d, i) = (FaceSource::Detected, FaceSource::Interpolated);
        assert_eq!(src, vec![i, d, i, d, i]);
        assert_eq!(f[2].bbox.unwrap(), [10.0, 0.0, 20.0, 10.0]);
        assert_eq!(f[0].bbox.unwrap(), [0.0, 0.0, 10.0, 10.0]);
        assert_eq!(f[4].bbox.unwrap(), [20.0, 0.0, 30.0, 10.0]);
        assert_eq!(f[2].score, 0.0);
    }

    #[test]
    fn smoothing_averages_neighbours_and_no_detection_gives_none() {
        let t: Vec<Option<Detection>> =
            [0.0, 30.0, 0.0].iter().map(|&x| Some(det([x, 0.0, x + 10.0, 10.0], 0.9))).collect();
        let f = fill_and_smooth(&t, 3);
        assert_eq!(f[1].bbox.unwrap()[0], 10.0);
        assert_eq!(f[0].bbox.unwrap()[0], 15.0);
        let none = fill_and_smooth(&[None, None], 3);
        assert!(none.iter().all(|f| f.bbox.is_none() && f.source == FaceSource::None));
    }
}
