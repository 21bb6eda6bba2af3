//! Folder snapshots and their comparison, for tests that check what a command wrote or left alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Files by name (a path relative to the snapshot's folder) with their bytes.
pub type Files = BTreeMap<String, Vec<u8>>;

/// Every file under `dir`, in its subfolders too (panics if a folder cannot be read).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Every file under `dir`, in its subfolders too, by path relative to `dir`.
pub fn snapshot(dir: &Path) -> Files {
    walk(dir)
        .into_iter()
        .map(|p| (p.strip_prefix(dir).unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect()
}

/// The plain files directly in `dir` (not those in its subfolders), by file name.
pub fn top_files(dir: &Path) -> Files {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect()
}

/// The shard files (`*.h5`) of a prep output `out`, by file name.
pub fn shard_files(out: &Path) -> Files {
    only_h5(top_files(&out.join("shards")))
}

/// The `*.h5` files of `files`.
pub fn only_h5(mut files: Files) -> Files {
    files.retain(|name, _| name.ends_with(".h5"));
    files
}

/// Names of the files added, removed or changed from `a` to `b`.
pub fn changed(a: &Files, b: &Files) -> Vec<String> {
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    names.into_iter().filter(|n| a.get(*n) != b.get(*n)).cloned().collect()
}

/// Which files are missing, extra or different (JSON records shown whole; elsewhere the first
/// differing byte), for a failure message; empty when `got` equals `want`.
pub fn differences(got: &Files, want: &Files) -> String {
    let mut out = String::new();
    for name in changed(want, got) {
        match (got.get(&name), want.get(&name)) {
            (None, _) => out += &format!("\n  missing {name}"),
            (Some(_), None) => out += &format!("\n  extra {name}"),
            (Some(b), Some(bytes)) if name.ends_with(".json") => {
                let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                out += &format!("\n  {name} differs:\n  got  {}\n  want {}", text(b), text(bytes));
            }
            (Some(b), Some(bytes)) => {
                let at = b.iter().zip(bytes).position(|(x, y)| x != y).unwrap_or(b.len().min(bytes.len()));
                out += &format!("\n  {name} differs from byte {at} ({} vs {} bytes)", b.len(), bytes.len());
            }
        }
    }
    out
}

/// Panics unless `got` holds exactly the files of `want` with the same bytes, naming what differs.
pub fn assert_same(got: &Files, want: &Files, what: &str) {
    assert!(got == want, "{what} differ from the reference:{}", differences(got, want));
}
