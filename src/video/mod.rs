//! Video and frame-folder access: ffmpeg initialisation, probing, sampled decoding, numeric
//! frame ordering; and [`ProbeInfo`], what probing produces (built without the media feature
//! too, since clip manifests carry it).

#[cfg(feature = "media")]
pub(crate) mod decode;
#[cfg(feature = "media")]
pub(crate) mod frames;
#[cfg(feature = "media")]
pub(crate) mod probe;

#[cfg(feature = "media")]
use std::sync::Once;

use serde::Serialize;

/// What probing learnt about a readable clip.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeInfo {
    pub n_frames: u32,
    pub fps: Option<f64>,
    /// Display size: the stored size with `rotation` applied.
    pub width: u32,
    pub height: u32,
    pub duration_s: Option<f64>,
    /// Clockwise rotation in degrees that a player applies for display (the value of the
    /// legacy `rotate` tag), 0 if none.
    pub rotation: i32,
}

#[cfg(feature = "media")]
/// Initialises FFmpeg once per process and silences its own logging: dfer reports problems
/// itself, naming the clip.
pub(crate) fn init_ffmpeg() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        ffmpeg_next::init().expect("FFmpeg initialises");
        ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Fatal);
    });
}

#[cfg(feature = "media")]
/// The next packet of any stream, `None` at the end of the file; corrupt packets that the
/// demuxer can resync past are skipped. Each packet is a fresh one that releases its buffer when
/// dropped: `av_read_frame` into a packet that still holds a buffer overwrites the reference
/// without releasing it, which leaked every packet of every clip (about 2 MB a clip on the
/// bench's film set, docs/benchmarks.md "Prep memory").
pub(crate) fn next_packet(
    ictx: &mut ffmpeg_next::format::context::Input,
) -> Result<Option<ffmpeg_next::Packet>, ffmpeg_next::Error> {
    loop {
        let mut packet = ffmpeg_next::Packet::empty();
        match packet.read(ictx) {
            Ok(()) => return Ok(Some(packet)),
            Err(ffmpeg_next::Error::Eof) => return Ok(None),
            Err(ffmpeg_next::Error::InvalidData) => continue,
            Err(e) => return Err(e),
        }
    }
}
