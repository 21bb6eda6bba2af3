//! Helpers for integration tests: run the real `dfer` binary and make synthetic datasets.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs `dfer` with `args`; returns its output (any exit code).
pub fn dfer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dfer")).args(args).output().expect("dfer runs")
}

/// Runs `dfer` and panics with its stderr unless it exits with `code`.
pub fn dfer_expect(args: &[&str], code: i32) -> Output {
    let out = dfer(args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "dfer {args:?} exited {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Writes a small synthetic dataset (frames up to 360 px high, at most 24 frames per clip).
pub fn synth(layout: &str, clips: usize, out: &Path, edge_cases: bool) {
    let clips = clips.to_string();
    let mut args = vec!["synth", "--layout", layout, "--clips", &clips, "--out", out.to_str().unwrap(), "--seed", "3"];
    args.extend(["--max-height", "360", "--max-frames", "24", "--lfw-faces", "2"]);
    if edge_cases {
        args.push("--edge-cases");
    }
    dfer_expect(&args, 0);
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
