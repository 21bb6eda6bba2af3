//! Files that are whole or absent: everything dfer writes goes to `name.tmp-PID` beside its
//! final name and is renamed when complete, so a killed or failed write never looks finished.
//! A failed write removes its temporary file; a killed one's is removed by the next run.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::error::UsageError;

/// `name.tmp-PID` beside `path`: written first, renamed when complete.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// Writes `path` by calling `write` on its temporary name, then renaming. If `write` fails the
/// temporary file is removed and the error returned; `path` is untouched.
pub(crate) fn write_via_tmp(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = tmp_path(path);
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot rename into place", path.display()))
}

/// Writes `bytes` to `path` whole (synced before the rename) or not at all.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_via_tmp(path, |tmp| {
        let mut f = std::fs::File::create(tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
        f.write_all(bytes).and_then(|_| f.sync_all()).with_context(|| format!("{}: cannot write", tmp.display()))
    })
}

/// The text of `path`, or `None` when there is no such file. A file that exists but cannot be
/// read (permissions, not UTF-8, an I/O error) is an error naming it, never taken for absent.
pub(crate) fn read_if_exists(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(UsageError::new(format!("{}: exists but cannot be read: {e}", path.display())).into()),
    }
}

/// Removes the temporary files that a killed process left in `dir` for the final names `of`
/// accepts.
pub(crate) fn remove_unfinished(dir: &Path, of: impl Fn(&str) -> bool) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for e in entries {
        let path = e?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.rsplit_once(".tmp-").is_some_and(|(fin, _)| of(fin)) {
            tracing::info!("removing unfinished {}", path.display());
            std::fs::remove_file(&path).with_context(|| format!("{}: cannot remove", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_leaves_nothing_and_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"old").unwrap();
        let e = write_via_tmp(&p, |tmp| {
            std::fs::write(tmp, b"half")?;
            anyhow::bail!("{}: No space left on device", tmp.display())
        })
        .unwrap_err();
        assert!(e.to_string().contains("a.json.tmp-"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "temporary file removed");
    }

    #[test]
    fn only_unfinished_files_of_the_named_outputs_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["00001.h5.tmp-17", "00002.h5.tmp-17", "00001.h5", "notes.txt"] {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        remove_unfinished(dir.path(), |fin| fin == "00001.h5").unwrap();
        let mut left: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["00001.h5", "00002.h5.tmp-17", "notes.txt"]);
        remove_unfinished(&dir.path().join("absent"), |_| true).unwrap();
    }
}
