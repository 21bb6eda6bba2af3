//! Image geometry, below every stage: boxes, resizing, square face crops with a margin, the
//! whole frame fitted into a square scene image, and the face region masked out of the scene.

use std::cell::RefCell;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{imageops, Rgb, RgbImage};

use crate::text_enum::text_enum;

/// A box `[x1, y1, x2, y2]` in pixels.
pub(crate) type BoxF = [f32; 4];

/// `b` scaled by `s` about its centre.
pub fn scale_box(b: &BoxF, s: f32) -> BoxF {
    let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
    let (hw, hh) = ((b[2] - b[0]) * s / 2.0, (b[3] - b[1]) * s / 2.0);
    [cx - hw, cy - hh, cx + hw, cy + hh]
}

/// CLIP's mean colour (0.48145466, 0.4578275, 0.40821073) in 0–255: what the masked face
/// region is filled with, so the scene stream sees "nothing" there after normalisation.
pub const CLIP_MEAN_RGB: [u8; 3] = [123, 117, 104];

text_enum! {
    /// How the face is removed from the scene frame.
    #[derive(clap::ValueEnum)]
    pub enum MaskMode("mask mode") {
        /// Filled with the CLIP mean colour.
        Fill = "fill",
        /// Blurred beyond recognition.
        Blur = "blur",
        /// Not masked (for ablations).
        None = "none",
    }
}

text_enum! {
    /// How the whole frame becomes a square scene image.
    #[derive(clap::ValueEnum)]
    pub enum SceneFit("scene fit") {
        /// Keep the aspect ratio, pad with black.
        Letterbox = "letterbox",
        /// Stretch to the square.
        Stretch = "stretch",
    }
}

/// Resizes `src` (or the `crop` = `[left, top, width, height]` part of it, in source pixels) to
/// `w`x`h` with a bilinear filter widened for downscaling (SIMD, `fast_image_resize`).
pub(crate) fn resize(src: &RgbImage, crop: Option<[f64; 4]>, w: u32, h: u32) -> RgbImage {
    let mut out = vec![0u8; (w * h * 3) as usize];
    resize_into(src.as_raw(), src.width(), src.height(), crop, w, h, &mut out);
    RgbImage::from_raw(w, h, out).expect("buffer matches size")
}

/// [`resize`] of an RGB buffer `raw` of `src_w`x`src_h` pixels, read in place, into `out`, a
/// `w`x`h` RGB buffer the caller keeps (the loader reuses one per stream, so no frame allocates).
pub(crate) fn resize_into(raw: &[u8], src_w: u32, src_h: u32, crop: Option<[f64; 4]>, w: u32, h: u32, out: &mut [u8]) {
    thread_local! {
        static RESIZER: RefCell<Resizer> = RefCell::new(Resizer::new());
    }
    let view = ImageRef::new(src_w, src_h, raw, PixelType::U8x3).expect("RGB buffer matches its size");
    let mut dst = Image::from_slice_u8(w, h, out, PixelType::U8x3).expect("RGB buffer matches its size");
    let mut opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    if let Some([l, t, cw, ch]) = crop {
        opts = opts.crop(l, t, cw, ch);
    }
    RESIZER.with(|r| r.borrow_mut().resize(&view, &mut dst, &opts)).expect("same pixel types, valid crop");
}

/// Square box around `b`'s centre whose side is the longer side of `b` times `margin`.
pub(crate) fn square_box(b: &BoxF, margin: f32) -> BoxF {
    let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
    let half = (b[2] - b[0]).max(b[3] - b[1]) * margin / 2.0;
    [cx - half, cy - half, cx + half, cy + half]
}

/// Square box of side min(w, h) at the frame centre.
pub(crate) fn centre_box(w: u32, h: u32) -> BoxF {
    let s = w.min(h) as f32;
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    [cx - s / 2.0, cy - s / 2.0, cx + s / 2.0, cy + s / 2.0]
}

