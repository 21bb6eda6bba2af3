//! The import table of docs/architecture.md "2. Modules and the direction of imports" is the
//! code's: every top-level module of `src/` has a row, and every `crate::` path in a module's
//! code names itself, a module of its row, one its row may use, or the ground floor.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What the table says of one module.
#[derive(Debug, Default)]
struct Row {
    /// `None`: may use everything.
    may_use: Option<BTreeSet<String>>,
    /// The other modules of the same row.
    row_mates: BTreeSet<String>,
    ground: bool,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The module names `src/x/` and `src/x.rs` in a table cell.
fn modules_in(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|t| t.strip_prefix("src/"))
        .map(|t| t.trim_end_matches('/').trim_end_matches(".rs").to_string())
        .collect()
}

/// The table's rows by module.
fn table() -> BTreeMap<String, Row> {
    let text = std::fs::read_to_string(root().join("docs/architecture.md")).unwrap();
    let start = text.find("## 2. Modules and the direction of imports").expect("section 2");
    let section = &text[start..text[start..].find("## 3.").map_or(text.len(), |e| start + e)];
    let mut rows = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `src/")) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
        assert_eq!(cells.len(), 3, "a row of three cells: {line}");
        let names = modules_in(cells[0]);
        let uses = cells[2].trim();
        let may_use = (uses != "everything").then(|| {
            uses.split(',')
                .filter_map(|item| item.split_whitespace().next())
                .filter(|w| *w != "—")
                .map(str::to_string)
                .collect::<BTreeSet<String>>()
        });
        for n in &names {
            let row_mates = names.iter().filter(|m| *m != n).cloned().collect();
            let row = Row { may_use: may_use.clone(), row_mates, ground: uses.contains("ground floor") };
            rows.insert(n.clone(), row);
        }
    }
    rows
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

/// The top-level modules each module's code names with `crate::`, outside comments.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = root().join("src");
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&src) {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let used = out.entry(module.clone()).or_default();
        let text = std::fs::read_to_string(&file).unwrap();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let name: String =
                    line[i + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if name != module && !name.is_empty() {
                    used.insert(name);
                }
            }
        }
    }
    out
}

#[test]
fn imports_follow_the_architecture_table() {
    let rows = table();
    let ground: BTreeSet<&String> = rows.iter().filter(|(_, r)| r.ground).map(|(n, _)| n).collect();
    assert!(ground.contains(&"geometry".to_string()) && ground.contains(&"error".to_string()), "{ground:?}");
    let mut wrong = vec![];
    for (module, used) in imports() {
        let Some(row) = rows.get(&module) else {
            wrong.push(format!("src/{module} has no row in the table"));
            continue;
        };
        let Some(allowed) = &row.may_use else { continue };
        for u in used {
            let fine = allowed.contains(&u) || row.row_mates.contains(&u) || ground.contains(&u);
            if !fine {
                wrong.push(format!("src/{module} uses crate::{u}, which its row does not allow"));
            }
        }
    }
    assert!(wrong.is_empty(), "docs/architecture.md's import table and the code disagree:\n{}", wrong.join("\n"));
}

/// The check catches what it is for: a module missing from the table and a use against it.
#[test]
fn the_import_check_reads_rows_and_their_uses() {
    let rows = table();
    let train = rows.get("train").expect("a row for src/train/");
    let allowed = train.may_use.as_ref().unwrap();
    assert!(allowed.contains("model") && !allowed.contains("prep"), "{allowed:?}");
    assert!(rows["manifest"].row_mates.contains("dataset"));
    assert!(rows["commands"].may_use.is_none(), "commands may use everything");
    assert!(!rows["face"].ground && rows["text_enum"].ground);
    assert_eq!(modules_in("| `src/a.rs`, `src/b/` and `src/c/d.rs` |"), ["a", "b", "c/d"]);
}
