//! Decoding only what is needed: a demux pass counts the video's frames, the caller picks frames
//! by number (presentation order), and a decode pass keeps just those frames, stopping after the
//! last one. A kept frame stays as the decoder gave it (planar YUV for most videos, half the
//! bytes of RGB) until a [`Converter`] turns it into upright RGB, at full size or scaled, with
//! rotation metadata applied. Frame folders read the chosen files only.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use ffmpeg_next as ff;
use image::{imageops, RgbImage};

use super::frames;

/// Frames chosen from a clip of `count` frames: `indices[i]` is the source frame number
/// (presentation order) of stored frame `i`; `images` holds each distinct chosen frame once,
/// keyed by its number.
pub(crate) struct Sampled {
    pub count: usize,
    pub indices: Vec<usize>,
    pub images: BTreeMap<usize, Frame>,
}

/// One kept frame: a video frame as decoded (with the clockwise rotation a player applies), or
/// an image read from a frame folder.
pub(crate) enum Frame {
    Decoded { frame: ff::frame::Video, rotation: i32 },
    Image(RgbImage),
}

impl Frame {
    /// Display size (rotation applied).
    pub(crate) fn dimensions(&self) -> (u32, u32) {
        match self {
            Frame::Decoded { frame, rotation } if rotation.rem_euclid(180) == 90 => (frame.height(), frame.width()),
            Frame::Decoded { frame, .. } => (frame.width(), frame.height()),
            Frame::Image(img) => img.dimensions(),
        }
    }
}

/// Turns kept frames into upright RGB, reusing one pixel-format conversion per output size (the
/// frames of a clip share their format and size).
#[derive(Default)]
pub(crate) struct Converter {
    scalers: Vec<(ScalerKey, ff::software::scaling::Context)>,
}

/// A conversion: source format and size, output size, and whether it samples the nearest pixel.
type ScalerKey = (ff::format::Pixel, u32, u32, u32, u32, bool);

/// How a frame is scaled: bilinear, or the nearest pixel (a thumbnail costs only its own pixels).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sampling {
    Bilinear,
    Nearest,
}

impl Converter {
    /// `frame` as upright RGB at its display size.
    pub(crate) fn rgb<'a>(&mut self, frame: &'a Frame) -> Result<std::borrow::Cow<'a, RgbImage>> {
        let (w, h) = frame.dimensions();
        match frame {
            Frame::Image(img) => Ok(std::borrow::Cow::Borrowed(img)),
            Frame::Decoded { .. } => Ok(std::borrow::Cow::Owned(self.rgb_scaled(frame, w, h, Sampling::Bilinear)?)),
        }
    }

    /// `frame` as upright RGB scaled to `w` × `h` display pixels.
    pub(crate) fn rgb_scaled(&mut self, frame: &Frame, w: u32, h: u32, how: Sampling) -> Result<RgbImage> {
        match frame {
            Frame::Image(img) if img.dimensions() == (w, h) => Ok(img.clone()),
            Frame::Image(img) => Ok(crate::geometry::resize(img, None, w, h)),
            Frame::Decoded { frame, rotation } => {
                let turned = rotation.rem_euclid(180) == 90;
                let (sw, sh) = if turned { (h, w) } else { (w, h) };
                Ok(rotate(self.convert(frame, sw, sh, how)?, *rotation))
            }
        }
    }

    /// Converts a decoded frame to packed RGB of `w` × `h` (swscale rows are padded: copied by
    /// stride).
    fn convert(&mut self, decoded: &ff::frame::Video, w: u32, h: u32, how: Sampling) -> Result<RgbImage> {
        let nearest = how == Sampling::Nearest;
        let key = (decoded.format(), decoded.width(), decoded.height(), w, h, nearest);
        let at = match self.scalers.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                let ctx = ff::software::scaling::Context::get(
                    key.0,
                    key.1,
                    key.2,
                    ff::format::Pixel::RGB24,
                    w,
                    h,
                    if nearest { ff::software::scaling::Flags::POINT } else { ff::software::scaling::Flags::BILINEAR },
                )?;
                self.scalers.push((key, ctx));
                self.scalers.len() - 1
            }
        };
        let mut rgb = ff::frame::Video::empty();
        self.scalers[at].1.run(decoded, &mut rgb)?;
        let stride = rgb.stride(0);
        let data = rgb.data(0);
        let mut buf = Vec::with_capacity((w * h * 3) as usize);
        for row in 0..h as usize {
            buf.extend_from_slice(&data[row * stride..row * stride + w as usize * 3]);
        }
        Ok(RgbImage::from_raw(w, h, buf).expect("buffer matches size"))
    }
}

