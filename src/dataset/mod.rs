//! Dataset descriptions (`data-manifests/*.toml`): label names in official order, polarity,
//! where split files and sources live, and how split files encode ids and labels.

pub mod splits;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::UsageError;
use crate::text_enum::text_enum;

/// The descriptions that ship with dfer, selectable by name (`--dataset dfew`).
const BUILTIN: &[(&str, &str)] = &[
    ("dfew", include_str!("../../data-manifests/dfew.toml")),
    ("ferv39k", include_str!("../../data-manifests/ferv39k.toml")),
    ("mafw", include_str!("../../data-manifests/mafw.toml")),
];

/// Names accepted by `--dataset` besides a path to a TOML file.
pub fn builtin_names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(n, _)| *n).collect()
}

text_enum! {
    /// Emotional polarity of a label, the target of OUS's polarity loss; written by name in
    /// description files, manifests and shard attributes.
    pub enum Polarity("polarity") {
        Negative = "negative",
        Neutral = "neutral",
        Positive = "positive",
    }
}

impl Polarity {
    /// Index used as a class target: negative 0, neutral 1, positive 2.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// How a split file writes its labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelEncoding {
    /// Integers counted from `label_base` in the order of `labels`.
    Index,
    /// Label names exactly as in `labels`.
    Name,
}

/// How a split file's first field becomes a clip id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdRule {
    /// An integer, padded to five digits (DFEW `video_name`).
    Pad5,
    /// A file name whose extension is dropped (MAFW `00025.mp4`).
    StripExt,
    /// A relative path used as it is (FERV39k `Action/Happy/0015`).
    Path,
}

text_enum! {
    /// How the fields of a split-file line are separated.
    pub enum Delimiter("splits.delimiter") {
        /// `,` with the spaces around each field trimmed.
        Comma = ",",
        /// Any run of spaces or tabs.
        Whitespace = "whitespace",
    }
}

impl Delimiter {
    /// The fields of one line.
    pub(crate) fn fields(self, line: &str) -> Vec<&str> {
        match self {
            Delimiter::Whitespace => line.split_whitespace().collect(),
            Delimiter::Comma => line.split(',').map(str::trim).collect(),
        }
    }

    /// What joins fields when a line is shown.
    pub(crate) fn joiner(self) -> &'static str {
        match self {
            Delimiter::Comma => ",",
            Delimiter::Whitespace => " ",
        }
    }
}

/// Split files: one per role (train/test), optionally once per fold.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitFiles {
    /// Number of folds; absent for single-split datasets. `{fold}` in paths runs 1..=folds.
    pub folds: Option<u32>,
    pub train: String,
    pub test: String,
    pub delimiter: Delimiter,
    /// Expected header fields; absent when the files have no header.
    pub header: Option<Vec<String>>,
    pub label: LabelEncoding,
    #[serde(default)]
    pub label_base: i64,
    pub id: IdRule,
}

/// One CSV listing every clip (the generic adapter).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelTable {
    pub file: String,
    pub label: LabelEncoding,
    #[serde(default)]
    pub label_base: i64,
}

/// Where a clip's video or frame folder is, relative to the dataset root; `{id}` is the clip id.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sources {
    pub video: Option<String>,
    pub frames: Option<String>,
    pub default: SourceKind,
}

text_enum! {
    /// Which kind of source a clip is read from.
    #[derive(clap::ValueEnum)]
    pub enum SourceKind("source kind") {
        /// An encoded video file.
        Video = "video",
        /// A folder of numbered image files.
        Frames = "frames",
    }
}

/// A dataset description as read from TOML.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetDesc {
    pub name: String,
    /// Label names in the dataset's official order; the index of a name is its label.
    pub labels: Vec<String>,
    pub polarity: BTreeMap<String, Polarity>,
    pub splits: Option<SplitFiles>,
    pub table: Option<LabelTable>,
    pub sources: Option<Sources>,
}

impl DatasetDesc {
    /// Reads a built-in description by name, or a TOML file by path.
    pub fn load(name_or_path: &str) -> Result<Self, UsageError> {
        if let Some((name, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            return Self::parse(text, Path::new(&format!("data-manifests/{name}.toml")));
        }
        let path = PathBuf::from(name_or_path);
        if !path.exists() {
            return Err(UsageError::new(format!(
                "unknown dataset '{name_or_path}': not one of {} and no such file",
                builtin_names().join(", ")
            )));
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| UsageError::new(format!("{}: cannot read: {e}", path.display())))?;
        Self::parse(&text, &path)
    }

    /// Parses and validates a description; `origin` names the file in error messages.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, UsageError> {
        let desc: DatasetDesc = toml::from_str(text)
            .map_err(|e| UsageError::new(format!("{}: not a valid dataset description: {e}", origin.display())))?;
        desc.validate().map_err(|m| UsageError::new(format!("{}: {m}", origin.display())))?;
        Ok(desc)
    }

