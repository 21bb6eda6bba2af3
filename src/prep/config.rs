//! `prep.toml`: every preprocessing setting, with defaults. The resolved config (plus the
//! detector's model hash) is hashed into each shard so changed settings are never mixed.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::UsageError;
use crate::geometry::{MaskMode, SceneFit};
use crate::shard::{Encoding, FaceCrops, PixelFormat};
use crate::text_enum::text_enum;

text_enum! {
    /// What to do with a clip whose face detection rate is under `min_detection_rate`. Prep
    /// never leaves out a clip it can decode: a test clip is scored whatever its faces, and
    /// training decides whether to use it (`train.no_face_clips`).
    #[derive(clap::ValueEnum)]
    pub enum NoFacePolicy("no-face policy") {
        /// Centre crops, every frame marked `fallback` (status `no_face`).
        Centre = "centre",
        /// Whatever the tracker found, frames without any box marked `lost` (status `no_face`).
        Keep = "keep",
    }
}

/// Preprocessing settings (`--config prep.toml`; absent keys take these defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct PrepConfig {
    /// Frames per clip the model sees (T, the number of segments).
    pub frames: usize,
    /// The most frames a clip stores: a clip of up to this many frames is stored whole, so the
    /// test view (segment centres) and the training view (any frame of each segment) are the
    /// published loaders' exactly; a longer clip stores its test frames and
    /// `(store_frames − frames) / frames` evenly spaced frames of each training segment.
    pub store_frames: usize,
    /// Face crop side (S).
    pub face_size: u32,
    /// Scene image side (S2); 0 stores no scene stream.
    pub scene_size: u32,
    /// Where face frames come from: `detect` (dfer's detector and tracker) or `dataset` (the
    /// dataset's own face-crop folders, as they are; the scene stream, if any, still comes from
    /// the video with the detected face masked).
    pub face_crops: FaceCrops,
    /// Face crop side = longer side of the smoothed face box × margin.
    pub margin: f32,
    /// Masked region = face box × mask_scale.
    pub mask_scale: f32,
    pub mask_mode: MaskMode,
    pub scene_fit: SceneFit,
    /// Detector input long side for the first detection of a clip; when it finds no face, the
    /// frame is searched again at `det_long_side`.
    pub det_first_long_side: u32,
    /// Largest detector input long side (retries search here).
    pub det_long_side: u32,
    /// After the first detection, later frames are detected at a long side where the face is
    /// about this many pixels tall (never above `det_long_side`, never below
    /// `det_min_long_side`); 0 keeps `det_long_side` for every frame.
    pub det_face_px: u32,
    pub det_min_long_side: u32,
    pub det_threshold: f32,
    pub nms_iou: f32,
    /// Search frames: the detector first searches every k-th stored frame whole, and the
    /// first and last frame of every shot. 1 (with `det_every = 1`) searches every stored frame
    /// whole: the accuracy reference.
    pub det_search_every: usize,
    /// Largest gap: between two detected-on stored frames further apart than this the detector
    /// always runs again, halfway; it also runs between any two whose detections disagree (see
    /// the `refine_*` settings). 1 detects every stored frame.
    pub det_every: usize,
    /// A frame detected between two detections of the tracked face, in a shot where no
    /// detection saw a second face, is first looked at in a window around the box the track
    /// predicts (the whole frame when the window holds no whole face); so is a face-edge frame
    /// searched again at `det_long_side`, around the track's box at its neighbour. false: every
    /// detection sees the whole frame.
    pub det_crops: bool,
    /// That window: the box the track predicts widened by this many face sizes (√area) each side.
    pub det_crop_margin: f32,
    /// Two neighbouring detections whose centres lie more than this many face sizes (√area)
    /// apart are checked: a third detection must confirm constant velocity, or the frame
    /// halfway between them is detected too.
    pub refine_shift: f32,
    /// Likewise for a face size ratio above this.
    pub refine_scale: f32,
    /// A detection confirms constant velocity when it lies within this IoU of the line through
    /// its two neighbouring detections.
    pub refine_check_iou: f32,
    /// A cut lies between two neighbouring stored frames whose colour histograms differ by more
    /// than this (0..=1, half the L1 distance); no box is carried across a cut. 0: no cuts.
    pub cut_threshold: f32,
    /// Clips whose share of stored frames with a face box (detected, or interpolated between
    /// two detections of the track in one shot) is under this get status `no_face`.
    pub min_detection_rate: f32,
    pub no_face_policy: NoFacePolicy,
    /// Stored frames over which detector jitter is smoothed out (1 = none): a straight-line fit
    /// of the box centres and the mean size, so a moving face is not held back; a detected box
    /// moves at most 5 % of its size.
    pub smooth_window: usize,
    /// Manifest rows per shard (shard k holds rows k·n … k·n+n-1 that succeed).
    pub clips_per_shard: usize,
    /// How shards store the face and scene frames: `jpeg` (one JPEG per frame), `gzip`
    /// (HDF5 deflate + shuffle, lossless) or `raw` (uncompressed uint8).
    pub encoding: Encoding,
    /// JPEG quality (1–100) with `encoding = "jpeg"`.
    pub jpeg_quality: u8,
    /// deflate level (1–9) with `encoding = "gzip"`.
    pub gzip: u8,
}

