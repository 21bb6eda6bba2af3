//! FineCLIPER's landmark stream (`model.landmarks`), our substitute for the paper's 68-point
//! landmark and face-parsing inputs: the detector's five points (eyes, nose, mouth corners) of
//! each stored frame, drawn onto its face crop before augmentation, so that the crop, flip and
//! rotation move them with the face.

use crate::face_source::FaceSource;
use crate::geometry::square_box;
use crate::shard::FrameTrack;

/// Five `[x, y]` points.
pub type Points = [[f32; 2]; 5];

/// The colour the points are drawn in (green, as landmark plots usually are).
const INK: [u8; 3] = [0, 255, 0];

/// The five points of each stored frame (box and points in frame pixels, as the shard holds
/// them) in the pixels of its face crop of side `face_size`, cut with `margin` around the
/// box. A frame where the detector found the face has its own points; any other frame takes
/// those of the nearest such frame (the crop follows the face box, so points in crop pixels
/// carry over); `None` everywhere when no frame has them.
pub fn crop_points(track: &[FrameTrack], margin: f32, face_size: u32) -> Vec<Option<Points>> {
    let own: Vec<Option<Points>> = track
        .iter()
        .map(|t| {
            if t.source != FaceSource::Detected || t.bbox.iter().any(|v| !v.is_finite()) {
                return None;
            }
            let r = square_box(&t.bbox, margin);
            let scale = face_size as f32 / (r[2] - r[0]);
            Some(t.landmarks.map(|[x, y]| [(x - r[0]) * scale, (y - r[1]) * scale]))
        })
        .collect();
    let have: Vec<usize> = (0..own.len()).filter(|&i| own[i].is_some()).collect();
    (0..own.len())
        .map(|i| {
            let nearest = have.iter().min_by_key(|&&j| j.abs_diff(i))?;
            own[*nearest]
        })
        .collect()
}

/// Draws `points` onto the RGB frame `frame` of side `side` as filled discs of radius
/// `side / 56` (at least 1 px); parts outside the frame are clipped.
pub(crate) fn draw(frame: &mut [u8], side: u32, points: &Points) {
    let r = (side as f32 / 56.0).round().max(1.0);
    let n = side as i64;
    for &[x, y] in points {
        let (x0, x1) = ((x - r).floor() as i64, (x + r).ceil() as i64);
        let (y0, y1) = ((y - r).floor() as i64, (y + r).ceil() as i64);
        for py in y0.max(0)..=y1.min(n - 1) {
            for px in x0.max(0)..=x1.min(n - 1) {
                let (dx, dy) = (px as f32 + 0.5 - x, py as f32 + 0.5 - y);
                if dx * dx + dy * dy <= r * r {
                    let at = ((py * n + px) * 3) as usize;
                    frame[at..at + 3].copy_from_slice(&INK);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::geometry::BoxF;

    const DETECTED: FaceSource = FaceSource::Detected;
    const INTERPOLATED: FaceSource = FaceSource::Interpolated;

    fn frame(bbox: BoxF, landmarks: Points, source: FaceSource) -> FrameTrack {
        FrameTrack { bbox, landmarks, source }
    }

    /// A box of side 100 at (100, 50) cut with margin 1.2 is a 120 px square from (90, 40); at
    /// face size 60 a point scales by ½ from that corner. Frames without their own points take
    /// the nearest frame's (the earlier one on a tie).
    #[test]
    fn points_map_into_the_crop_and_fill_from_the_nearest_detection() {
        let b = [100.0, 50.0, 200.0, 150.0];
        let p: Points = [[150.0, 100.0], [90.0, 40.0], [210.0, 160.0], [120.0, 80.0], [180.0, 80.0]];
        let moved: Points = p.map(|[x, y]| [x + 10.0, y]);
        let b2 = [110.0, 50.0, 210.0, 150.0];
        let track = [
            frame(b, [[0.0; 2]; 5], INTERPOLATED),
            frame(b, p, DETECTED),
            frame(b, p, INTERPOLATED),
            frame(b2, moved, DETECTED),
        ];
        let got = crop_points(&track, 1.2, 60);
        let want = [[30.0, 30.0], [0.0, 0.0], [60.0, 60.0], [15.0, 20.0], [45.0, 20.0]];
        assert_eq!(got.len(), 4);
        for g in &got {
            let g = g.expect("every frame has points");
            let off = g.iter().flatten().zip(want.iter().flatten()).map(|(a, b): (&f32, &f32)| (a - b).abs());
            assert!(off.fold(0.0, f32::max) < 1e-4, "the moved face's points are where they were in its crop: {got:?}");
        }
        let none = [frame(b, p, INTERPOLATED), frame([f32::NAN; 4], p, DETECTED)];
        assert_eq!(crop_points(&none, 1.2, 60), vec![None, None]);
    }

    /// A disc of radius 2 (side 112) around each point, nothing elsewhere, clipped at the edge.
    #[test]
    fn discs_are_drawn_around_each_point_only() {
        let side = 112u32;
        let mut frame = vec![7u8; (side * side * 3) as usize];
        let p: Points = [[20.0, 30.0], [0.0, 0.0], [111.5, 111.5], [60.0, 60.0], [60.0, 60.0]];
        draw(&mut frame, side, &p);
        let at = |x: usize, y: usize| &frame[(y * side as usize + x) * 3..][..3];
        assert_eq!(at(20, 30), INK);
        assert_eq!(at(18, 29), INK, "within the radius");
        assert_eq!(at(23, 30), [7; 3], "outside it");
        assert_eq!((at(0, 0), at(111, 111)), (&INK[..], &INK[..]), "clipped at the edges");
        let inked = frame.chunks_exact(3).filter(|px| *px == INK).count();
        assert!((25..=60).contains(&inked), "four small discs, not more: {inked}");
    }
}
