//! Full disk: `dfer prep` and `dfer train` write into a small tmpfs that fills up midway. They
//! stop with exit code 3 and an error naming the file and "No space left on device", leave no
//! temporary file and nothing under a final name that differs from an uninterrupted run's, and
//! once space is freed the same command (`--resume` for train) finishes byte-identical to it.
//!
//! Each test re-runs itself inside `unshare -rm` (a user and mount namespace) so that it can
//! mount the tmpfs without being root; the mount disappears with the namespace.

use crate::common;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use common::files::{only_h5, snapshot, walk};
use common::{dfer, dfer_expect, dfew_manifest, dfew_prepared, loss_and_war, s, stderr, stdout, tiny_train_config};

const IN_NAMESPACE: &str = "DFER_FULL_DISK_NAMESPACE";

/// Outside the namespace: runs test `name` of this binary again inside one and returns false.
/// Inside: returns true, and the caller does the work.
fn in_namespace(name: &str) -> bool {
    if std::env::var_os(IN_NAMESPACE).is_some() {
        return true;
    }
    let exe = std::env::current_exe().unwrap();
    // The test's full name in the test binary: this module's path without the crate's name.
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    let full = format!("{module}::{name}");
    let o = Command::new("unshare")
        .args(["-rm", "--"])
        .arg(&exe)
        .args(["--exact", &full, "--nocapture", "--test-threads", "1"])
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
    let manifest = dfew_manifest(dir.path(), 12);
    let cfg = dir.path().join("prep.toml");
    std::fs::write(&cfg, "clips_per_shard = 2\n").unwrap();
    let prep = |out: &Path| dfer(&["prep", "--manifest", s(&manifest), "--out", s(out), "--config", s(&cfg)]);
    let reference = dir.path().join("reference");
    assert_eq!(prep(&reference).status.code(), Some(0));
    let want = only_h5(snapshot(&reference.join("shards")));
    let total: u64 = snapshot(&reference).values().map(|b| b.len() as u64).sum();

    // Room for about half of the output.
    let disk = dir.path().join("disk");
    small_disk(&disk, total * 2 + (4 << 20), total / 2);
    let out = disk.join("prep");
    assert_disk_full_error(&prep(&out), &out);
    no_tmp_files(&out);
    assert!(!out.join("prep.parquet").exists(), "prep.parquet written by a run that did not finish");
    let got = only_h5(snapshot(&out.join("shards")));
    assert!(!got.is_empty() && got.len() < want.len(), "{} of {} shards before the disk filled", got.len(), want.len());
    for (name, bytes) in &got {
        assert!(want.get(name) == Some(bytes), "{name} differs from the reference");
    }
    let v = dfer(&["verify", s(&out)]);
    assert_eq!(v.status.code(), Some(1), "verify calls it incomplete\n{}", stdout(&v));
    assert!(stdout(&v).contains("shards to prepare again"), "{}", stdout(&v));

    std::fs::remove_file(disk.join("filler")).unwrap();
    assert_eq!(prep(&out).status.code(), Some(0));
    no_tmp_files(&out);
    assert!(only_h5(snapshot(&out.join("shards"))) == want, "resumed shards differ from the reference");
    dfer_expect(&["verify", s(&out)], 0);
}

#[test]
fn train_on_a_full_disk_stops_cleanly_and_resumes_identical() {
    if !in_namespace("train_on_a_full_disk_stops_cleanly_and_resumes_identical") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    dfew_prepared(dir.path(), 14);
    let cfg = tiny_train_config(dir.path(), 3);
    let reference = dir.path().join("reference");
    dfer_expect(&["train", "--config", s(&cfg), "--run", s(&reference)], 0);
    let want = snapshot(&reference.join("checkpoints"));
    let epoch_size: u64 = want.iter().filter(|(n, _)| n.starts_with("epoch-0003.")).map(|(_, b)| b.len() as u64).sum();

    // Room for the first epoch's checkpoint and half of the second's.
    let disk = dir.path().join("disk");
    small_disk(&disk, epoch_size * 4 + (4 << 20), epoch_size * 3 / 2);
    let run = disk.join("run");
    let o = dfer(&["train", "--config", s(&cfg), "--run", s(&run)]);
    assert_disk_full_error(&o, &run);
    no_tmp_files(&run);
    let names: Vec<String> = snapshot(&run.join("checkpoints")).into_keys().collect();
    assert_eq!(
        names,
        ["best.json", "epoch-0001.json", "epoch-0001.optim.safetensors", "epoch-0001.safetensors"],
        "only epoch 1 is complete"
    );

    std::fs::remove_file(disk.join("filler")).unwrap();
    dfer_expect(&["train", "--config", s(&cfg), "--run", s(&run), "--resume"], 0);
    no_tmp_files(&run);
    assert!(snapshot(&run.join("checkpoints")) == want, "resumed checkpoints differ from the reference");
    assert_eq!(loss_and_war(&run), loss_and_war(&reference));
}
