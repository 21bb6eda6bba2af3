//! Frame folders (official face-crop folders such as DFEW `clip_224x224/NNNNN/`): image files
//! ordered by the number in their name, not lexicographically.

use std::path::{Path, PathBuf};

const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp"];

/// Sort key: the last run of digits in the file stem (absent sorts first), then the name.
fn numeric_key(path: &Path) -> (Option<u64>, String) {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let digits: String = stem
        .chars()
        .rev()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    (digits.parse().ok(), stem)
}

/// Image files in `dir`, ordered numerically (`2.jpg` before `10.jpg`).
pub(crate) fn list(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .map(|e| IMAGE_EXTENSIONS.contains(&e.to_string_lossy().to_ascii_lowercase().as_str()))
                    .unwrap_or(false)
        })
        .collect();
    files.sort_by_cached_key(|p| numeric_key(p));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_numerically_and_ignores_other_files() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["10.jpg", "2.jpg", "1.jpg", "notes.txt", "frame_003.PNG"] {
            std::fs::write(dir.path().join(n), b"").unwrap();
        }
        let names: Vec<String> =
            list(dir.path()).unwrap().iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, vec!["1.jpg", "2.jpg", "frame_003.PNG", "10.jpg"]);
    }
}
