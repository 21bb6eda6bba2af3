//! Full disk: `dfer prep` and `dfer train` write into a small tmpfs that fills up midway. They
//! stop with exit code 2 and an error naming the file and "No space left on device", leave no
//! temporary file and nothing under a final name that differs from an uninterrupted run's, and
//! once space is freed the same command (`--resume` for train) finishes byte-identical to it.
//!
//! Each test re-runs itself inside `unshare -rm` (a user and mount namespace) so that it can
//! mount the tmpfs without being root; the mount disappears with the namespace.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use common::{dfer, dfer_expect, stderr, stdout, synth};

const IN_NAMESPACE: &str = "DFER_FULL_DISK_NAMESPACE";

/// Outside the namespace: runs test `name` of this binary again inside one and returns false.
/// Inside: returns true, and the caller does the work.
fn in_namespace(name: &str) -> bool {
    if std::env::var_os(IN_NAMESPACE).is_some() {
        return true;
    }
    let exe = std::env::current_exe().unwrap();
    let o = Command::new("unshare")
        .args(["-rm", "--"])
        .arg(&exe)
        .args(["--exact", name, "--nocapture", "--test-threads", "1"])
        .env(IN_NAMESPACE, "1")
        .output()
        .expect("unshare (util-linux) runs");
    assert!(
        o.status.success(),
        "{name} inside `unshare -rm` failed ({:?}); if unshare itself was refused, this machine forbids \
         user namespaces: allow them (sysctl kernel.unprivileged_userns_clone=1) or run the tests as root\n\
         stdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    assert!(stdout(&o).contains("1 passed"), "{name} did not run inside the namespace:\n{}", stdout(&o));
    false
}

/// Mounts a tmpfs of `bytes` at `dir` (inside the namespace) and fills it up to `free` bytes
/// short of full with `dir/filler`, which the caller removes to free the space.
fn small_disk(dir: &Path, bytes: u64, free: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let o =
        Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"]).arg(dir).output().unwrap();
    assert!(o.status.success(), "mount tmpfs at {}: {}", dir.display(), stderr(&o));
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let block = vec![0u8; 1 << 16];
    let mut written = 0u64;
    while f.write_all(&block).is_ok() {
        written += block.len() as u64;
    }
    // A failed write_all may have written part of the block: truncate to what is known.
    f.set_len(written.saturating_sub(free)).unwrap();
    f.sync_all().unwrap();
}

fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for e in walk(dir) {
        let name = e.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
        v.push((name, std::fs::read(&e).unwrap()));
    }
    v.sort();
    v
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn size_of(files: &[(String, Vec<u8>)]) -> u64 {
    files.iter().map(|(_, b)| b.len() as u64).sum()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Asserts the run stopped on the full disk with an error naming a file under `out`.
fn assert_disk_full_error(o: &std::process::Output, out: &Path) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(3), "exit code on a full disk\n{err}");
    let line = &err[err.find("error:").unwrap_or_else(|| panic!("no error:\n{err}"))..];
    assert!(line.contains("No space left on device"), "{line}");
    assert!(line.contains(s(out)), "the error names the file it could not write: {line}");
}

fn no_tmp_files(dir: &Path) {
    let left: Vec<_> = walk(dir).into_iter().filter(|p| p.to_string_lossy().contains(".tmp-")).collect();
    assert!(left.is_empty(), "temporary files left behind: {left:?}");
}