/// The number of video frames, from packets only.
fn frame_count(path: &Path) -> Result<usize> {
    let mut ictx = ff::format::input(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let stream =
        ictx.streams().best(ff::media::Type::Video).ok_or_else(|| anyhow!("{}: no video stream", path.display()))?;
    let index = stream.index();
    let mut count = 0usize;
    while let Some(packet) =
        super::next_packet(&mut ictx).with_context(|| format!("{}: read error after {count} frames", path.display()))?
    {
        if packet.stream() == index {
            count += 1;
        }
    }
    Ok(count)
}

fn rotate(img: RgbImage, rotation: i32) -> RgbImage {
    match rotation.rem_euclid(360) {
        90 => imageops::rotate90(&img),
        180 => imageops::rotate180(&img),
        270 => imageops::rotate270(&img),
        _ => img,
    }
}

/// Receives decoded frames in presentation order, keeping the wanted ones as decoded.
struct Collector<'a> {
    wanted: &'a std::collections::BTreeSet<usize>,
    last: usize,
    rotation: i32,
    /// Frames received so far.
    n: usize,
    images: BTreeMap<usize, Frame>,
}

impl Collector<'_> {
    /// Takes every frame the decoder has ready; true once the last wanted frame is in.
    fn drain(&mut self, decoder: &mut ff::decoder::Video) -> bool {
        let mut decoded = ff::frame::Video::empty();
        while decoder.receive_frame(&mut decoded).is_ok() {
            if self.wanted.contains(&self.n) {
                // A copy of its own: the decoder reuses its buffers.
                self.images.insert(self.n, Frame::Decoded { frame: decoded.clone(), rotation: self.rotation });
            }
            self.n += 1;
            if self.n > self.last {
                return true;
            }
        }
        false
    }
}

