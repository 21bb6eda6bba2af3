//! Pipeline files (TOML) with `--set` overrides: the input is the file, then after each 0xFF
//! byte one override. Building the stages must return a pipeline or an error, never panic.
#![no_main]

use dfer::pipeline::spec::Pipeline;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0xFF).map(String::from_utf8_lossy);
    let text = parts.next().unwrap_or_default();
    let sets: Vec<String> = parts.map(|s| s.into_owned()).collect();
    let cwd = tempfile::tempdir().unwrap();
    let _ = Pipeline::parse(Path::new("fuzz.toml"), &text, &sets, cwd.path());
});