/// Cuts `region` (may extend past the frame; outside is black) and resizes it to `size`².
pub(crate) fn crop_resize(frame: &RgbImage, region: &BoxF, size: u32) -> RgbImage {
    let (w, h) = frame.dimensions();
    if region[0] >= 0.0
        && region[1] >= 0.0
        && region[2] <= w as f32
        && region[3] <= h as f32
        && region[2] > region[0]
        && region[3] > region[1]
    {
        let crop = [region[0] as f64, region[1] as f64, (region[2] - region[0]) as f64, (region[3] - region[1]) as f64];
        return resize(frame, Some(crop), size, size);
    }
    let x0 = region[0].floor() as i64;
    let y0 = region[1].floor() as i64;
    let side_w = ((region[2] - region[0]).round() as i64).max(1);
    let side_h = ((region[3] - region[1]).round() as i64).max(1);
    let mut canvas = RgbImage::new(side_w as u32, side_h as u32);
    let (ix0, iy0) = (x0.max(0), y0.max(0));
    let (ix1, iy1) = ((x0 + side_w).min(w as i64), (y0 + side_h).min(h as i64));
    if ix1 > ix0 && iy1 > iy0 {
        let part = imageops::crop_imm(frame, ix0 as u32, iy0 as u32, (ix1 - ix0) as u32, (iy1 - iy0) as u32);
        imageops::replace(&mut canvas, &*part, ix0 - x0, iy0 - y0);
    }
    if canvas.dimensions() == (size, size) {
        canvas
    } else {
        resize(&canvas, None, size, size)
    }
}

/// Maps frame pixels to scene pixels: `scene = frame * scale + offset`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SceneTransform {
    pub sx: f32,
    pub sy: f32,
    pub ox: f32,
    pub oy: f32,
}

impl SceneTransform {
    pub fn apply(&self, b: &BoxF) -> BoxF {
        [b[0] * self.sx + self.ox, b[1] * self.sy + self.oy, b[2] * self.sx + self.ox, b[3] * self.sy + self.oy]
    }
}

/// Fits the frame into a `size`² scene image.
pub fn fit_scene(frame: &RgbImage, size: u32, fit: SceneFit) -> (RgbImage, SceneTransform) {
    let (w, h) = frame.dimensions();
    match fit {
        SceneFit::Stretch => {
            let img = resize(frame, None, size, size);
            (img, SceneTransform { sx: size as f32 / w as f32, sy: size as f32 / h as f32, ox: 0.0, oy: 0.0 })
        }
        SceneFit::Letterbox => {
            let s = size as f32 / w.max(h) as f32;
            let (nw, nh) =
                (((w as f32 * s).round() as u32).clamp(1, size), ((h as f32 * s).round() as u32).clamp(1, size));
            let small = resize(frame, None, nw, nh);
            let mut canvas = RgbImage::new(size, size);
            let (ox, oy) = ((size - nw) / 2, (size - nh) / 2);
            imageops::replace(&mut canvas, &small, ox as i64, oy as i64);
            let t = SceneTransform { sx: nw as f32 / w as f32, sy: nh as f32 / h as f32, ox: ox as f32, oy: oy as f32 };
            (canvas, t)
        }
    }
}

/// Integer pixel rectangle of `b` inside a `w`x`h` image (outward rounding), if not empty.
pub(crate) fn pixel_rect(b: &BoxF, w: u32, h: u32) -> Option<(u32, u32, u32, u32)> {
    let x0 = b[0].floor().clamp(0.0, w as f32) as u32;
    let y0 = b[1].floor().clamp(0.0, h as f32) as u32;
    let x1 = b[2].ceil().clamp(0.0, w as f32) as u32;
    let y1 = b[3].ceil().clamp(0.0, h as f32) as u32;
    (x1 > x0 && y1 > y0).then_some((x0, y0, x1 - x0, y1 - y0))
}

