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
