//! Every reference to the documentation resolves: in every text file of the repository, a
//! markdown file named under the docs folder exists, and a reference to a section (README or a
//! docs file followed by a quoted heading) names a heading that file has.

use std::path::{Path, PathBuf};

/// The repository's text files where references live (fixtures and build outputs left out).
fn text_files(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut todo: Vec<PathBuf> =
        ["src", "tests", "pipelines", "scripts", "bench", "docs", "data-manifests", ".ci", "fuzz"]
            .iter()
            .map(|d| root.join(d))
            .collect();
    out.extend(["README.md", "CHANGELOG.md", "Cargo.toml", "Makefile"].iter().map(|f| root.join(f)));
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                if !["fixtures", "target", "corpus", "artifacts", "__pycache__"].contains(&name.as_str()) {
                    todo.push(p);
                }
            } else if [".rs", ".md", ".toml", ".sh", ".py", ".yaml", ".sbatch", "run"].iter().any(|x| name.ends_with(x))
            {
                out.push(p);
            }
        }
    }
    out.into_iter().filter(|p| p.is_file()).collect()
}

/// The headings of a markdown file, without their `#`s.
fn headings(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter(|l| l.starts_with('#')).map(|l| l.trim_start_matches('#').trim().to_string()).collect()
}

/// `(file, heading)` of every reference in `text`: a docs folder's markdown file with an
/// optional quoted heading after it, and README (or README.md) with one.
fn references(text: &str) -> Vec<(String, Option<String>)> {
    let quoted = |rest: &str| -> Option<String> {
        let rest = rest.strip_prefix(" \"")?;
        Some(rest[..rest.find('"')?].to_string())
    };
    let mut out = vec![];
    for (i, _) in text.match_indices(concat!("do", "cs/")) {
        let rest = &text[i + 5..];
        let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
        if let Some(after) = rest[name.len()..].strip_prefix(".md") {
            out.push((format!("docs/{name}.md"), quoted(after)));
        }
    }
    let readme = concat!("READ", "ME");
    for (i, _) in text.match_indices(readme) {
        let rest = &text[i + readme.len()..];
        let rest = rest.strip_prefix(".md").unwrap_or(rest);
        if let Some(h) = quoted(rest) {
            out.push(("README.md".into(), Some(h)));
        }
    }
    out
}

#[test]
fn every_documentation_reference_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut broken = vec![];
    let mut seen = 0;
    for file in text_files(root) {
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        for (target, heading) in references(&text) {
            seen += 1;
            let path = root.join(&target);
            let shown = file.strip_prefix(root).unwrap().display().to_string();
            if !path.is_file() {
                broken.push(format!("{shown}: {target} does not exist"));
            } else if let Some(h) = heading {
                if !headings(&path).contains(&h) {
                    broken.push(format!("{shown}: {target} has no heading \"{h}\""));
                }
            }
        }
    }
    assert!(seen > 20, "only {seen} references found: is the scan looking in the right places?");
    assert!(broken.is_empty(), "{} broken references:\n{}", broken.len(), broken.join("\n"));
}

#[test]
fn references_are_found_in_every_form() {
    // Spelt in pieces, so that the scan of this very file finds none of them.
    let (readme, docs) = (concat!("READ", "ME"), concat!("do", "cs/"));
    let text = format!(
        "{readme} \"Quick start\", {readme}.md \"Build\", {docs}gpu.md, {docs}formats.md \"Shards\" and {docs}x (no md)"
    );
    let got = references(&text);
    let want = [
        (format!("{docs}gpu.md"), None),
        (format!("{docs}formats.md"), Some("Shards".to_string())),
        ("README.md".to_string(), Some("Quick start".to_string())),
        ("README.md".to_string(), Some("Build".to_string())),
    ];
    assert_eq!(got, want);
}
