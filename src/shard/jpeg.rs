//! One frame as a JPEG file and back: baseline JPEG, 4:4:4 (no chroma subsampling), encoded
//! with libjpeg-turbo on the prep workers (the `media` build) and decoded with `zune-jpeg`
//! straight into the caller's buffer on the loader threads. Decoding is strict: a frame cut
//! short or otherwise broken is an error, never a frame padded with grey.

#[cfg(feature = "media")]
use std::cell::RefCell;

#[cfg(feature = "media")]
use anyhow::{ensure, Result};
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

/// Encodes a square RGB frame of side `side` (HWC) at `quality` (1–100), with one compressor
/// per thread.
#[cfg(feature = "media")]
pub(crate) fn encode(pixels: &[u8], side: u32, quality: u8) -> Result<Vec<u8>> {
    thread_local! {
        static COMPRESSOR: RefCell<Option<turbojpeg::Compressor>> = const { RefCell::new(None) };
    }
    ensure!(side <= u16::MAX as u32, "a {side}-pixel frame is too large for JPEG");
    ensure!(pixels.len() == (side * side * 3) as usize, "frame of {} bytes is not {side}x{side} RGB", pixels.len());
    let s = side as usize;
    let image = turbojpeg::Image { pixels, width: s, pitch: 3 * s, height: s, format: turbojpeg::PixelFormat::RGB };
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let c = match slot.as_mut() {
            Some(c) => c,
            None => slot.insert(turbojpeg::Compressor::new()?),
        };
        c.set_quality(i32::from(quality));
        c.set_subsamp(turbojpeg::Subsamp::None);
        Ok(c.compress_to_vec(image)?)
    })
}

/// Decodes `bytes` into `out`, which must be one `side`×`side` RGB frame; the message says
/// what is wrong when the file is not such a frame or does not decode whole.
pub(crate) fn decode_into(bytes: &[u8], side: u32, out: &mut [u8]) -> std::result::Result<(), String> {
    let options = DecoderOptions::default().set_strict_mode(true).jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(|e| e.to_string())?;
    let info = decoder.info().ok_or("no image header")?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    if (w, h) != (side, side) || info.components != 3 {
        return Err(format!("{w}x{h} with {} components, expected {side}x{side} RGB", info.components));
    }
    decoder.decode_into(out).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth colour gradient, the kind of content JPEG keeps well.
    fn frame(side: u32) -> Vec<u8> {
        let (s, mut px) = (side as usize, Vec::new());
        for y in 0..s {
            for x in 0..s {
                px.extend([(x * 255 / s) as u8, (y * 255 / s) as u8, ((x + y) * 127 / s) as u8]);
            }
        }
        px
    }

    #[test]
    fn round_trip_stays_within_jpeg_error() {
        let px = frame(32);
        let bytes = encode(&px, 32, 95).unwrap();
        assert!(bytes.starts_with(&[0xff, 0xd8]) && bytes.ends_with(&[0xff, 0xd9]));
        let mut out = vec![0u8; px.len()];
        decode_into(&bytes, 32, &mut out).unwrap();
        let err = px.iter().zip(&out).map(|(a, b)| (*a as f64 - *b as f64).abs()).sum::<f64>() / px.len() as f64;
        assert!(err < 2.0, "mean error {err}");
        assert_ne!(out, vec![0u8; px.len()]);
    }

    /// A frame cut anywhere after its header is an error (a lenient decoder would pad it with
    /// grey and return it as if whole).
    #[test]
    fn a_cut_or_wrongly_sized_frame_is_refused() {
        let px = frame(64);
        let bytes = encode(&px, 64, 90).unwrap();
        let mut out = vec![0u8; px.len()];
        for keep in [20, bytes.len() / 2, bytes.len() - 40] {
            let e = decode_into(&bytes[..keep], 64, &mut out);
            assert!(e.is_err(), "cut to {keep} of {} bytes decoded", bytes.len());
        }
        let e = decode_into(&bytes, 32, &mut out).unwrap_err();
        assert!(e.contains("64x64") && e.contains("expected 32x32"), "{e}");
        assert!(encode(&px, 63, 90).is_err());
    }
}
