//! Split-file and label-table parsing: turns a dataset's official split files (or one generic
//! CSV) into one entry per clip with its label and fold roles, plus line-level diagnostics.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

use super::{DatasetDesc, IdRule, LabelEncoding, LabelTable, SplitFiles};
use crate::clip_status::ClipStatus;
use crate::error::UsageError;
use crate::text_enum::text_enum;

/// How serious a diagnostic is. Errors drop a line or mark a clip; notes change nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Note,
    Warning,
    Error,
}

/// A problem found in an input file, with where it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: Option<usize>,
    pub severity: Severity,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        match self.line {
            Some(l) => write!(f, "{}:{}: {}: {}", self.file, l, sev, self.message),
            None => write!(f, "{}: {}: {}", self.file, sev, self.message),
        }
    }
}

text_enum! {
    /// A clip's role in one split or fold.
    pub enum Role("role") {
        Train = "train",
        Val = "val",
        Test = "test",
    }
}

/// A disagreement of the split files about one clip; shown as `status: message`.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// `LabelConflict` or `SplitConflict`.
    pub status: ClipStatus,
    /// Which files say what.
    pub message: String,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

/// One clip named by the split files.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitEntry {
    pub id: String,
    pub label: usize,
    /// Role per fold (index k-1 for fold k), or a single element for single-split datasets.
    pub roles: Vec<Option<Role>>,
    /// Source path given by a label table; split-file datasets use `[sources]` patterns.
    pub path: Option<String>,
    /// Set when the split files disagree about this clip (label or role conflict).
    pub conflict: Option<Conflict>,
    /// Where the clip was first named: `file:line`.
    pub origin: String,
}

/// Every clip the split files name, sorted by id, with the diagnostics found on the way.
#[derive(Debug, Default)]
pub struct SplitIndex {
    /// Number of folds; 0 when the dataset has a single split.
    pub folds: u32,
    pub entries: Vec<SplitEntry>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Reads the split files or label table of `desc` under `root`.
pub fn read(desc: &DatasetDesc, root: &Path) -> Result<SplitIndex, UsageError> {
    let mut acc = Accumulator::new(&desc.labels);
    if let Some(s) = &desc.splits {
        let folds = s.folds.unwrap_or(0);
        acc.slots = folds.max(1) as usize;
        for fold in 1..=folds.max(1) {
            for (role, pattern) in [(Role::Train, &s.train), (Role::Test, &s.test)] {
                let rel = pattern.replace("{fold}", &fold.to_string());
                let text = read_text(&root.join(&rel), &rel, &mut acc.diagnostics)?;
                parse_split_file(desc, s, &rel, &text, (fold - 1) as usize, role, &mut acc)?;
            }
        }
        Ok(acc.finish(folds))
    } else {
        let t = desc.table.as_ref().expect("validated: splits or table");
        let text = read_text(&root.join(&t.file), &t.file, &mut acc.diagnostics)?;
        let folds = parse_table(desc, t, &t.file, &text, &mut acc)?;
        Ok(acc.finish(folds))
    }
}

/// Collects entries and diagnostics while split files are read.
struct Accumulator<'a> {
    labels: &'a [String],
    slots: usize,
    by_id: BTreeMap<String, SplitEntry>,
    diagnostics: Vec<Diagnostic>,
}

impl<'a> Accumulator<'a> {
    fn new(labels: &'a [String]) -> Self {
        Accumulator { labels, slots: 1, by_id: BTreeMap::new(), diagnostics: Vec::new() }
    }

    fn diag(&mut self, file: &str, line: usize, severity: Severity, message: String) {
        self.diagnostics.push(Diagnostic { file: file.into(), line: Some(line), severity, message });
    }

    /// Records that `id` has `label` and `role` in `slot`, noting any disagreement.
    fn add(&mut self, id: String, label: usize, slot: usize, role: Option<Role>, path: Option<String>, origin: String) {
        let labels = self.labels;
        let slots = self.slots;
        let entry = self.by_id.entry(id.clone()).or_insert_with(|| SplitEntry {
            id,
            label,
            roles: vec![None; slots],
            path,
            conflict: None,
            origin: origin.clone(),
        });
        if entry.label != label && entry.conflict.is_none() {
            entry.conflict = Some(Conflict {
                status: ClipStatus::LabelConflict,
                message: format!("{} says {}, {} says {}", entry.origin, labels[entry.label], origin, labels[label]),
            });
        }
        if let Some(role) = role {
            match entry.roles[slot] {
                Some(prev) if prev != role && entry.conflict.is_none() => {
                    let fold = if slots > 1 { format!(" of fold {}", slot + 1) } else { String::new() };
                    entry.conflict = Some(Conflict {
                        status: ClipStatus::SplitConflict,
                        message: format!(
                            "in both {} and {}{fold} ({} and {})",
                            prev.as_str(),
                            role.as_str(),
                            entry.origin,
                            origin
                        ),
                    });
                }
                _ => entry.roles[slot] = Some(role),
            }
        }
    }

