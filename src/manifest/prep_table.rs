//! The prep table (`prep.parquet`, `shards/NNNNN.parquet`; one row per manifest row): its
//! column names, its files (written with the metadata key that marks them, read only when
//! marked). A format shared by prep (which writes and merges it: `src/prep/tables.rs`) and the
//! trainer (which reads it).

use std::path::Path;

use anyhow::Result;
use polars::prelude::*;

use super::{read_parquet, write_parquet, PREP_TABLE_KEY};
use crate::error::UsageError;

/// The prep table's columns, in file order (docs/formats.md "prep.parquet").
pub(crate) struct PrepTable;

impl PrepTable {
    pub(crate) const CLIP_ID: &'static str = "clip_id";
    pub(crate) const MANIFEST_ROW: &'static str = "manifest_row";
    pub(crate) const LABEL: &'static str = "label";
    /// The shard the clip's row is in.
    pub(crate) const SHARD: &'static str = "shard";
    /// The clip's row in its shard; null when it was not written.
    pub(crate) const ROW: &'static str = "row";
    pub(crate) const STATUS: &'static str = "status";
    pub(crate) const ERROR: &'static str = "error";
    pub(crate) const DETECTION_RATE: &'static str = "detection_rate";
    pub(crate) const MEAN_SCORE: &'static str = "mean_score";
    pub(crate) const DETECTOR_FRAMES: &'static str = "detector_frames";
    /// Of the detector's frames, those it looked at only in a window around the tracked face.
    pub(crate) const WINDOWED_FRAMES: &'static str = "windowed_frames";
    pub(crate) const LOST_FRAMES: &'static str = "lost_frames";
    pub(crate) const SHOTS: &'static str = "shots";
    /// Frames of the whole clip, and the frames its shard row stores.
    pub(crate) const CLIP_FRAMES: &'static str = "clip_frames";
    pub(crate) const STORED_FRAMES: &'static str = "stored_frames";
    /// Milliseconds per clip of each stage: decode, detect, crop, write.
    pub(crate) const STAGE_MS: [&'static str; 4] = ["decode_ms", "detect_ms", "crop_ms", "write_ms"];

    /// Writes `df` to `path`, marked as a prep table in its metadata.
    pub(crate) fn write(df: &mut DataFrame, path: &Path) -> Result<()> {
        write_parquet(df, vec![(PREP_TABLE_KEY.to_string(), "1".to_string())], path)
    }

    /// Reads a prep table; a Parquet file without the mark is refused.
    pub(crate) fn read(path: &Path) -> Result<DataFrame> {
        let (df, meta) = read_parquet(path)?;
        if !meta.iter().any(|(k, _)| k == PREP_TABLE_KEY) {
            return Err(UsageError::new(format!("{}: not a prep table (prep.parquet)", path.display())).into());
        }
        Ok(df)
    }
}