#[test]
fn prep_on_a_full_disk_stops_cleanly_and_resumes_identical() {
    if !in_namespace("prep_on_a_full_disk_stops_cleanly_and_resumes_identical") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    synth("dfew", 12, &root, false);
    let manifest = dir.path().join("clips.parquet");
    dfer_expect(&["manifest", "--dataset", "dfew", "--root", s(&root), "-o", s(&manifest)], 0);
    let cfg = dir.path().join("prep.toml");
    std::fs::write(&cfg, "clips_per_shard = 2\n").unwrap();
    let prep = |out: &Path| dfer(&["prep", "--manifest", s(&manifest), "--out", s(out), "--config", s(&cfg)]);
    let reference = dir.path().join("reference");
    assert_eq!(prep(&reference).status.code(), Some(0));
    let want = files_under(&reference.join("shards"));
    let total = size_of(&files_under(&reference));

    // Room for about half of the output.
    let disk = dir.path().join("disk");
    small_disk(&disk, total * 2 + (4 << 20), total / 2);
    let out = disk.join("prep");
    assert_disk_full_error(&prep(&out), &out);
    no_tmp_files(&out);
    assert!(!out.join("prep.parquet").exists(), "prep.parquet written by a run that did not finish");
    let got = files_under(&out.join("shards"));
    let h5 = |v: &[(String, Vec<u8>)]| v.iter().filter(|(n, _)| n.ends_with(".h5")).count();
    assert!(h5(&got) > 0 && h5(&got) < h5(&want), "{} of {} shards before the disk filled", h5(&got), h5(&want));
    for (name, bytes) in &got {
        if name.ends_with(".h5") {
            assert!(want.iter().any(|(n, b)| n == name && b == bytes), "{name} differs from the reference");
        }
    }
    let v = dfer(&["verify", s(&out)]);
    assert_eq!(v.status.code(), Some(1), "verify calls it incomplete\n{}", stdout(&v));
    assert!(stdout(&v).contains("shards to prepare again"), "{}", stdout(&v));

    std::fs::remove_file(disk.join("filler")).unwrap();
    assert_eq!(prep(&out).status.code(), Some(0));
    no_tmp_files(&out);
    let h5_only = |v: Vec<(String, Vec<u8>)>| -> Vec<(String, Vec<u8>)> {
        v.into_iter().filter(|(n, _)| n.ends_with(".h5")).collect()
    };
    assert!(h5_only(files_under(&out.join("shards"))) == h5_only(want), "resumed shards differ from the reference");
    dfer_expect(&["verify", s(&out)], 0);
}

#[test]
fn train_on_a_full_disk_stops_cleanly_and_resumes_identical() {
    if !in_namespace("train_on_a_full_disk_stops_cleanly_and_resumes_identical") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    synth("dfew", 14, &root, false);
    let manifest = dir.path().join("clips.parquet");
    dfer_expect(&["manifest", "--dataset", "dfew", "--root", s(&root), "-o", s(&manifest)], 0);
    dfer_expect(&["prep", "--manifest", s(&manifest), "--out", s(&dir.path().join("prep"))], 0);
    let cfg = dir.path().join("train.toml");
    std::fs::write(
        &cfg,
        "[data]\nmanifest = \"clips.parquet\"\nshards = \"prep/shards\"\n[model]\narch = \"tiny\"\n\
         [train]\nepochs = 3\nbatch_size = 4\nloader_threads = 1\n",
    )
    .unwrap();
    let reference = dir.path().join("reference");
    dfer_expect(&["train", "--config", s(&cfg), "--run", s(&reference)], 0);
    let want = files_under(&reference.join("checkpoints"));
    let epoch_size: u64 = want.iter().filter(|(n, _)| n.starts_with("epoch-0003.")).map(|(_, b)| b.len() as u64).sum();

    // Room for the first epoch's checkpoint and half of the second's.
    let disk = dir.path().join("disk");
    small_disk(&disk, epoch_size * 4 + (4 << 20), epoch_size * 3 / 2);
    let run = disk.join("run");
    let o = dfer(&["train", "--config", s(&cfg), "--run", s(&run)]);
    assert_disk_full_error(&o, &run);
    no_tmp_files(&run);
    let mut names: Vec<String> = files_under(&run.join("checkpoints")).into_iter().map(|(n, _)| n).collect();
    names.sort();
    assert_eq!(
        names,
        ["best.json", "epoch-0001.json", "epoch-0001.optim.safetensors", "epoch-0001.safetensors"],
        "only epoch 1 is complete"
    );

    std::fs::remove_file(disk.join("filler")).unwrap();
    dfer_expect(&["train", "--config", s(&cfg), "--run", s(&run), "--resume"], 0);
    no_tmp_files(&run);
    assert!(files_under(&run.join("checkpoints")) == want, "resumed checkpoints differ from the reference");
    let metrics = |r: &Path| -> Vec<(u64, String, String)> {
        std::fs::read_to_string(r.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (v["epoch"].as_u64().unwrap(), v["train_loss"].to_string(), v["test_war"].to_string())
            })
            .collect()
    };
    assert_eq!(metrics(&run), metrics(&reference));
}