    fn finish(self, folds: u32) -> SplitIndex {
        let mut diagnostics = self.diagnostics;
        for e in self.by_id.values() {
            if let Some(c) = &e.conflict {
                let (file, line) = split_origin(&e.origin);
                diagnostics.push(Diagnostic {
                    file,
                    line,
                    severity: Severity::Error,
                    message: format!("clip {}: {c}", e.id),
                });
            }
        }
        SplitIndex { folds, entries: self.by_id.into_values().collect(), diagnostics }
    }
}

fn split_origin(origin: &str) -> (String, Option<usize>) {
    match origin.rsplit_once(':') {
        Some((f, l)) => (f.to_string(), l.parse().ok()),
        None => (origin.to_string(), None),
    }
}

/// Reads a text file, noting a BOM and CRLF line endings; a missing or non-UTF-8 file is fatal.
fn read_text(path: &Path, rel: &str, diags: &mut Vec<Diagnostic>) -> Result<String, UsageError> {
    let bytes =
        std::fs::read(path).map_err(|e| UsageError::new(format!("{}: cannot read split file: {e}", path.display())))?;
    let mut text =
        String::from_utf8(bytes).map_err(|e| UsageError::new(format!("{}: not UTF-8 text ({e})", path.display())))?;
    if let Some(stripped) = text.strip_prefix('\u{feff}') {
        text = stripped.to_string();
        diags.push(Diagnostic {
            file: rel.into(),
            line: Some(1),
            severity: Severity::Note,
            message: "UTF-8 byte-order mark ignored".into(),
        });
    }
    if text.contains("\r\n") {
        text = text.replace("\r\n", "\n");
        diags.push(Diagnostic {
            file: rel.into(),
            line: None,
            severity: Severity::Note,
            message: "CRLF line endings read as LF".into(),
        });
    }
    Ok(text)
}

/// Non-empty lines with their 1-based numbers.
fn numbered_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split('\n').enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty())
}

/// Rejects ids that would reach outside the dataset root.
pub(crate) fn check_inside_root(id: &str) -> Result<(), String> {
    let p = Path::new(id);
    if p.is_absolute() || id.starts_with('/') || id.contains('\\') {
        return Err(format!("'{id}' is an absolute path; paths must be relative to the dataset root"));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("'{id}' points outside the dataset root (contains '..')"));
    }
    Ok(())
}

fn parse_id(raw: &str, rule: IdRule) -> Result<String, String> {
    let id = match rule {
        IdRule::Pad5 => {
            let n: u64 = raw.parse().map_err(|_| format!("clip id '{raw}' is not an integer"))?;
            format!("{n:05}")
        }
        IdRule::StripExt => match raw.rsplit_once('.') {
            Some((stem, _)) if !stem.is_empty() => stem.to_string(),
            _ => raw.to_string(),
        },
        IdRule::Path => raw.trim_end_matches('/').to_string(),
    };
    check_inside_root(&id)?;
    Ok(id)
}

fn parse_label(raw: &str, enc: LabelEncoding, base: i64, labels: &[String]) -> Result<usize, String> {
    match enc {
        LabelEncoding::Index => {
            let v: i64 = raw.parse().map_err(|_| format!("label '{raw}' is not an integer"))?;
            let n = labels.len() as i64;
            if v < base || v >= base + n {
                return Err(format!("label {v} out of range {base}..={}", base + n - 1));
            }
            Ok((v - base) as usize)
        }
        LabelEncoding::Name => labels.iter().position(|l| l == raw).ok_or_else(|| {
            let hint = labels
                .iter()
                .find(|l| l.eq_ignore_ascii_case(raw))
                .map(|l| format!(" (did you mean '{l}'?)"))
                .unwrap_or_default();
            format!("unknown label '{raw}'{hint}; labels are {}", labels.join(", "))
        }),
    }
}

