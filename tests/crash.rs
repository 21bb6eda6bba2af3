//! Fault injection: `dfer prep` and `dfer train` are killed (SIGKILL) at seeded random moments,
//! 20 trials each, then run again. After every kill nothing half-written may pass for complete
//! (`dfer verify` and the resume itself check), and every resumed output is byte-identical to
//! an uninterrupted run's.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{dfer, dfer_expect, synth};

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

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    v
}

/// Which files are missing, extra or different (JSON records shown whole), for a failure message.
fn differences(got: &[(String, Vec<u8>)], want: &[(String, Vec<u8>)]) -> String {
    let find = |v: &[(String, Vec<u8>)], name: &str| v.iter().find(|(n, _)| n == name).map(|(_, b)| b.clone());
    let mut out = String::new();
    for (name, bytes) in want {
        match find(got, name) {
            None => out += &format!("\n  missing {name}"),
            Some(b) if &b != bytes && name.ends_with(".json") => {
                let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                out += &format!("\n  {name} differs:\n  got  {}\n  want {}", text(&b), text(bytes));
            }
            Some(b) if &b != bytes => {
                let at = b.iter().zip(bytes).position(|(x, y)| x != y).unwrap_or(b.len().min(bytes.len()));
                out += &format!("\n  {name} differs from byte {at} ({} vs {} bytes)", b.len(), bytes.len());
            }
            Some(_) => {}
        }
    }
    for (name, _) in got.iter().filter(|(n, _)| find(want, n).is_none()) {
        out += &format!("\n  extra {name}");
    }
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn prep_killed_at_random_moments_resumes_to_identical_shards() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    synth("dfew", 14, &root, false);
    let manifest = dir.path().join("clips.parquet");
    dfer_expect(&["manifest", "--dataset", "dfew", "--root", s(&root), "-o", s(&manifest)], 0);
    let cfg = dir.path().join("prep.toml");
    std::fs::write(&cfg, "clips_per_shard = 2\n").unwrap();
    let reference = dir.path().join("reference");
    let full = timed(&["prep", "--manifest", s(&manifest), "--out", s(&reference), "--config", s(&cfg)]);
    let want = files(&reference.join("shards"));
    assert_eq!(want.iter().filter(|(n, _)| n.ends_with(".h5")).count(), 7);

    let mut seed = 42;
    let mut landed = 0;
    for trial in 0..TRIALS {
        let out = dir.path().join(format!("trial{trial}"));
        let args = ["prep", "--manifest", s(&manifest), "--out", s(&out), "--config", s(&cfg), "--threads", "2"];
        let after = full.mul_f64(0.05 + 0.9 * next(&mut seed));
        landed += kill_after(&args, after) as usize;
        // Whatever is there under a final name is complete and identical to the reference.
        if out.join("shards").is_dir() {
            for (name, bytes) in files(&out.join("shards")).into_iter().filter(|(n, _)| n.ends_with(".h5")) {
                let r = want.iter().find(|(n, _)| *n == name).map(|(_, b)| b);
                assert!(r == Some(&bytes), "trial {trial}: {name} differs after the kill");
            }
            let v = dfer(&["verify", s(&out)]);
            assert!(matches!(v.status.code(), Some(0 | 1)), "trial {trial}: verify {:?}", v.status);
        }
        dfer_expect(&args, 0);
        let got: Vec<(String, Vec<u8>)> =
            files(&out.join("shards")).into_iter().filter(|(n, _)| n.ends_with(".h5")).collect();
        let want_h5: Vec<(String, Vec<u8>)> = want.iter().filter(|(n, _)| n.ends_with(".h5")).cloned().collect();
        assert!(got == want_h5, "trial {trial}: resumed shards differ from the uninterrupted run");
        dfer_expect(&["verify", s(&out)], 0);
        std::fs::remove_dir_all(&out).unwrap();
    }
    eprintln!("prep: {landed} of {TRIALS} kills landed before the end; all resumed identical");
    assert!(landed as u64 >= TRIALS / 4, "only {landed} of {TRIALS} kills landed before the end");
}

#[test]
fn train_killed_at_random_moments_resumes_to_identical_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    synth("dfew", 14, &root, false);
    let manifest = dir.path().join("clips.parquet");
    dfer_expect(&["manifest", "--dataset", "dfew", "--root", s(&root), "-o", s(&manifest)], 0);
    let prep = dir.path().join("prep");
    dfer_expect(&["prep", "--manifest", s(&manifest), "--out", s(&prep)], 0);
    let cfg = dir.path().join("train.toml");
    std::fs::write(
        &cfg,
        "[data]\nmanifest = \"clips.parquet\"\nshards = \"prep/shards\"\n[model]\narch = \"tiny\"\n\
         [train]\nepochs = 4\nbatch_size = 4\nloader_threads = 1\n",
    )
    .unwrap();
    let reference = dir.path().join("reference");
    let full = timed(&["train", "--config", s(&cfg), "--run", s(&reference)]);
    let want = files(&reference.join("checkpoints"));
    let metrics = |run: &Path| -> Vec<(u64, String, String)> {
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (v["epoch"].as_u64().unwrap(), v["train_loss"].to_string(), v["test_war"].to_string())
            })
            .collect()
    };

    let mut seed = 7;
    let mut landed = 0;
    for trial in 0..TRIALS {
        let run = dir.path().join(format!("trial{trial}"));
        let args = ["train", "--config", s(&cfg), "--run", s(&run)];
        let after = full.mul_f64(0.05 + 0.9 * next(&mut seed));
        landed += kill_after(&args, after) as usize;
        let ckpt_dir = run.join("checkpoints");
        let left: Vec<String> =
            if ckpt_dir.is_dir() { files(&ckpt_dir).into_iter().map(|(n, _)| n).collect() } else { vec![] };
        // The resume checks every checkpoint it uses against the hashes in its record.
        let o = if run.join("config.toml").exists() {
            dfer_expect(&["train", "--config", s(&cfg), "--run", s(&run), "--resume"], 0)
        } else {
            dfer_expect(&args, 0)
        };
        let got = files(&ckpt_dir);
        assert!(
            got == want,
            "trial {trial} (killed after {after:?}, leaving {left:?}; the run after it said: {}): checkpoints differ \
             from the uninterrupted run: {}",
            String::from_utf8_lossy(&o.stderr).lines().filter(|l| l.contains("resum")).collect::<Vec<_>>().join("; "),
            differences(&got, &want)
        );
        assert_eq!(metrics(&run), metrics(&reference), "trial {trial}: metrics differ");
        let leftovers: Vec<_> = [run.clone(), run.join("checkpoints")]
            .iter()
            .flat_map(|d| files(d))
            .map(|(name, _)| name)
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "trial {trial}: temporary files left: {leftovers:?}");
        std::fs::remove_dir_all(&run).unwrap();
    }
    eprintln!("train: {landed} of {TRIALS} kills landed before the end; all resumed identical");
    assert!(landed as u64 >= TRIALS / 4, "only {landed} of {TRIALS} kills landed before the end");
}
