//! Shot boundaries among a clip's stored frames: a cut lies between two neighbouring stored
//! frames whose colour histograms (taken on a coarse grid of pixels, so about 2,300 samples a
//! frame) differ by more than `cut_threshold`. A global histogram hardly changes when a face or
//! the camera moves, and changes a lot when the shot changes.

use image::RgbImage;

/// Bins per colour channel.
const BINS: usize = 16;
/// Pixels sampled along the long side of a frame.
const GRID_LONG: u32 = 64;

/// The size of the thumbnail a frame of `w` × `h` is reduced to for its histogram: long side
/// 64 pixels (the histogram then takes every pixel).
pub(crate) fn thumbnail_size(w: u32, h: u32) -> (u32, u32) {
    let scale = GRID_LONG as f32 / w.max(h) as f32;
    (((w as f32 * scale).round() as u32).max(1), ((h as f32 * scale).round() as u32).max(1))
}

/// Normalised per-channel colour histograms of a frame, from a grid of about 64 × 36 pixels.
pub(crate) fn histogram(img: &RgbImage) -> [[f32; BINS]; 3] {
    let (w, h) = img.dimensions();
    let step = (w.max(h) / GRID_LONG).max(1);
    let mut hist = [[0f32; BINS]; 3];
    let mut n = 0f32;
    for y in (step / 2..h).step_by(step as usize) {
        for x in (step / 2..w).step_by(step as usize) {
            let p = img.get_pixel(x, y);
            for c in 0..3 {
                hist[c][p[c] as usize * BINS / 256] += 1.0;
            }
            n += 1.0;
        }
    }
    for ch in hist.iter_mut() {
        ch.iter_mut().for_each(|v| *v /= n.max(1.0));
    }
    hist
}

/// Histogram distance in 0..=1: half the L1 distance, averaged over the channels.
pub(crate) fn distance(a: &[[f32; BINS]; 3], b: &[[f32; BINS]; 3]) -> f32 {
    let l1: f32 = a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).sum();
    l1 / 6.0
}

/// Shot number of each stored frame (`frames[i]` is stored frame `i`), starting at 0 and going
/// up by one at each cut. `threshold` 0 finds no cuts.
pub(crate) fn shots(frames: &[&RgbImage], threshold: f32) -> Vec<usize> {
    let mut out = Vec::with_capacity(frames.len());
    let mut shot = 0;
    let mut prev: Option<[[f32; BINS]; 3]> = None;
    for f in frames {
        let h = histogram(f);
        if let Some(p) = &prev {
            if threshold > 0.0 && distance(p, &h) > threshold {
                shot += 1;
            }
        }
        out.push(shot);
        prev = Some(h);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    /// A two-tone frame: left part colour `a`, the rest `b`, split at `split` of the width.
    fn frame(a: [u8; 3], b: [u8; 3], split: f32) -> RgbImage {
        RgbImage::from_fn(320, 180, |x, _| if (x as f32) < 320.0 * split { Rgb(a) } else { Rgb(b) })
    }

    #[test]
    fn moving_content_is_one_shot_and_a_new_scene_is_a_cut() {
        let (red, blue, green) = ([200, 30, 30], [30, 30, 200], [30, 200, 30]);
        // The red region grows a little from frame to frame (motion), then the scene changes.
        let f = [frame(red, blue, 0.3), frame(red, blue, 0.35), frame(red, blue, 0.4), frame(green, blue, 0.9)];
        let refs: Vec<&RgbImage> = f.iter().collect();
        assert_eq!(shots(&refs, 0.4), vec![0, 0, 0, 1]);
        assert_eq!(shots(&refs, 0.0), vec![0, 0, 0, 0], "threshold 0: no cut detection");
        assert!(distance(&histogram(&f[0]), &histogram(&f[0])) < 1e-6);
        let d = distance(&histogram(&f[2]), &histogram(&f[3]));
        assert!(d > 0.5 && d <= 1.0, "{d}");
    }
}
