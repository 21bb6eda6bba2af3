//! Probing a clip's source without decoding it all: frame count (by demuxing every packet, so
//! truncated files show), frame rate, size, duration and rotation; frame folders by listing.

use std::path::Path;

use ffmpeg_next as ff;

use super::{frames, ProbeInfo};
use crate::clip_status::ClipStatus;

/// Why a clip cannot be used; `status()` is the manifest's status column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ProbeError {
    Missing(String),
    Empty(String),
    Unreadable(String),
    Truncated(String),
    TooLarge(String),
}

impl ProbeError {
    pub(crate) fn status(&self) -> ClipStatus {
        match self {
            ProbeError::Missing(_) => ClipStatus::Missing,
            ProbeError::Empty(_) => ClipStatus::Empty,
            ProbeError::Unreadable(_) => ClipStatus::Unreadable,
            ProbeError::Truncated(_) => ClipStatus::Truncated,
            ProbeError::TooLarge(_) => ClipStatus::TooLarge,
        }
    }

    pub(crate) fn message(&self) -> &str {
        match self {
            ProbeError::Missing(m)
            | ProbeError::Empty(m)
            | ProbeError::Unreadable(m)
            | ProbeError::Truncated(m)
            | ProbeError::TooLarge(m) => m,
        }
    }
}

/// Clockwise display rotation of an FFmpeg display matrix (nine 16.16 / 2.30 fixed-point i32,
/// row major) as a multiple of 90 degrees: the angle `av_display_rotation_get` computes, which
/// FFmpeg's CLI writes as `-rotate` for a `rotate=R` tag. `Ok(None)`: too short to be a
/// matrix. A degenerate matrix, or an angle more than 1° from a right angle (which frames
/// cannot be turned by without resampling), is an error.
pub(crate) fn display_matrix_rotation(data: &[u8]) -> Result<Option<i32>, String> {
    if data.len() < 36 {
        return Ok(None);
    }
    let m: Vec<f64> = data[..36].chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect();
    let scale0 = m[0].hypot(m[3]);
    let scale1 = m[1].hypot(m[4]);
    if scale0 == 0.0 || scale1 == 0.0 {
        return Err("its display matrix is degenerate (zero scale)".into());
    }
    let deg = -(m[1] / scale1).atan2(m[0] / scale0).to_degrees();
    let right = (deg / 90.0).round() * 90.0;
    if (deg - right).abs() > 1.0 {
        return Err(format!("its display matrix rotates by {deg:.1}°, not a multiple of 90°"));
    }
    Ok(Some((right as i32).rem_euclid(360)))
}

/// The largest frame dfer prepares: 8K UHD. Larger frames would hold gigabytes per clip in
/// prep (every sampled frame is kept as full-size RGB until cropped).
pub(crate) const MAX_PIXELS: u64 = 7680 * 4320;

fn check_size(path: &Path, width: u32, height: u32) -> Result<(), ProbeError> {
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(ProbeError::TooLarge(format!(
            "{}: frame size {width}x{height} is over the {MAX_PIXELS} pixels (7680x4320) dfer prepares",
            path.display()
        )));
    }
    Ok(())
}

fn check_exists(path: &Path) -> Result<std::fs::Metadata, ProbeError> {
    std::fs::metadata(path).map_err(|e| ProbeError::Missing(format!("{}: {e}", path.display())))
}

/// Probes an encoded video file.
pub(crate) fn probe_video(path: &Path) -> Result<ProbeInfo, ProbeError> {
    check_video_file(path)?;
    super::init_ffmpeg();
    let mut ictx = ff::format::input(path).map_err(|e| unreadable(path, "cannot open as a video container", &e))?;
    let mut header = StreamHeader::read(path, &ictx)?;
    let container_duration = (ictx.duration() > 0).then(|| ictx.duration() as f64 / f64::from(ff::ffi::AV_TIME_BASE));
    let packets = count_packets(path, &mut ictx, header.index, &mut header.decoder)?;
    let (mut width, mut height) = (header.decoder.width(), header.decoder.height());
    if width == 0 || height == 0 {
        return Err(ProbeError::Unreadable(format!("{}: frame size is {width}x{height}", path.display())));
    }
    check_size(path, width, height)?;
    if header.frames > packets {
        return Err(ProbeError::Truncated(format!(
            "{}: the header lists {} frames but only {packets} can be read",
            path.display(),
            header.frames
        )));
    }
    if header.rotation % 180 == 90 {
        std::mem::swap(&mut width, &mut height);
    }
    Ok(ProbeInfo {
        n_frames: packets as u32,
        fps: header.rate.map(f64::from),
        width,
        height,
        duration_s: header.duration_s.or(container_duration),
        rotation: header.rotation,
    })
}

/// `ProbeError::Unreadable` naming the file, what failed and why.
fn unreadable(path: &Path, what: &str, e: &dyn std::fmt::Display) -> ProbeError {
    ProbeError::Unreadable(format!("{}: {what}: {e}", path.display()))
}

/// A video must be a regular file with at least one byte.
fn check_video_file(path: &Path) -> Result<(), ProbeError> {
    let meta = check_exists(path)?;
    if !meta.is_file() {
        return Err(ProbeError::Unreadable(format!("{}: not a regular file", path.display())));
    }
    if meta.len() == 0 {
        return Err(ProbeError::Empty(format!("{}: zero-byte file", path.display())));
    }
    Ok(())
}

/// What the best video stream's header says, and a decoder for it.
struct StreamHeader {
    index: usize,
    /// Frame count from the header (0 when it does not say).
    frames: u64,
    rate: Option<ff::Rational>,
    duration_s: Option<f64>,
    rotation: i32,
    decoder: ff::decoder::Video,
}

