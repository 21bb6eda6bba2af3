//! A clip's status, from the manifest (can its source be read, do the split files agree?) to
//! prep (was a face found?); the `status` column of the clip manifest (`clips.parquet`) and `prep.parquet`.

use crate::text_enum::text_enum;

text_enum! {
    /// Why a clip can or cannot be used. Declared in alphabetical order of the text, so maps
    /// keyed by status list them as the tables sort them.
    pub enum ClipStatus("clip status") {
        /// Prep could not decode the source.
        DecodeError = "decode_error",
        /// The face detector failed on the clip.
        DetectError = "detect_error",
        /// The source file is empty.
        Empty = "empty",
        /// The split files give the clip two labels.
        LabelConflict = "label_conflict",
        /// The source does not exist.
        Missing = "missing",
        /// Too few stored frames show a face (`prep.min_detection_rate`).
        NoFace = "no_face",
        /// Usable.
        Ok = "ok",
        /// The source path leaves the dataset root.
        OutsideRoot = "outside_root",
        /// The split files put the clip in two roles of one fold.
        SplitConflict = "split_conflict",
        /// The frames are larger than prep takes (`video::probe::MAX_PIXELS`).
        TooLarge = "too_large",
        /// The source ends before the frames its header lists.
        Truncated = "truncated",
        /// The source exists but cannot be opened or demuxed.
        Unreadable = "unreadable",
    }
}

impl ClipStatus {
    pub fn is_ok(self) -> bool {
        self == ClipStatus::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_the_texts_order() {
        let texts: Vec<&str> = ClipStatus::ALL.iter().map(|s| s.as_str()).collect();
        let mut sorted = texts.clone();
        sorted.sort();
        assert_eq!(texts, sorted);
    }
}
