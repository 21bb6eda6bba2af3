//! Video and frame-folder access: ffmpeg initialisation, probing, sampled decoding, numeric
//! frame ordering.

pub mod decode;
pub mod frames;
pub mod probe;

use std::sync::Once;

/// Initialises FFmpeg once per process and silences its own logging: dfer reports problems
/// itself, naming the clip.
pub fn init_ffmpeg() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        ffmpeg_next::init().expect("FFmpeg initialises");
        ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Fatal);
    });
}

/// Reads the next packet of any stream into `packet`: `Ok(false)` at the end of the file;
/// corrupt packets that the demuxer can resync past are skipped.
pub fn read_packet(
    ictx: &mut ffmpeg_next::format::context::Input,
    packet: &mut ffmpeg_next::Packet,
) -> Result<bool, ffmpeg_next::Error> {
    loop {
        match packet.read(ictx) {
            Ok(()) => return Ok(true),
            Err(ffmpeg_next::Error::Eof) => return Ok(false),
            Err(ffmpeg_next::Error::InvalidData) => continue,
            Err(e) => return Err(e),
        }
    }
}