fn parse_split_file(
    desc: &DatasetDesc,
    s: &SplitFiles,
    rel: &str,
    text: &str,
    slot: usize,
    role: Role,
    acc: &mut Accumulator,
) -> Result<(), UsageError> {
    let mut lines = numbered_lines(text).peekable();
    if let Some(expected) = &s.header {
        match lines.next() {
            Some((_, first)) if s.delimiter.fields(first) == *expected => {}
            Some((n, first)) => {
                return Err(UsageError::new(format!(
                    "{rel}:{n}: expected the header '{}', found '{first}'",
                    expected.join(s.delimiter.joiner())
                )))
            }
            None => return Err(UsageError::new(format!("{rel}: empty split file (expected a header)"))),
        }
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (n, line) in lines {
        let f = s.delimiter.fields(line);
        if f.len() != 2 {
            acc.diag(rel, n, Severity::Error, format!("expected 2 fields (clip, label), found {}: '{line}'", f.len()));
            continue;
        }
        let parsed =
            parse_id(f[0], s.id).and_then(|id| parse_label(f[1], s.label, s.label_base, &desc.labels).map(|l| (id, l)));
        let (id, label) = match parsed {
            Ok(v) => v,
            Err(m) => {
                acc.diag(rel, n, Severity::Error, m);
                continue;
            }
        };
        if let Some(prev) = seen.insert(id.clone(), n) {
            acc.diag(rel, n, Severity::Warning, format!("clip {id} listed again (first on line {prev})"));
        }
        acc.add(id, label, slot, Some(role), None, format!("{rel}:{n}"));
    }
    Ok(())
}

/// Splits one CSV line, honouring double-quoted fields.
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur).trim().to_string()),
            _ => cur.push(c),
        }
    }
    out.push(cur.trim().to_string());
    out
}

