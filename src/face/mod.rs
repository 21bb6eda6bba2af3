//! Faces: the detector trait and its CenterFace implementation (ort), self-checking sparse
//! detection (which frames to detect) and primary-face tracking; boxes and crop geometry are
//! `src/geometry.rs`.

#[cfg(feature = "media")]
pub(crate) mod centerface;
#[cfg(feature = "media")]
pub mod onnx_patch;
pub(crate) mod refine;
pub mod track;

use anyhow::Result;
use image::RgbImage;

use crate::geometry::BoxF;

/// One detected face in frame pixels.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Detection {
    pub bbox: BoxF,
    pub score: f32,
    /// Eyes, nose, mouth corners as (x, y).
    pub landmarks: [[f32; 2]; 5],
}

impl Detection {
    /// The same face in an image scaled by `sx` horizontally and `sy` vertically.
    pub(crate) fn scaled(mut self, sx: f32, sy: f32) -> Detection {
        self.bbox = [self.bbox[0] * sx, self.bbox[1] * sy, self.bbox[2] * sx, self.bbox[3] * sy];
        for l in &mut self.landmarks {
            *l = [l[0] * sx, l[1] * sy];
        }
        self
    }

    /// The same face with the image's origin moved to (-`dx`, -`dy`): a detection in a window
    /// whose corner lies at (`dx`, `dy`) of the whole image, in the whole image's pixels.
    pub(crate) fn translated(mut self, dx: f32, dy: f32) -> Detection {
        self.bbox = [self.bbox[0] + dx, self.bbox[1] + dy, self.bbox[2] + dx, self.bbox[3] + dy];
        for l in &mut self.landmarks {
            *l = [l[0] + dx, l[1] + dy];
        }
        self
    }
}

/// A face detector. One instance per worker thread; `detect` takes the frames of one clip (CenterFace
/// runs them through the network one at a time).
pub(crate) trait Detector: Send {
    /// Faces in each frame (all frames the same size), in frame pixels, best score first; the
    /// frames are resized so their long side is about `long_side` for the network.
    fn detect(&mut self, frames: &[&RgbImage], long_side: u32) -> Result<Vec<Vec<Detection>>>;
}

pub(crate) fn area(b: &BoxF) -> f32 {
    (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0)
}

/// Intersection over union of two boxes.
pub fn iou(a: &BoxF, b: &BoxF) -> f32 {
    let inter = area(&[a[0].max(b[0]), a[1].max(b[1]), a[2].min(b[2]), a[3].min(b[3])]);
    let union = area(a) + area(b) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// Greedy non-maximum suppression: keeps the best-scoring boxes, dropping any with IoU above
/// `threshold` with one already kept. Returns detections sorted by score.
pub(crate) fn nms(mut dets: Vec<Detection>, threshold: f32) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::new();
    for d in dets {
        if kept.iter().all(|k| iou(&k.bbox, &d.bbox) <= threshold) {
            kept.push(d);
        }
    }
    kept
}

/// A detection without landmarks, for tests.
#[cfg(test)]
pub(crate) fn det(b: BoxF, score: f32) -> Detection {
    Detection { bbox: b, score, landmarks: [[0.0; 2]; 5] }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_values() {
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[0.0, 0.0, 10.0, 10.0]), 1.0);
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[10.0, 10.0, 20.0, 20.0]), 0.0);
        assert!((iou(&[0.0, 0.0, 10.0, 10.0], &[5.0, 0.0, 15.0, 10.0]) - 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn nms_keeps_best_of_overlapping() {
        let kept = nms(
            vec![
                det([0.0, 0.0, 10.0, 10.0], 0.6),
                det([1.0, 1.0, 11.0, 11.0], 0.9),
                det([50.0, 50.0, 60.0, 60.0], 0.7),
            ],
            0.3,
        );
        let scores: Vec<f32> = kept.iter().map(|d| d.score).collect();
        assert_eq!(scores, vec![0.9, 0.7]);
    }
}
