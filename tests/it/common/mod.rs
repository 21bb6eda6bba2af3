//! Helpers for integration tests: run the real `dfer` binary and ffmpeg, make synthetic
//! datasets and configs, read run outputs; folder snapshots are in `files`.

pub mod files;

use std::path::{Path, PathBuf};
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

/// A synthetic DFEW dataset of `clips` clips (no edge cases) in `dir/data` and its manifest
/// `dir/clips.parquet`, which is returned.
pub fn dfew_manifest(dir: &Path, clips: usize) -> PathBuf {
    let root = dir.join("data");
    synth("dfew", clips, &root, false);
    let manifest = dir.join("clips.parquet");
    dfer_expect(&["manifest", "--dataset", "dfew", "--root", s(&root), "-o", s(&manifest)], 0);
    manifest
}

/// [`dfew_manifest`] prepared with default settings into `dir/prep`: returns the manifest and
/// the prep output.
pub fn dfew_prepared(dir: &Path, clips: usize) -> (PathBuf, PathBuf) {
    let manifest = dfew_manifest(dir, clips);
    let prep = dir.join("prep");
    dfer_expect(&["prep", "--manifest", s(&manifest), "--out", s(&prep)], 0);
    (manifest, prep)
}

/// Writes `dir/train.toml`: the tiny model on `dir/clips.parquet` and `dir/prep/shards`, batches
/// of 4, one loader thread, `epochs` epochs.
pub fn tiny_train_config(dir: &Path, epochs: u32) -> PathBuf {
    let cfg = dir.join("train.toml");
    std::fs::write(
        &cfg,
        format!(
            "[data]\nmanifest = \"clips.parquet\"\nshards = \"prep/shards\"\n[model]\narch = \"tiny\"\n\
             [train]\nepochs = {epochs}\nbatch_size = 4\nloader_threads = 1\n"
        ),
    )
    .unwrap();
    cfg
}

/// `(epoch, train_loss, test_war)` of each line of `run/metrics.jsonl`, the numbers as written.
pub fn loss_and_war(run: &Path) -> Vec<(u64, String, String)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["epoch"].as_u64().unwrap(), v["train_loss"].to_string(), v["test_war"].to_string())
        })
        .collect()
}

/// Runs `ffmpeg -nostdin -loglevel error -y args` and panics with its stderr unless it succeeds.
pub fn ffmpeg(args: &[&str]) {
    let o = Command::new("ffmpeg").args(["-nostdin", "-loglevel", "error", "-y"]).args(args).output().unwrap();
    assert!(o.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// A path as the `&str` an argument list takes.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
