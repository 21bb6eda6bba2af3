//! Fault injection: `dfer prep` and `dfer train` are killed (SIGKILL) at seeded random moments,
//! 20 trials each, then run again. After every kill nothing half-written may pass for complete
//! (`dfer verify` and the resume itself check), and every resumed output is byte-identical to
//! an uninterrupted run's.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::files::{differences, shard_files, top_files};
use common::{dfer, dfer_expect, dfew_manifest, dfew_prepared, loss_and_war, s, tiny_train_config};

const TRIALS: u64 = 20;

/// splitmix64: the seeded kill moments.
fn next(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

/// Starts `dfer args` and SIGKILLs it after `after` (or lets it finish first); returns whether
/// the kill landed before the end.
fn kill_after(args: &[&str], after: Duration) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dfer"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while t0.elapsed() < after {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    true
}

fn timed(args: &[&str]) -> Duration {
    let t0 = Instant::now();
    dfer_expect(args, 0);
    t0.elapsed()
}

#[test]
fn prep_killed_at_random_moments_resumes_to_identical_shards() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dfew_manifest(dir.path(), 14);
    let cfg = dir.path().join("prep.toml");
    std::fs::write(&cfg, "clips_per_shard = 2\n").unwrap();
    let reference = dir.path().join("reference");
    let full = timed(&["prep", "--manifest", s(&manifest), "--out", s(&reference), "--config", s(&cfg)]);
    let want = shard_files(&reference);
    assert_eq!(want.len(), 7);

    let mut seed = 42;
    let mut landed = 0;
    for trial in 0..TRIALS {
        let out = dir.path().join(format!("trial{trial}"));
        let args = ["prep", "--manifest", s(&manifest), "--out", s(&out), "--config", s(&cfg), "--threads", "2"];
        let after = full.mul_f64(0.05 + 0.9 * next(&mut seed));
        landed += kill_after(&args, after) as usize;
        // Whatever is there under a final name is complete and identical to the reference.
        if out.join("shards").is_dir() {
            for (name, bytes) in shard_files(&out) {
                assert!(want.get(&name) == Some(&bytes), "trial {trial}: {name} differs after the kill");
            }
            let v = dfer(&["verify", s(&out)]);
            assert!(matches!(v.status.code(), Some(0 | 1)), "trial {trial}: verify {:?}", v.status);
        }
        dfer_expect(&args, 0);
        assert!(shard_files(&out) == want, "trial {trial}: resumed shards differ from the uninterrupted run");
        dfer_expect(&["verify", s(&out)], 0);
        std::fs::remove_dir_all(&out).unwrap();
    }
    eprintln!("prep: {landed} of {TRIALS} kills landed before the end; all resumed identical");
    assert!(landed as u64 >= TRIALS / 4, "only {landed} of {TRIALS} kills landed before the end");
}

#[test]
fn train_killed_at_random_moments_resumes_to_identical_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    dfew_prepared(dir.path(), 14);
    let cfg = tiny_train_config(dir.path(), 4);
    let reference = dir.path().join("reference");
    let full = timed(&["train", "--config", s(&cfg), "--run", s(&reference)]);
    let want = top_files(&reference.join("checkpoints"));

    let mut seed = 7;
    let mut landed = 0;
    for trial in 0..TRIALS {
        let run = dir.path().join(format!("trial{trial}"));
        let args = ["train", "--config", s(&cfg), "--run", s(&run)];
        let after = full.mul_f64(0.05 + 0.9 * next(&mut seed));
        landed += kill_after(&args, after) as usize;
        let ckpt_dir = run.join("checkpoints");
        let left: Vec<String> = if ckpt_dir.is_dir() { top_files(&ckpt_dir).into_keys().collect() } else { vec![] };
        // The resume checks every checkpoint it uses against the hashes in its record.
        let o = if run.join("config.toml").exists() {
            dfer_expect(&["train", "--config", s(&cfg), "--run", s(&run), "--resume"], 0)
        } else {
            dfer_expect(&args, 0)
        };
        let got = top_files(&ckpt_dir);
        assert!(
            got == want,
            "trial {trial} (killed after {after:?}, leaving {left:?}; the run after it said: {}): checkpoints differ \
             from the uninterrupted run: {}",
            String::from_utf8_lossy(&o.stderr).lines().filter(|l| l.contains("resum")).collect::<Vec<_>>().join("; "),
            differences(&got, &want)
        );
        assert_eq!(loss_and_war(&run), loss_and_war(&reference), "trial {trial}: metrics differ");
        let leftovers: Vec<_> = [run.clone(), run.join("checkpoints")]
            .iter()
            .flat_map(|d| top_files(d).into_keys())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "trial {trial}: temporary files left: {leftovers:?}");
        std::fs::remove_dir_all(&run).unwrap();
    }
    eprintln!("train: {landed} of {TRIALS} kills landed before the end; all resumed identical");
    assert!(landed as u64 >= TRIALS / 4, "only {landed} of {TRIALS} kills landed before the end");
}