impl Default for PrepConfig {
    fn default() -> Self {
        PrepConfig {
            frames: 16,
            store_frames: 64,
            face_size: 224,
            scene_size: 224,
            face_crops: FaceCrops::Detect,
            margin: 1.25,
            mask_scale: 1.3,
            mask_mode: MaskMode::Fill,
            scene_fit: SceneFit::Letterbox,
            det_first_long_side: 320,
            det_long_side: 640,
            det_face_px: 64,
            det_min_long_side: 160,
            det_threshold: 0.4,
            nms_iou: 0.3,
            det_search_every: 16,
            det_every: 4,
            det_crops: true,
            det_crop_margin: 0.5,
            refine_shift: 0.25,
            refine_scale: 1.25,
            refine_check_iou: 0.7,
            cut_threshold: 0.4,
            min_detection_rate: 0.5,
            no_face_policy: NoFacePolicy::Centre,
            smooth_window: 3,
            clips_per_shard: 256,
            encoding: Encoding::Jpeg,
            jpeg_quality: 95,
            gzip: 4,
        }
    }
}

impl PrepConfig {
    /// Reads a config file; unknown keys and bad values are errors naming the file.
    pub(crate) fn load(path: &Path) -> Result<PrepConfig, UsageError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| UsageError::new(format!("{}: cannot read: {e}", path.display())))?;
        let c: PrepConfig = toml::from_str(&text)
            .map_err(|e| UsageError::new(format!("{}: not a valid prep config: {e}", path.display())))?;
        c.validate().map_err(|m| UsageError::new(format!("{}: {m}", path.display())))?;
        Ok(c)
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.frames == 0 || self.store_frames < self.frames {
            return Err(format!(
                "frames ({}) must be at least 1 and store_frames ({}) at least frames",
                self.frames, self.store_frames
            ));
        }
        if self.face_size < 16 || (self.scene_size != 0 && self.scene_size < 16) {
            return Err("face_size must be at least 16, and scene_size 0 (no scene stream) or at least 16".into());
        }
        if !(1.0..=4.0).contains(&self.margin) || !(1.0..=4.0).contains(&self.mask_scale) {
            return Err("margin and mask_scale must lie in 1..=4".into());
        }
        if self.det_min_long_side < 32 || self.det_min_long_side > self.det_long_side {
            return Err("det_min_long_side must lie in 32..=det_long_side".into());
        }
        if self.det_first_long_side < 32 || self.det_first_long_side > self.det_long_side {
            return Err("det_first_long_side must lie in 32..=det_long_side".into());
        }
        let counts = [self.det_search_every, self.det_every, self.smooth_window, self.clips_per_shard];
        if self.det_long_side < 32 || counts.contains(&0) {
            return Err(
                "det_long_side >= 32; det_search_every, det_every, smooth_window and clips_per_shard >= 1".into()
            );
        }
        if !(0.0..=8.0).contains(&self.det_crop_margin) {
            return Err("det_crop_margin must lie in 0..=8 (face sizes)".into());
        }
        if !(0.0..=1.0).contains(&self.det_threshold) || !(0.0..=1.0).contains(&self.min_detection_rate) {
            return Err("det_threshold and min_detection_rate must lie in 0..=1".into());
        }
        let (shift, scale, check) = (self.refine_shift, self.refine_scale, self.refine_check_iou);
        let sound = shift.is_finite() && shift > 0.0 && scale.is_finite() && scale >= 1.0;
        if !(sound && (0.0..=1.0).contains(&check)) {
            return Err("refine_shift must be > 0, refine_scale >= 1 and refine_check_iou in 0..=1".into());
        }
        if !(0.0..=1.0).contains(&self.cut_threshold) {
            return Err("cut_threshold must lie in 0..=1 (0: no cut detection)".into());
        }
        if !(1..=9).contains(&self.gzip) || !(1..=100).contains(&self.jpeg_quality) {
            return Err("gzip must be 1..=9 and jpeg_quality 1..=100".into());
        }
        Ok(())
    }

    /// The shards' pixel storage.
    pub(crate) fn pixel_format(&self) -> PixelFormat {
        PixelFormat { encoding: self.encoding, gzip_level: self.gzip, jpeg_quality: self.jpeg_quality }
    }

    pub(crate) fn to_toml(&self) -> String {
        toml::to_string(self).expect("config serialises")
    }

    /// sha256 of the resolved config and the detector model hash.
    pub(crate) fn hash(&self, detector_hash: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.to_toml().as_bytes());
        h.update(detector_hash.as_bytes());
        crate::digest::hex(&h.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_files_take_defaults_and_typos_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("prep.toml");
        std::fs::write(&p, "frames = 80\n").unwrap();
        let c = PrepConfig::load(&p).unwrap_err();
        assert!(c.to_string().contains("store_frames (64) at least frames"), "{c}");
        std::fs::write(&p, "no_face_policy = \"skip\"\n").unwrap();
        let e = PrepConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("skip") && e.contains("centre"), "{e}");
        std::fs::write(&p, "frames = 8\nstore_frames = 16\nmask_mode = \"blur\"\n").unwrap();
        let c = PrepConfig::load(&p).unwrap();
        assert_eq!((c.frames, c.mask_mode, c.face_size), (8, MaskMode::Blur, 224));
        std::fs::write(&p, "frame = 8\n").unwrap();
        let e = PrepConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("prep.toml") && e.contains("frame"), "{e}");
    }

    #[test]
    fn refine_and_cut_settings_are_checked() {
        let bad = |c: PrepConfig| c.validate().unwrap_err();
        assert!(bad(PrepConfig { refine_shift: 0.0, ..PrepConfig::default() }).contains("refine_shift"));
        assert!(bad(PrepConfig { refine_scale: 0.9, ..PrepConfig::default() }).contains("refine_scale"));
        assert!(bad(PrepConfig { refine_check_iou: f32::NAN, ..PrepConfig::default() }).contains("refine_check_iou"));
        assert!(bad(PrepConfig { cut_threshold: 1.5, ..PrepConfig::default() }).contains("cut_threshold"));
        assert!(PrepConfig { cut_threshold: 0.0, ..PrepConfig::default() }.validate().is_ok());
        assert!(bad(PrepConfig { det_search_every: 0, ..PrepConfig::default() }).contains("det_search_every"));
        assert!(bad(PrepConfig { det_crop_margin: f32::NAN, ..PrepConfig::default() }).contains("det_crop_margin"));
    }

    #[test]
    fn hash_changes_with_settings_and_detector() {
        let a = PrepConfig::default();
        let b = PrepConfig { margin: 1.4, ..PrepConfig::default() };
        assert_ne!(a.hash("x"), b.hash("x"));
        assert_ne!(a.hash("x"), a.hash("y"));
        assert_eq!(a.hash("x"), PrepConfig::default().hash("x"));
    }
}
