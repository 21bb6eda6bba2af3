//! Decoding only what is needed: a demux pass counts the video's frames, the caller picks frames
//! by number (presentation order), and a decode pass converts just those frames to RGB
//! (upright, with rotation metadata applied), stopping after the last one. Frame folders read
//! the chosen files only.

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
    pub images: BTreeMap<usize, RgbImage>,
}

/// The number of video frames, from packets only.
fn frame_count(path: &Path) -> Result<usize> {
    let mut ictx = ff::format::input(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let stream =
        ictx.streams().best(ff::media::Type::Video).ok_or_else(|| anyhow!("{}: no video stream", path.display()))?;
    let index = stream.index();
    let mut count = 0usize;
    let mut packet = ff::Packet::empty();
    while super::read_packet(&mut ictx, &mut packet)
        .with_context(|| format!("{}: read error after {count} frames", path.display()))?
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

/// Receives decoded frames in presentation order, keeping the wanted ones as upright RGB.
struct Collector<'a> {
    wanted: &'a std::collections::BTreeSet<usize>,
    last: usize,
    rotation: i32,
    /// Frames received so far.
    n: usize,
    scaler: Option<ff::software::scaling::Context>,
    images: BTreeMap<usize, RgbImage>,
}

impl Collector<'_> {
    /// Takes every frame the decoder has ready; true once the last wanted frame is in.
    fn drain(&mut self, decoder: &mut ff::decoder::Video) -> Result<bool> {
        let mut decoded = ff::frame::Video::empty();
        while decoder.receive_frame(&mut decoded).is_ok() {
            if self.wanted.contains(&self.n) {
                let img = self.convert(&decoded)?;
                self.images.insert(self.n, rotate(img, self.rotation));
            }
            self.n += 1;
            if self.n > self.last {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Converts one frame to packed RGB (swscale rows are padded: copy by stride).
    fn convert(&mut self, decoded: &ff::frame::Video) -> Result<RgbImage> {
        let sc = match &mut self.scaler {
            Some(s) => s,
            None => self.scaler.insert(ff::software::scaling::Context::get(
                decoded.format(),
                decoded.width(),
                decoded.height(),
                ff::format::Pixel::RGB24,
                decoded.width(),
                decoded.height(),
                ff::software::scaling::Flags::BILINEAR,
            )?),
        };
        let mut rgb = ff::frame::Video::empty();
        sc.run(decoded, &mut rgb)?;
        let (w, h) = (rgb.width(), rgb.height());
        let stride = rgb.stride(0);
        let data = rgb.data(0);
        let mut buf = Vec::with_capacity((w * h * 3) as usize);
        for row in 0..h as usize {
            buf.extend_from_slice(&data[row * stride..row * stride + w as usize * 3]);
        }
        Ok(RgbImage::from_raw(w, h, buf).expect("buffer matches size"))
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
    let mut collect = Collector { wanted: &wanted, last, rotation, n: 0, scaler: None, images: BTreeMap::new() };
    let mut packet = ff::Packet::empty();
    let mut done = false;
    while !done {
        let more = super::read_packet(&mut ictx, &mut packet)
            .with_context(|| format!("{}: read error at frame {}", path.display(), collect.n))?;
        if !more {
            break;
        }
        if packet.stream() != index {
            continue;
        }
        decoder
            .send_packet(&packet)
            .map_err(|e| anyhow!("{}: decode error at frame {}: {e}", path.display(), collect.n))?;
        done = collect.drain(&mut decoder)?;
    }
    if !done {
        let _ = decoder.send_eof();
        collect.drain(&mut decoder)?;
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
            e.insert(img.to_rgb8());
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
