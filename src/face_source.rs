//! Where a stored frame's face box came from: the `face_source` column of shards, written by
//! prep's tracking and read by the trainer and the inspectors.

use serde::{Deserialize, Serialize};

/// Where a frame's face box came from (stored per frame as `face_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum FaceSource {
    /// No face box and no detector verdict. Written by dfer before shot-aware tracking for
    /// frames without any box; this version writes `Lost` for those.
    None = 0,
    /// The detector found the primary face in this frame.
    Detected = 1,
    /// Interpolated between two detections of the same track in the same shot.
    Interpolated = 2,
    /// Centre crop chosen by the `centre` no-face policy.
    Fallback = 3,
    /// No face box: the detector ran on this frame (or on the nearest frames on both sides in
    /// its shot) and found no face of the track. The crop is the frame's centre, nothing masked.
    Lost = 4,
}

impl FaceSource {
    /// The source a stored `face_source` code stands for; codes this version does not know
    /// read as `None`.
    pub fn from_code(code: u8) -> FaceSource {
        match code {
            1 => FaceSource::Detected,
            2 => FaceSource::Interpolated,
            3 => FaceSource::Fallback,
            4 => FaceSource::Lost,
            _ => FaceSource::None,
        }
    }
}