    fn validate(&self) -> Result<(), String> {
        if self.labels.is_empty() {
            return Err("`labels` is empty".into());
        }
        for (i, name) in self.labels.iter().enumerate() {
            if name.trim().is_empty() || name.chars().any(char::is_whitespace) {
                return Err(format!("label {i} '{name}' is empty or contains whitespace"));
            }
            if self.labels[..i].contains(name) {
                return Err(format!("label '{name}' is listed twice"));
            }
            if !self.polarity.contains_key(name) {
                return Err(format!("label '{name}' has no entry in [polarity]"));
            }
        }
        if let Some(extra) = self.polarity.keys().find(|k| !self.labels.contains(k)) {
            return Err(format!("[polarity] names '{extra}', which is not in `labels`"));
        }
        match (&self.splits, &self.table) {
            (Some(_), Some(_)) => return Err("give either [splits] or [table], not both".into()),
            (None, None) => return Err("give [splits] (split files) or [table] (one CSV)".into()),
            (Some(s), None) => {
                if self.sources.is_none() {
                    return Err("[splits] needs [sources] to find each clip".into());
                }
                if let Some(f) = s.folds {
                    if f == 0 || !s.train.contains("{fold}") || !s.test.contains("{fold}") {
                        return Err("splits.folds needs folds >= 1 and `{fold}` in both paths".into());
                    }
                }
            }
            (None, Some(_)) => {}
        }
        if let Some(src) = &self.sources {
            for (kind, pat) in [("video", &src.video), ("frames", &src.frames)] {
                if let Some(p) = pat {
                    if !p.contains("{id}") {
                        return Err(format!("sources.{kind} must contain `{{id}}`"));
                    }
                }
            }
            if src.pattern(src.default).is_none() {
                return Err(format!("sources.default is {} but sources.{0} is not set", src.default.as_str()));
            }
        }
        Ok(())
    }

    /// Polarity of label `index`.
    pub(crate) fn polarity_of(&self, index: usize) -> Polarity {
        self.polarity[&self.labels[index]]
    }

    /// Number of folds (0 for single-split datasets and label tables).
    pub(crate) fn folds(&self) -> u32 {
        self.splits.as_ref().and_then(|s| s.folds).unwrap_or(0)
    }

    /// Canonical TOML text of this description, stored with manifests for provenance.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a parsed description serialises")
    }
}

impl Sources {
    /// Path pattern of a source kind, if the dataset has that kind.
    pub(crate) fn pattern(&self, kind: SourceKind) -> Option<&str> {
        match kind {
            SourceKind::Video => self.video.as_deref(),
            SourceKind::Frames => self.frames.as_deref(),
        }
    }
}

/// The path of `rel` under `root`, refused when it reaches outside the root: an absolute
/// path, a `..` component, or a symbolic link (of the clip or a folder above it) whose target
/// lies outside.
pub(crate) fn path_inside_root(root: &Path, rel: &str) -> Result<PathBuf, String> {
    splits::check_inside_root(rel)?;
    let path = root.join(rel);
    if let (Ok(real), Ok(real_root)) = (path.canonicalize(), root.canonicalize()) {
        if !real.starts_with(&real_root) {
            return Err(format!(
                "{}: resolves to {}, outside the dataset root {}",
                path.display(),
                real.display(),
                real_root.display()
            ));
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_parse_and_keep_official_order() {
        let dfew = DatasetDesc::load("dfew").unwrap();
        assert_eq!(dfew.labels[0], "Happy");
        assert_eq!(dfew.labels[6], "Fear");
        assert_eq!(dfew.folds(), 5);
        assert_eq!(dfew.polarity_of(2), Polarity::Neutral);
        let ferv = DatasetDesc::load("ferv39k").unwrap();
        assert_eq!(ferv.folds(), 0);
        assert_eq!(ferv.labels.iter().position(|l| l == "Happy"), Some(3));
        let mafw = DatasetDesc::load("mafw").unwrap();
        assert_eq!(mafw.labels.len(), 11);
        assert_eq!(mafw.sources.unwrap().frames.as_deref(), Some("faces/{id}"));
    }

    #[test]
    fn generic_template_parses() {
        let text = include_str!("../../data-manifests/generic-csv.toml");
        let d = DatasetDesc::parse(text, Path::new("generic-csv.toml")).unwrap();
        assert!(d.table.is_some());
    }

    #[test]
    fn rejects_missing_polarity_and_unknown_fields() {
        let bad = "name='x'\nlabels=['a','b']\n[polarity]\na='positive'\n[table]\nfile='l.csv'\nlabel='name'\n";
        let e = DatasetDesc::parse(bad, Path::new("x.toml")).unwrap_err().to_string();
        assert!(e.contains("x.toml") && e.contains("'b' has no entry"), "{e}");
        let typo = "name='x'\nlables=['a']\n";
        let e = DatasetDesc::parse(typo, Path::new("y.toml")).unwrap_err().to_string();
        assert!(e.contains("y.toml") && e.contains("lables"), "{e}");
    }

    #[test]
    fn rejects_duplicate_labels_and_bad_patterns() {
        let dup = "name='x'\nlabels=['a','a']\n[polarity]\na='positive'\n[table]\nfile='l.csv'\nlabel='name'\n";
        assert!(DatasetDesc::parse(dup, Path::new("d.toml")).unwrap_err().to_string().contains("twice"));
        let pat = "name='x'\nlabels=['a']\n[polarity]\na='positive'\n[splits]\ntrain='t'\ntest='u'\ndelimiter=','\nlabel='name'\nid='path'\n[sources]\nvideo='v.mp4'\ndefault='video'\n";
        assert!(DatasetDesc::parse(pat, Path::new("p.toml")).unwrap_err().to_string().contains("{id}"));
        let semi = pat.replace("delimiter=','", "delimiter=';'").replace("v.mp4", "{id}.mp4");
        let e = DatasetDesc::parse(&semi, Path::new("s.toml")).unwrap_err().to_string();
        assert!(e.contains("s.toml") && e.contains("unknown splits.delimiter \";\" (, | whitespace)"), "{e}");
    }
}
