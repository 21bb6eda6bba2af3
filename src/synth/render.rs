//! Frame rendering for synthetic clips: real face photographs (scikit-image's public-domain
//! astronaut and LFW faces) moving and scaling over polarity-coloured scenes, with a
//! class-coloured ring around the face.

use std::path::Path;

use anyhow::{bail, Context, Result};
use image::{imageops, Rgb, RgbImage};
use rand::Rng;

use crate::assets::{self, Asset};
use crate::dataset::Polarity;

/// Box `[x1, y1, x2, y2]` in pixels.
use crate::geometry::BoxF;

/// A face photograph and where the face is in it.
pub(crate) struct FacePhoto {
    pub name: String,
    pub img: RgbImage,
    pub face: BoxF,
}

/// Face box of `astronaut.png` (512x512), the box CenterFace finds (docs/architecture.md §5).
const ASTRONAUT_FACE: BoxF = [181.5, 58.2, 269.9, 177.8];
/// Head crop of `astronaut.png` pasted into clips: the face plus hair and neck.
const ASTRONAUT_HEAD: (u32, u32, u32, u32) = (140, 10, 170, 220);

/// Reads a `.npy` array of shape (n, h, w) with dtype uint8 or float64 (0..1).
pub(crate) fn read_npy_stack(path: &Path) -> Result<(usize, usize, usize, Vec<u8>)> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        bail!("{}: not a .npy file", path.display());
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => bail!("{}: unsupported .npy version {v}", path.display()),
    };
    let header = std::str::from_utf8(bytes.get(start..start + hlen).context("short header")?)?;
    let shape_txt =
        header.split("'shape':").nth(1).and_then(|s| s.split(')').next()).context("no shape in .npy header")?;
    let dims: Vec<usize> =
        shape_txt.trim_start_matches([' ', '(']).split(',').filter_map(|d| d.trim().parse().ok()).collect();
    let [n, h, w] = dims[..] else { bail!("{}: expected a 3-d array, found shape {dims:?}", path.display()) };
    let data = &bytes[start + hlen..];
    let count = n * h * w;
    let pixels = if header.contains("'|u1'") {
        data.get(..count).context("truncated .npy data")?.to_vec()
    } else if header.contains("'<f8'") {
        let raw = data.get(..count * 8).context("truncated .npy data")?;
        raw.chunks_exact(8)
            .map(|c| (f64::from_le_bytes(c.try_into().expect("8 bytes")).clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect()
    } else {
        bail!("{}: unsupported dtype in header {header}", path.display());
    };
    Ok((n, h, w, pixels))
}

/// Loads the face photographs from the asset cache: the astronaut's head (and its mirror image)
/// and the first `lfw` LFW faces, upscaled and tinted to skin tones.
pub(crate) fn load_faces(lfw: usize) -> Result<Vec<FacePhoto>> {
    let astro = image::open(assets::path(Asset::Astronaut)?)?.to_rgb8();
    let (x, y, w, h) = ASTRONAUT_HEAD;
    let head = imageops::crop_imm(&astro, x, y, w, h).to_image();
    let face = [
        ASTRONAUT_FACE[0] - x as f32,
        ASTRONAUT_FACE[1] - y as f32,
        ASTRONAUT_FACE[2] - x as f32,
        ASTRONAUT_FACE[3] - y as f32,
    ];
    let mirrored = imageops::flip_horizontal(&head);
    let mface = [w as f32 - face[2], face[1], w as f32 - face[0], face[3]];
    let mut out = vec![
        FacePhoto { name: "astronaut".into(), img: head, face },
        FacePhoto { name: "astronaut-mirrored".into(), img: mirrored, face: mface },
    ];
    if lfw > 0 {
        let (n, fh, fw, px) = read_npy_stack(&assets::path(Asset::LfwSubset)?)?;
        // The first half of lfw_subset are faces; each fills its 25x25 crop. A few (turned or
        // low-contrast) score under 0.7 with CenterFace once upscaled, so they are left out:
        // the truth file would otherwise record faces no detector can be held to.
        const WEAK: [usize; 5] = [4, 9, 30, 39, 47];
        for i in (0..n / 2).filter(|i| !WEAK.contains(i)).take(lfw) {
            let grey = &px[i * fh * fw..(i + 1) * fh * fw];
            let small = RgbImage::from_fn(fw as u32, fh as u32, |x, y| {
                let v = grey[y as usize * fw + x as usize] as f32;
                Rgb([
                    (v * 1.0 + 30.0).min(255.0) as u8,
                    (v * 0.85 + 18.0).min(255.0) as u8,
                    (v * 0.72 + 10.0).min(255.0) as u8,
                ])
            });
            let scale = 6;
            let img = imageops::resize(&small, fw as u32 * scale, fh as u32 * scale, imageops::FilterType::CatmullRom);
            let s = scale as f32;
            out.push(FacePhoto {
                name: format!("lfw-{i}"),
                img,
                face: [1.5 * s, 1.5 * s, (fw as f32 - 1.5) * s, (fh as f32 - 1.0) * s],
            });
        }
    }
    Ok(out)
}

/// RGB colour from hue in degrees at full saturation and value `v`.
pub(crate) fn hue_rgb(hue: f32, v: f32) -> [u8; 3] {
    let h = hue.rem_euclid(360.0) / 60.0;
    let x = 1.0 - (h % 2.0 - 1.0).abs();
    let (r, g, b) = match h as u32 {
        0 => (1.0, x, 0.0),
        1 => (x, 1.0, 0.0),
        2 => (0.0, 1.0, x),
        3 => (0.0, x, 1.0),
        4 => (x, 0.0, 1.0),
        _ => (1.0, 0.0, x),
    };
    [(r * v * 255.0) as u8, (g * v * 255.0) as u8, (b * v * 255.0) as u8]
}

/// `c` faded toward mid grey: `128 + intensity · (c − 128)` per channel; 1 keeps `c`, 0 gives grey.
/// How a weak-intensity clip shows its label: the same hue, less of it.
pub(crate) fn fade(c: [u8; 3], intensity: f32) -> [u8; 3] {
    c.map(|v| (128.0 + intensity * (v as f32 - 128.0)).round() as u8)
}

/// Colour of the class ring: hues evenly spread over the labels.
pub(crate) fn class_colour(label: usize, n_labels: usize) -> [u8; 3] {
    hue_rgb(360.0 * label as f32 / n_labels as f32, 1.0)
}

/// Scene palette of a class (for datasets whose label only the scene shows): shades of its hue.
pub(crate) fn class_palette(label: usize, n_labels: usize) -> [[u8; 3]; 3] {
    let hue = 360.0 * label as f32 / n_labels as f32;
    [hue_rgb(hue, 0.9), hue_rgb(hue, 0.55), hue_rgb(hue + 12.0, 0.75)]
}

/// Scene palette of a polarity: warm and bright, grey, or cold and dark.
pub(crate) fn palette(p: Polarity) -> [[u8; 3]; 3] {
    match p {
        Polarity::Positive => [[250, 200, 60], [245, 130, 70], [255, 170, 190]],
        Polarity::Neutral => [[150, 150, 150], [190, 185, 175], [110, 110, 115]],
        Polarity::Negative => [[30, 45, 110], [70, 30, 90], [20, 70, 70]],
    }
}

/// A clip's background, wider than the frame so it can pan: palette gradient, a tinted
/// photograph texture and random blobs.
pub(crate) fn background(w: u32, h: u32, pal: [[u8; 3]; 3], texture: &RgbImage, rng: &mut impl Rng) -> RgbImage {
    let tex = imageops::resize(texture, w, h, imageops::FilterType::Triangle);
    let mut bg = RgbImage::from_fn(w, h, |x, y| {
        let t = (x as f32 / w as f32 + y as f32 / h as f32) / 2.0;
        let (a, b) = (pal[0], pal[1]);
        let g = tex.get_pixel(x, y)[0] as f32 / 255.0;
        let mix = |i: usize| ((a[i] as f32 * (1.0 - t) + b[i] as f32 * t) * (0.7 + 0.3 * g)).min(255.0) as u8;
        Rgb([mix(0), mix(1), mix(2)])
    });
    for _ in 0..rng.random_range(4..10) {
        let c = pal[rng.random_range(0..3)];
        let (cx, cy) = (rng.random_range(0..w) as f32, rng.random_range(0..h) as f32);
        let r = rng.random_range(h as f32 * 0.05..h as f32 * 0.2);
        fill_ellipse(&mut bg, cx, cy, r, r, c, 0.6);
    }
    bg
}

/// Blends an ellipse of colour `c` with opacity `alpha` into `img`.
pub(crate) fn fill_ellipse(img: &mut RgbImage, cx: f32, cy: f32, rx: f32, ry: f32, c: [u8; 3], alpha: f32) {
    let (w, h) = img.dimensions();
    let (x0, x1) = ((cx - rx).floor().max(0.0) as u32, ((cx + rx).ceil() as u32).min(w));
    let (y0, y1) = ((cy - ry).floor().max(0.0) as u32, ((cy + ry).ceil() as u32).min(h));
    for y in y0..y1 {
        for x in x0..x1 {
            let (dx, dy) = ((x as f32 + 0.5 - cx) / rx, (y as f32 + 0.5 - cy) / ry);
            if dx * dx + dy * dy <= 1.0 {
                let p = img.get_pixel_mut(x, y);
                for i in 0..3 {
                    p[i] = (p[i] as f32 * (1.0 - alpha) + c[i] as f32 * alpha) as u8;
                }
            }
        }
    }
}

/// Draws a ring of colour `c` around `b` (scaled by 1.1) of the given thickness.
fn ring(img: &mut RgbImage, b: BoxF, c: [u8; 3], thickness: f32) {
    let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
    let (rx, ry) = ((b[2] - b[0]) * 0.55 + thickness, (b[3] - b[1]) * 0.55 + thickness);
    let (w, h) = img.dimensions();
    let (x0, x1) = ((cx - rx).floor().max(0.0) as u32, ((cx + rx).ceil() as u32).min(w));
    let (y0, y1) = ((cy - ry).floor().max(0.0) as u32, ((cy + ry).ceil() as u32).min(h));
    let inner = 1.0 - thickness / rx.min(ry);
    for y in y0..y1 {
        for x in x0..x1 {
            let (dx, dy) = ((x as f32 + 0.5 - cx) / rx, (y as f32 + 0.5 - cy) / ry);
            let d = (dx * dx + dy * dy).sqrt();
            if d <= 1.0 && d >= inner {
                img.put_pixel(x, y, Rgb(c));
            }
        }
    }
}

/// Pastes `photo` scaled so that its face box becomes `face_h` pixels tall with its centre at
/// `(cx, cy)`, feathering the photo's edges; draws the class ring; returns the face box.
pub(crate) fn paste_face(
    frame: &mut RgbImage,
    photo: &FacePhoto,
    cx: f32,
    cy: f32,
    face_h: f32,
    ring_colour: Option<[u8; 3]>,
) -> BoxF {
    let fb = photo.face;
    let scale = face_h / (fb[3] - fb[1]);
    let (pw, ph) = (
        (photo.img.width() as f32 * scale).round().max(1.0) as u32,
        (photo.img.height() as f32 * scale).round().max(1.0) as u32,
    );
    let scaled = imageops::resize(&photo.img, pw, ph, imageops::FilterType::Triangle);
    let fcx = (fb[0] + fb[2]) / 2.0 * scale;
    let fcy = (fb[1] + fb[3]) / 2.0 * scale;
    let (ox, oy) = (cx - fcx, cy - fcy);
    let (fw, fh) = frame.dimensions();
    let feather = (pw.min(ph) as f32 * 0.12).max(1.0);
    for y in 0..ph {
        let ty = oy + y as f32;
        if ty < 0.0 || ty >= fh as f32 {
            continue;
        }
        for x in 0..pw {
            let tx = ox + x as f32;
            if tx < 0.0 || tx >= fw as f32 {
                continue;
            }
            let edge = (x as f32).min(y as f32).min((pw - 1 - x) as f32).min((ph - 1 - y) as f32);
            let a = (edge / feather).min(1.0);
            let s = scaled.get_pixel(x, y);
            let d = frame.get_pixel_mut(tx as u32, ty as u32);
            for i in 0..3 {
                d[i] = (d[i] as f32 * (1.0 - a) + s[i] as f32 * a) as u8;
            }
        }
    }
    let b = [ox + fb[0] * scale, oy + fb[1] * scale, ox + fb[2] * scale, oy + fb[3] * scale];
    if let Some(c) = ring_colour {
        ring(frame, b, c, (face_h * 0.06).max(2.0));
    }
    b
}

/// Clips a box to the frame; `None` when less than half of it is visible.
pub(crate) fn clip_box(b: BoxF, w: u32, h: u32) -> Option<BoxF> {
    clip_box_to(b, [0.0, 0.0, w as f32, h as f32])
}

/// Clips a box to the region `r`; `None` when less than half of it is visible there.
pub(crate) fn clip_box_to(b: BoxF, r: BoxF) -> Option<BoxF> {
    let c = [b[0].max(r[0]), b[1].max(r[1]), b[2].min(r[2]), b[3].min(r[3])];
    let area = |b: BoxF| (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0);
    (area(c) >= 0.5 * area(b)).then_some(c)
}

/// Black bars of `bar` rows at the top and bottom of the frame.
pub(crate) fn letterbox(frame: &mut RgbImage, bar: u32) {
    let (w, h) = frame.dimensions();
    for y in (0..bar.min(h)).chain(h.saturating_sub(bar)..h) {
        for x in 0..w {
            frame.put_pixel(x, y, Rgb([0, 0, 0]));
        }
    }
}

/// Low light: every channel at 35 % of its value, plus grain (independent uniform noise of up
/// to ±14 levels per channel) drawn from `seed`.
pub(crate) fn darken_with_grain(frame: &mut RgbImage, seed: u64) {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for v in frame.iter_mut() {
        let noisy = *v as f32 * 0.35 + rng.random_range(-14.0f32..=14.0);
        *v = noisy.clamp(0.0, 255.0) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_float_and_uint8() {
        let dir = tempfile::tempdir().unwrap();
        let mk = |descr: &str, data: &[u8]| {
            let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (2, 1, 2), }}");
            while (10 + header.len() + 1) % 64 != 0 {
                header.push(' ');
            }
            header.push('\n');
            let mut b = b"\x93NUMPY\x01\x00".to_vec();
            b.extend((header.len() as u16).to_le_bytes());
            b.extend(header.as_bytes());
            b.extend(data);
            b
        };
        let p = dir.path().join("a.npy");
        std::fs::write(&p, mk("|u1", &[1, 2, 3, 4])).unwrap();
        assert_eq!(read_npy_stack(&p).unwrap(), (2, 1, 2, vec![1, 2, 3, 4]));
        let f: Vec<u8> = [0.0f64, 1.0, 0.5, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&p, mk("<f8", &f)).unwrap();
        assert_eq!(read_npy_stack(&p).unwrap().3, vec![0, 255, 128, 255]);
        std::fs::write(&p, b"junk").unwrap();
        assert!(read_npy_stack(&p).unwrap_err().to_string().contains("a.npy"));
    }

    #[test]
    fn pasted_face_box_lands_where_asked() {
        let photo = FacePhoto {
            name: "t".into(),
            img: RgbImage::from_pixel(40, 60, Rgb([255, 255, 255])),
            face: [10.0, 10.0, 30.0, 50.0],
        };
        let mut frame = RgbImage::new(200, 100);
        let b = paste_face(&mut frame, &photo, 100.0, 50.0, 40.0, None);
        assert_eq!(b, [90.0, 30.0, 110.0, 70.0]);
        assert_eq!(frame.get_pixel(100, 50)[0], 255);
        assert_eq!(frame.get_pixel(5, 5)[0], 0);
    }

    #[test]
    fn clip_box_drops_mostly_hidden_faces() {
        assert_eq!(clip_box([-10.0, 0.0, 10.0, 10.0], 100, 100), Some([0.0, 0.0, 10.0, 10.0]));
        assert_eq!(clip_box([-15.0, 0.0, 5.0, 10.0], 100, 100), None);
        assert_eq!(clip_box_to([0.0, 5.0, 10.0, 20.0], [0.0, 10.0, 100.0, 90.0]), Some([0.0, 10.0, 10.0, 20.0]));
    }

    #[test]
    fn letterbox_and_low_light_change_what_they_should() {
        let mut f = RgbImage::from_pixel(4, 8, Rgb([200, 100, 50]));
        letterbox(&mut f, 1);
        assert_eq!(f.get_pixel(2, 0), &Rgb([0, 0, 0]));
        assert_eq!(f.get_pixel(2, 7), &Rgb([0, 0, 0]));
        assert_eq!(f.get_pixel(2, 4), &Rgb([200, 100, 50]));
        let mut d = RgbImage::from_pixel(16, 16, Rgb([200, 200, 200]));
        darken_with_grain(&mut d, 3);
        let mean = d.iter().map(|&v| v as f32).sum::<f32>() / d.len() as f32;
        assert!((mean - 70.0).abs() < 3.0, "{mean}");
        assert!(d.iter().any(|&v| v != d.as_raw()[0]), "grain varies");
        let mut again = RgbImage::from_pixel(16, 16, Rgb([200, 200, 200]));
        darken_with_grain(&mut again, 3);
        assert_eq!(d, again, "the same seed, the same grain");
    }

    #[test]
    fn class_colours_are_distinct() {
        let c: Vec<_> = (0..11).map(|l| class_colour(l, 11)).collect();
        for i in 0..11 {
            for j in 0..i {
                assert_ne!(c[i], c[j]);
            }
        }
    }

    #[test]
    fn fading_moves_a_colour_toward_grey_in_proportion() {
        let c = [255, 0, 128];
        assert_eq!(fade(c, 1.0), c);
        assert_eq!(fade(c, 0.5), [192, 64, 128], "128 ± 63.5 rounds away from zero");
        assert_eq!(fade(c, 0.0), [128; 3]);
    }
}
