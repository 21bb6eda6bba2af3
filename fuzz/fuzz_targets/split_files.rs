//! Split files and label tables: the first input byte picks DFEW, FERV39k, MAFW or the generic
//! CSV table description, the rest is cut at 0xFF bytes into the contents of each file the
//! description names (missing ones are empty). Reading must return an index or an error, never
//! panic.
#![no_main]

use dfer::dataset::{splits, DatasetDesc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let names = dfer::dataset::builtin_names();
    let desc = match names.get(pick as usize % (names.len() + 1)) {
        Some(name) => DatasetDesc::load(name),
        None => DatasetDesc::parse(include_str!("../../data-manifests/generic-csv.toml"), "generic-csv.toml".as_ref()),
    }
    .expect("a shipped description");
    let files: Vec<String> = match (&desc.splits, &desc.table) {
        (Some(s), _) => (1..=s.folds.unwrap_or(1))
            .flat_map(|f| [&s.train, &s.test].map(|p| p.replace("{fold}", &f.to_string())))
            .collect(),
        (None, Some(t)) => vec![t.file.clone()],
        (None, None) => return,
    };
    let root = tempfile::tempdir().unwrap();
    let mut parts = rest.split(|&b| b == 0xFF);
    for rel in &files {
        let path = root.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, parts.next().unwrap_or_default()).unwrap();
    }
    let _ = splits::read(&desc, root.path());
});