impl StreamHeader {
    fn read(path: &Path, ictx: &ff::format::context::Input) -> Result<StreamHeader, ProbeError> {
        let stream = ictx
            .streams()
            .best(ff::media::Type::Video)
            .ok_or_else(|| ProbeError::Unreadable(format!("{}: no video stream", path.display())))?;
        let tb = stream.time_base();
        let rate =
            [stream.avg_frame_rate(), stream.rate()].into_iter().find(|r| r.numerator() > 0 && r.denominator() > 0);
        let duration_s =
            (stream.duration() > 0 && tb.denominator() > 0).then(|| stream.duration() as f64 * f64::from(tb));
        let display_matrix = ff::codec::packet::side_data::Type::DisplayMatrix;
        let rotation = match stream.side_data().find(|sd| sd.kind() == display_matrix) {
            Some(sd) => display_matrix_rotation(sd.data())
                .map_err(|m| ProbeError::Unreadable(format!("{}: {m}", path.display())))?
                .unwrap_or(0),
            None => 0,
        };
        let decoder = ff::codec::context::Context::from_parameters(stream.parameters())
            .and_then(|c| c.decoder().video())
            .map_err(|e| unreadable(path, "unsupported video codec", &e))?;
        Ok(StreamHeader {
            index: stream.index(),
            frames: stream.frames().max(0) as u64,
            rate,
            duration_s,
            rotation,
            decoder,
        })
    }
}

/// Demuxes every packet of stream `index` (cheap: no decoding) and decodes only up to the
/// first frame, which proves the codec data is usable. Returns the packet count.
fn count_packets(
    path: &Path,
    ictx: &mut ff::format::context::Input,
    index: usize,
    decoder: &mut ff::decoder::Video,
) -> Result<u64, ProbeError> {
    let mut packets = 0u64;
    let mut first_frame = false;
    let mut frame = ff::frame::Video::empty();
    loop {
        let packet = match super::next_packet(ictx) {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            Err(e) if packets == 0 => return Err(unreadable(path, "read error before the first frame", &e)),
            Err(e) => {
                return Err(ProbeError::Truncated(format!(
                    "{}: read error after {packets} frames: {e}",
                    path.display()
                )))
            }
        };
        if packet.stream() != index {
            continue;
        }
        packets += 1;
        if !first_frame && decoder.send_packet(&packet).is_ok() && decoder.receive_frame(&mut frame).is_ok() {
            first_frame = true;
        }
    }
    if !first_frame {
        let _ = decoder.send_eof();
        first_frame = decoder.receive_frame(&mut frame).is_ok();
    }
    if packets == 0 || !first_frame {
        return Err(ProbeError::Unreadable(format!(
            "{}: no decodable video frame ({packets} packets)",
            path.display()
        )));
    }
    Ok(packets)
}

/// Probes a folder of frame images.
pub(crate) fn probe_frames(dir: &Path) -> Result<ProbeInfo, ProbeError> {
    let meta = check_exists(dir)?;
    if !meta.is_dir() {
        return Err(ProbeError::Unreadable(format!("{}: expected a folder of frames", dir.display())));
    }
    let files =
        frames::list(dir).map_err(|e| ProbeError::Unreadable(format!("{}: cannot list: {e}", dir.display())))?;
    let first = files.first().ok_or_else(|| ProbeError::Empty(format!("{}: no image files", dir.display())))?;
    let (width, height) = image::image_dimensions(first)
        .map_err(|e| ProbeError::Unreadable(format!("{}: not a readable image: {e}", first.display())))?;
    check_size(first, width, height)?;
    Ok(ProbeInfo { n_frames: files.len() as u32, fps: None, width, height, duration_s: None, rotation: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(a: i32, b: i32, c: i32, d: i32) -> Vec<u8> {
        let m = [a, b, 0, c, d, 0, 0, 0, 1 << 30];
        m.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn display_matrix_angles() {
        let one = 1 << 16;
        assert_eq!(display_matrix_rotation(&matrix(one, 0, 0, one)), Ok(Some(0)));
        // A `rotate=90` tag is stored as av_display_rotation_set(m, -90): [0, -1; 1, 0]
        // (checked end to end by the synth rotation edge case).
        assert_eq!(display_matrix_rotation(&matrix(0, -one, one, 0)), Ok(Some(90)));
        assert_eq!(display_matrix_rotation(&matrix(0, one, -one, 0)), Ok(Some(270)));
        assert_eq!(display_matrix_rotation(&matrix(-one, 0, 0, -one)), Ok(Some(180)));
        assert_eq!(display_matrix_rotation(&[0u8; 8]), Ok(None));
        let e = display_matrix_rotation(&matrix(46341, 46341, -46341, 46341)).unwrap_err();
        assert!(e.contains("45.0°"), "{e}");
        assert!(display_matrix_rotation(&matrix(0, 0, 0, 0)).unwrap_err().contains("degenerate"));
    }

    #[test]
    fn missing_empty_and_garbage_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = probe_video(&dir.path().join("nope.mp4")).unwrap_err();
        assert_eq!(missing.status(), ClipStatus::Missing);
        let empty = dir.path().join("empty.mp4");
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(probe_video(&empty).unwrap_err().status(), ClipStatus::Empty);
        let garbage = dir.path().join("garbage.mp4");
        std::fs::write(&garbage, vec![7u8; 4096]).unwrap();
        let e = probe_video(&garbage).unwrap_err();
        assert_eq!(e.status(), ClipStatus::Unreadable);
        assert!(e.message().contains("garbage.mp4"), "{}", e.message());
    }
}