/// Removes the face from a scene image: the face box (scene pixels) scaled by `mask_scale`.
pub(crate) fn mask_face(scene: &mut RgbImage, face: &BoxF, mask_scale: f32, mode: MaskMode) {
    let (w, h) = scene.dimensions();
    let Some((x, y, rw, rh)) = pixel_rect(&scale_box(face, mask_scale), w, h) else { return };
    match mode {
        MaskMode::None => {}
        MaskMode::Fill => {
            for yy in y..y + rh {
                for xx in x..x + rw {
                    scene.put_pixel(xx, yy, Rgb(CLIP_MEAN_RGB));
                }
            }
        }
        MaskMode::Blur => {
            // Shrink to a 4x4 mosaic and blow it up again: no facial detail survives.
            let region = imageops::crop_imm(scene, x, y, rw, rh).to_image();
            let tiny = imageops::resize(&region, 4, 4, imageops::FilterType::Triangle);
            let back = imageops::resize(&tiny, rw, rh, imageops::FilterType::Triangle);
            imageops::replace(scene, &back, x as i64, y as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn square_box_uses_long_side_and_margin() {
        assert_eq!(square_box(&[10.0, 20.0, 30.0, 60.0], 1.25), [-5.0, 15.0, 45.0, 65.0]);
    }

    #[test]
    fn resize_and_crop_keep_content() {
        let frame = RgbImage::from_fn(100, 50, |x, _| if x < 50 { Rgb([255, 0, 0]) } else { Rgb([0, 0, 255]) });
        let small = resize(&frame, None, 20, 10);
        assert_eq!(small.get_pixel(2, 5), &Rgb([255, 0, 0]));
        assert_eq!(small.get_pixel(17, 5), &Rgb([0, 0, 255]));
        let right = crop_resize(&frame, &[60.0, 10.0, 90.0, 40.0], 8);
        assert!(right.pixels().all(|p| *p == Rgb([0, 0, 255])));
    }

    #[test]
    fn crop_outside_the_frame_is_black() {
        let frame = RgbImage::from_pixel(10, 10, Rgb([200, 100, 50]));
        let c = crop_resize(&frame, &[-5.0, -5.0, 5.0, 5.0], 10);
        assert_eq!(c.get_pixel(0, 0), &Rgb([0, 0, 0]));
        assert_eq!(c.get_pixel(9, 9), &Rgb([200, 100, 50]));
    }

    #[test]
    fn letterbox_keeps_aspect_and_maps_boxes() {
        let frame = RgbImage::from_pixel(400, 200, Rgb([255, 255, 255]));
        let (scene, t) = fit_scene(&frame, 200, SceneFit::Letterbox);
        assert_eq!(scene.get_pixel(100, 10), &Rgb([0, 0, 0]), "top bar");
        assert_eq!(scene.get_pixel(100, 100), &Rgb([255, 255, 255]));
        assert_eq!(t.apply(&[0.0, 0.0, 400.0, 200.0]), [0.0, 50.0, 200.0, 150.0]);
    }

    #[test]
    fn mask_fills_scaled_face_box() {
        let mut scene = RgbImage::from_pixel(100, 100, Rgb([0, 0, 0]));
        mask_face(&mut scene, &[40.0, 40.0, 60.0, 60.0], 1.5, MaskMode::Fill);
        assert_eq!(scene.get_pixel(36, 36), &Rgb(CLIP_MEAN_RGB));
        assert_eq!(scene.get_pixel(34, 50), &Rgb([0, 0, 0]));
        let mut s2 = RgbImage::from_fn(100, 100, |x, _| Rgb([(x * 2) as u8, 0, 0]));
        mask_face(&mut s2, &[0.0, 0.0, 100.0, 100.0], 1.0, MaskMode::Blur);
        assert!(s2.get_pixel(1, 50)[0] > 10, "the left edge takes its tile's average: blurred");
    }
}