/// Decodes the frames `choose(n)` names from a video of `n` frames; `rotation` is the clockwise
/// display rotation from the manifest.
pub(crate) fn sample_video(path: &Path, rotation: i32, choose: impl Fn(usize) -> Vec<usize>) -> Result<Sampled> {
    super::init_ffmpeg();
    let count = frame_count(path)?;
    if count == 0 {
        bail!("{}: no video frames", path.display());
    }
    let indices = choose(count);
    let wanted: std::collections::BTreeSet<usize> = indices.iter().copied().collect();
    let last = *wanted.iter().next_back().expect("at least one sample");

    let mut ictx = ff::format::input(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let stream =
        ictx.streams().best(ff::media::Type::Video).ok_or_else(|| anyhow!("{}: no video stream", path.display()))?;
    let index = stream.index();
    let mut ctx = ff::codec::context::Context::from_parameters(stream.parameters())?;
    ctx.set_threading(ff::threading::Config { kind: ff::threading::Type::Frame, count: 1, ..Default::default() });
    let mut decoder = ctx.decoder().video().with_context(|| format!("{}: unsupported codec", path.display()))?;
    let mut collect = Collector { wanted: &wanted, last, rotation, n: 0, images: BTreeMap::new() };
    let mut done = false;
    while !done {
        let Some(packet) = super::next_packet(&mut ictx)
            .with_context(|| format!("{}: read error at frame {}", path.display(), collect.n))?
        else {
            break;
        };
        if packet.stream() != index {
            continue;
        }
        decoder
            .send_packet(&packet)
            .map_err(|e| anyhow!("{}: decode error at frame {}: {e}", path.display(), collect.n))?;
        done = collect.drain(&mut decoder);
    }
    if !done {
        let _ = decoder.send_eof();
        collect.drain(&mut decoder);
    }
    let images = collect.images;
    if let Some(missing) = wanted.iter().find(|i| !images.contains_key(i)) {
        bail!("{}: frame {missing} of {count} could not be decoded", path.display());
    }
    Ok(Sampled { count, indices, images })
}

/// Reads the frames `choose(n)` names from a frame folder (numeric order).
pub(crate) fn sample_folder(dir: &Path, choose: impl Fn(usize) -> Vec<usize>) -> Result<Sampled> {
    let files = frames::list(dir).with_context(|| format!("{}: cannot list", dir.display()))?;
    if files.is_empty() {
        bail!("{}: no image files", dir.display());
    }
    let indices = choose(files.len());
    let mut images = BTreeMap::new();
    for &i in &indices {
        if let std::collections::btree_map::Entry::Vacant(e) = images.entry(i) {
            let img =
                image::open(&files[i]).with_context(|| format!("{}: not a readable image", files[i].display()))?;
            e.insert(Frame::Image(img.to_rgb8()));
        }
    }
    let size = images.values().next().map(|i| i.dimensions());
    if let Some(bad) = images.iter().find(|(_, i)| Some(i.dimensions()) != size) {
        bail!(
            "{}: frame {} has size {:?}, the first chosen frame {:?}",
            dir.display(),
            bad.0,
            bad.1.dimensions(),
            size
        );
    }
    Ok(Sampled { count: files.len(), indices, images })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assets::{self, Asset};

    fn mean_abs(a: &RgbImage, b: &RgbImage) -> f64 {
        a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| (*x as f64 - *y as f64).abs()).sum::<f64>() / a.len() as f64
    }

    /// Kept frames stay decoded and convert on demand: at full size, scaled, as a nearest-pixel
    /// thumbnail, and upright when the video carries a rotation.
    #[test]
    fn kept_frames_convert_on_demand_and_upright() {
        let video = assets::path(Asset::Carphone).expect("scripts/setup.sh --assets");
        let s = sample_video(&video, 0, |n| vec![0, n / 2]).unwrap();
        assert_eq!(s.indices, vec![0, s.count / 2]);
        let frame = &s.images[&0];
        assert!(matches!(frame, Frame::Decoded { .. }), "a video frame is kept as decoded");
        let (w, h) = frame.dimensions();
        assert_eq!((w, h), (176, 144));
        let mut conv = Converter::default();
        let full = conv.rgb(frame).unwrap().into_owned();
        assert_eq!(full.dimensions(), (176, 144));
        let half = conv.rgb_scaled(frame, 88, 72, Sampling::Bilinear).unwrap();
        let resized = crate::geometry::resize(&full, None, 88, 72);
        assert!(mean_abs(&half, &resized) < 4.0, "scaled from YUV ≈ resized from RGB: {}", mean_abs(&half, &resized));
        let thumb = conv.rgb_scaled(frame, 44, 36, Sampling::Nearest).unwrap();
        assert_eq!(thumb.dimensions(), (44, 36));
        // The same frame carrying a 90° rotation: display size swapped, pixels turned.
        let Frame::Decoded { frame: decoded, .. } = frame else { unreachable!() };
        let turned = Frame::Decoded { frame: decoded.clone(), rotation: 90 };
        assert_eq!(turned.dimensions(), (144, 176));
        assert_eq!(*conv.rgb(&turned).unwrap(), imageops::rotate90(&full));
    }
}