/// Parses a generic label table; returns its number of folds.
fn parse_table(
    desc: &DatasetDesc,
    t: &LabelTable,
    rel: &str,
    text: &str,
    acc: &mut Accumulator,
) -> Result<u32, UsageError> {
    let mut lines = numbered_lines(text);
    let (hn, header) = lines
        .next()
        .ok_or_else(|| UsageError::new(format!("{rel}: empty label table (expected a header with path,label)")))?;
    let cols = csv_fields(header);
    let col = |name: &str| cols.iter().position(|c| c == name);
    let (Some(path_col), Some(label_col)) = (col("path"), col("label")) else {
        return Err(UsageError::new(format!(
            "{rel}:{hn}: the header must name the columns 'path' and 'label', found '{header}'"
        )));
    };
    let split_col = col("split");
    let mut fold_cols = Vec::new();
    while let Some(c) = col(&format!("fold_{}", fold_cols.len() + 1)) {
        fold_cols.push(c);
    }
    if split_col.is_some() && !fold_cols.is_empty() {
        return Err(UsageError::new(format!("{rel}:{hn}: give either a 'split' column or 'fold_k' columns, not both")));
    }
    acc.slots = fold_cols.len().max(1);
    for (n, line) in lines {
        let f = csv_fields(line);
        if f.len() != cols.len() {
            acc.diag(rel, n, Severity::Error, format!("expected {} fields, found {}: '{line}'", cols.len(), f.len()));
            continue;
        }
        let path = f[path_col].trim_end_matches('/').to_string();
        let parsed =
            check_inside_root(&path).and_then(|_| parse_label(&f[label_col], t.label, t.label_base, &desc.labels));
        let label = match parsed {
            Ok(l) => l,
            Err(m) => {
                acc.diag(rel, n, Severity::Error, m);
                continue;
            }
        };
        let id = parse_id(&path, IdRule::StripExt).expect("path already checked");
        let origin = format!("{rel}:{n}");
        let role_cols: Vec<usize> = split_col.map(|c| vec![c]).unwrap_or_else(|| fold_cols.clone());
        if role_cols.is_empty() {
            acc.add(id, label, 0, None, Some(path), origin);
            continue;
        }
        for (slot, &c) in role_cols.iter().enumerate() {
            let raw = f[c].as_str();
            let role = if raw.is_empty() {
                None
            } else if let Ok(r) = raw.parse::<Role>() {
                Some(r)
            } else {
                acc.diag(
                    rel,
                    n,
                    Severity::Error,
                    format!("column '{}' is '{raw}', expected train, val, test or empty", cols[c]),
                );
                None
            };
            acc.add(id.clone(), label, slot, role, Some(path.clone()), origin.clone());
        }
    }
    Ok(fold_cols.len() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn dfew_root(test1: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for k in 1..=5 {
            write(dir.path(), &format!("EmoLabel_DataSplit/train(single-labeled)/set_{k}.csv"), "video_name,label\n");
            let t = if k == 1 { test1.to_string() } else { "video_name,label\n".to_string() };
            write(dir.path(), &format!("EmoLabel_DataSplit/test(single-labeled)/set_{k}.csv"), &t);
        }
        dir
    }

    #[test]
    fn dfew_pads_ids_and_subtracts_base() {
        let dir = dfew_root("video_name,label\n1,1\n00023,7\n");
        let idx = read(&DatasetDesc::load("dfew").unwrap(), dir.path()).unwrap();
        assert_eq!(idx.folds, 5);
        let ids: Vec<_> = idx.entries.iter().map(|e| (e.id.as_str(), e.label)).collect();
        assert_eq!(ids, vec![("00001", 0), ("00023", 6)]);
        assert_eq!(idx.entries[0].roles, vec![Some(Role::Test), None, None, None, None]);
        assert!(idx.diagnostics.is_empty(), "{:?}", idx.diagnostics);
    }

    #[test]
    fn dfew_bom_crlf_are_notes_and_bad_lines_are_errors_with_line_numbers() {
        let dir = dfew_root("\u{feff}video_name,label\r\n1,0\r\n2,8\r\nabc,1\r\n3\r\n4,2\r\n4,2\r\n");
        let idx = read(&DatasetDesc::load("dfew").unwrap(), dir.path()).unwrap();
        let d: Vec<String> = idx.diagnostics.iter().map(|d| d.to_string()).collect();
        let f = "EmoLabel_DataSplit/test(single-labeled)/set_1.csv";
        assert!(d.contains(&format!("{f}:1: note: UTF-8 byte-order mark ignored")), "{d:?}");
        assert!(d.contains(&format!("{f}: note: CRLF line endings read as LF")), "{d:?}");
        assert!(d.contains(&format!("{f}:2: error: label 0 out of range 1..=7")), "{d:?}");
        assert!(d.contains(&format!("{f}:3: error: label 8 out of range 1..=7")), "{d:?}");
        assert!(d.contains(&format!("{f}:4: error: clip id 'abc' is not an integer")), "{d:?}");
        assert!(d.iter().any(|m| m.starts_with(&format!("{f}:5: error: expected 2 fields"))), "{d:?}");
        assert!(d.contains(&format!("{f}:7: warning: clip 00004 listed again (first on line 6)")), "{d:?}");
        assert_eq!(idx.entries.len(), 1);
    }

    #[test]
    fn wrong_header_is_fatal_and_names_the_file() {
        let dir = dfew_root("id,emotion\n1,1\n");
        let e = read(&DatasetDesc::load("dfew").unwrap(), dir.path()).unwrap_err().to_string();
        assert!(e.contains("set_1.csv:1") && e.contains("expected the header 'video_name,label'"), "{e}");
    }

    #[test]
    fn missing_split_file_is_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let e = read(&DatasetDesc::load("dfew").unwrap(), dir.path()).unwrap_err().to_string();
        assert!(e.contains("set_1.csv") && e.contains("cannot read split file"), "{e}");
    }

    #[test]
    fn clip_in_train_and_test_of_one_fold_is_a_conflict() {
        let dir = dfew_root("video_name,label\n5,2\n");
        write(dir.path(), "EmoLabel_DataSplit/train(single-labeled)/set_1.csv", "video_name,label\n5,2\n");
        let idx = read(&DatasetDesc::load("dfew").unwrap(), dir.path()).unwrap();
        let c = idx.entries[0].conflict.as_ref().unwrap().to_string();
        assert!(c.starts_with("split_conflict: in both train and test of fold 1"), "{c}");
        assert!(idx.diagnostics.iter().any(|d| d.severity == Severity::Error && d.message.contains("00005")));
    }

    #[test]
    fn label_disagreement_across_files_is_a_conflict() {
        let dir = dfew_root("video_name,label\n5,2\n");
        write(dir.path(), "EmoLabel_DataSplit/train(single-labeled)/set_2.csv", "video_name,label\n5,3\n");
        let idx = read(&DatasetDesc::load("dfew").unwrap(), dir.path()).unwrap();
        let c = idx.entries[0].conflict.as_ref().unwrap().to_string();
        assert!(c.starts_with("label_conflict:") && c.contains("says Sad") && c.contains("says Neutral"), "{c}");
    }

    #[test]
    fn ferv39k_names_paths_and_unknown_labels() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "4_setups/All_scenes/train_All.csv",
            "Action/Happy/0015 Happy\nAction/Sad/0002 sad\n../etc/passwd Happy\n",
        );
        write(dir.path(), "4_setups/All_scenes/test_All.csv", "War/Fear/0001 Fear\n");
        let idx = read(&DatasetDesc::load("ferv39k").unwrap(), dir.path()).unwrap();
        assert_eq!(idx.folds, 0);
        let ids: Vec<_> = idx.entries.iter().map(|e| (e.id.as_str(), e.label, e.roles[0])).collect();
        assert_eq!(ids, vec![("Action/Happy/0015", 3, Some(Role::Train)), ("War/Fear/0001", 2, Some(Role::Test))]);
        let d: Vec<String> = idx.diagnostics.iter().map(|d| d.to_string()).collect();
        assert!(
            d.iter().any(|m| m.contains("train_All.csv:2: error: unknown label 'sad' (did you mean 'Sad'?)")),
            "{d:?}"
        );
        assert!(
            d.iter().any(|m| m.contains("train_All.csv:3: error: '../etc/passwd' points outside the dataset root")),
            "{d:?}"
        );
    }

    #[test]
    fn mafw_strips_extension() {
        let dir = tempfile::tempdir().unwrap();
        for k in 1..=5 {
            write(
                dir.path(),
                &format!("split/single/no_caption/set_{k}/train.txt"),
                if k == 1 { "00025.mp4 anger\n" } else { "" },
            );
            write(dir.path(), &format!("split/single/no_caption/set_{k}/test.txt"), "");
        }
        let idx = read(&DatasetDesc::load("mafw").unwrap(), dir.path()).unwrap();
        assert_eq!(idx.entries[0].id, "00025");
        assert_eq!(idx.entries[0].label, 0);
    }

    #[test]
    fn generic_table_with_folds_and_quotes() {
        let dir = tempfile::tempdir().unwrap();
        let desc =
            DatasetDesc::parse(include_str!("../../data-manifests/generic-csv.toml"), Path::new("g.toml")).unwrap();
        write(dir.path(), "labels.csv", "path,label,fold_1,fold_2\n\"a, b/c1.mp4\",positive,train,test\nd/c2,neutral,test,train\n/abs.mp4,neutral,test,train\nx.mp4,happy,train,\ny.mp4,neutral,dev,train\n");
        let idx = read(&desc, dir.path()).unwrap();
        assert_eq!(idx.folds, 2);
        let e: Vec<_> =
            idx.entries.iter().map(|e| (e.id.as_str(), e.path.as_deref().unwrap(), e.label, e.roles.clone())).collect();
        assert_eq!(e[0], ("a, b/c1", "a, b/c1.mp4", 2, vec![Some(Role::Train), Some(Role::Test)]));
        assert_eq!(e[1], ("d/c2", "d/c2", 1, vec![Some(Role::Test), Some(Role::Train)]));
        let d: Vec<String> = idx.diagnostics.iter().map(|d| d.to_string()).collect();
        assert!(d.iter().any(|m| m.contains("labels.csv:4: error: '/abs.mp4' is an absolute path")), "{d:?}");
        assert!(d.iter().any(|m| m.contains("labels.csv:5: error: unknown label 'happy'")), "{d:?}");
        assert!(d.iter().any(|m| m.contains("labels.csv:6: error: column 'fold_1' is 'dev'")), "{d:?}");
    }

    #[test]
    fn generic_table_needs_path_and_label() {
        let dir = tempfile::tempdir().unwrap();
        let desc =
            DatasetDesc::parse(include_str!("../../data-manifests/generic-csv.toml"), Path::new("g.toml")).unwrap();
        write(dir.path(), "labels.csv", "file,emotion\n");
        let e = read(&desc, dir.path()).unwrap_err().to_string();
        assert!(e.contains("labels.csv:1") && e.contains("'path' and 'label'"), "{e}");
    }
}
