//! Pixels on the device. The loader hands over uint8 frames `[B, T, S, S, 3]` (cropped,
//! resized, flipped, channels last as decoded) and each clip's colour jitter; they are uploaded
//! as uint8 (a quarter of f32's bytes), put channels first, jittered and CLIP-normalised here,
//! where the model runs, so the host spends no time on the transpose.

use anyhow::{ensure, Result};
use candle_core::{DType, Device, Tensor, D};

use super::config::Normalise;

/// CLIP's normalisation constants (RGB, on 0–1 values).
pub(crate) const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub(crate) const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// Rec. 601 luma weights, as torchvision's `rgb_to_grayscale`.
const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// A clip's colour jitter: brightness, contrast, saturation factors (1, 1, 1: none).
pub(crate) type Colour = [f32; 3];

/// `pixels` uint8 `[B, T, S, S, 3]` → f32 `[B, T, 3, S, S]` on 0–1, clip `b` jittered by `colour[b]`
/// (torchvision's order: brightness, contrast about the frame's mean grey, saturation about
/// each pixel's grey, then clamped to 0–1), then CLIP-normalised with `Normalise::Clip`. Clips
/// without jitter get exactly `(v / 255 − mean) / std` (or `v / 255`).
pub(crate) fn normalise(pixels: &Tensor, colour: &[Colour], mode: Normalise) -> Result<Tensor> {
    let (b, _, _, _, c) = pixels.dims5()?;
    ensure!(c == 3 && colour.len() == b, "pixels {:?} with {} colour draws", pixels.dims(), colour.len());
    let dev = pixels.device();
    let unit = pixels.permute((0, 1, 4, 2, 3))?.to_dtype(DType::F32)?.broadcast_div(&Tensor::new(255f32, dev)?)?;
    let (mean, std) = (channel(&CLIP_MEAN, dev)?, channel(&CLIP_STD, dev)?);
    let plain = |u: &Tensor| -> Result<Tensor> {
        match mode {
            Normalise::Clip => Ok(u.broadcast_sub(&mean)?.broadcast_div(&std)?),
            Normalise::Unit => Ok(u.clone()),
        }
    };
    if colour.iter().all(|&f| f == [1.0; 3]) {
        return plain(&unit);
    }
    let clips = (0..b)
        .map(|i| {
            let u = unit.narrow(0, i, 1)?;
            if colour[i] == [1.0; 3] {
                plain(&u)
            } else {
                plain(&jitter(&u, colour[i])?)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::cat(&clips, 0)?)
}

/// `[1, 1, 3, 1, 1]` per-channel values.
fn channel(v: &[f32; 3], dev: &Device) -> Result<Tensor> {
    Ok(Tensor::new(v, dev)?.reshape((1, 1, 3, 1, 1))?)
}

/// The grey of each pixel, `[.., 1, H, W]`.
fn luma(x: &Tensor) -> Result<Tensor> {
    Ok(x.broadcast_mul(&channel(&LUMA, x.device())?)?.sum_keepdim(2)?)
}

/// One clip's frames `[1, T, 3, H, W]` on 0–1, jittered.
fn jitter(u: &Tensor, [bright, contrast, sat]: Colour) -> Result<Tensor> {
    let (n, t, _, h, w) = u.dims5()?;
    let scaled = u.affine(f64::from(bright), 0.0)?;
    let grey_mean = (luma(u)?.affine(f64::from(bright), 0.0)?.reshape((n, t, h * w))?.sum_keepdim(D::Minus1)?
        / (h * w) as f64)?
        .reshape((n, t, 1, 1, 1))?;
    let contrasted = scaled.broadcast_sub(&grey_mean)?.affine(f64::from(contrast), 0.0)?.broadcast_add(&grey_mean)?;
    let grey = luma(&contrasted)?;
    let saturated = contrasted.broadcast_sub(&grey)?.affine(f64::from(sat), 0.0)?.broadcast_add(&grey)?;
    Ok(saturated.clamp(0f32, 1f32)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-pixel arithmetic the loader did on the host before normalisation moved here.
    fn reference(rgb: [u8; 3], frame_grey_mean: f32, [bright, contrast, sat]: Colour) -> [f32; 3] {
        let l = |p: [f32; 3]| LUMA[0] * p[0] + LUMA[1] * p[1] + LUMA[2] * p[2];
        let mut p = rgb.map(|v| v as f32 / 255.0 * bright);
        p = p.map(|v| (v - frame_grey_mean) * contrast + frame_grey_mean);
        let g = l(p);
        let p = p.map(|v| ((v - g) * sat + g).clamp(0.0, 1.0));
        std::array::from_fn(|c| (p[c] - CLIP_MEAN[c]) / CLIP_STD[c])
    }

    #[test]
    fn plain_clips_are_exact_and_jittered_clips_match_the_per_pixel_rule() {
        // Two clips of one 2x2 frame: clip 0 plain, clip 1 jittered.
        let (h, w) = (2usize, 2usize);
        let frame: Vec<[u8; 3]> = vec![[255, 0, 0], [0, 0, 255], [10, 200, 30], [128, 128, 128]];
        let data: Vec<u8> = [&frame, &frame].into_iter().flatten().flatten().copied().collect();
        let pixels = Tensor::from_vec(data, (2, 1, h, w, 3), &Device::Cpu).unwrap();
        let jit = [1.2, 0.8, 1.3];
        let out = normalise(&pixels, &[[1.0; 3], jit], Normalise::Clip).unwrap();
        let v: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();
        for (i, p) in frame.iter().enumerate() {
            for c in 0..3 {
                assert_eq!(v[c * h * w + i], (p[c] as f32 / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c], "plain, exact");
            }
        }
        let grey_mean = frame
            .iter()
            .map(|p| (LUMA[0] * p[0] as f32 + LUMA[1] * p[1] as f32 + LUMA[2] * p[2] as f32) / 255.0 * jit[0])
            .sum::<f32>()
            / 4.0;
        for (i, p) in frame.iter().enumerate() {
            let want = reference(*p, grey_mean, jit);
            for c in 0..3 {
                let got = v[3 * h * w + c * h * w + i];
                assert!((got - want[c]).abs() < 1e-5, "jittered pixel {i} channel {c}: {got} vs {}", want[c]);
            }
        }
        let all_plain = normalise(&pixels, &[[1.0; 3]; 2], Normalise::Clip)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(all_plain[..12], v[..12], "a batch without jitter takes the same exact path");
    }

    #[test]
    fn unit_pixels_are_divided_by_255_only() {
        let data: Vec<u8> = vec![0, 51, 255, 128, 1, 2];
        let pixels = Tensor::from_vec(data.clone(), (1, 1, 1, 2, 3), &Device::Cpu).unwrap();
        let v: Vec<f32> =
            normalise(&pixels, &[[1.0; 3]], Normalise::Unit).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        // Channels first: R of both pixels, then G, then B.
        let want: Vec<f32> = [0, 3, 1, 4, 2, 5].iter().map(|&i| data[i] as f32 / 255.0).collect();
        assert_eq!(v, want);
    }
}
