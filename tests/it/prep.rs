//! `dfer prep` on synthetic datasets, checked against synth's ground truth: boxes on the face,
//! faces masked out of scenes, labels and ids in line with the manifest, edge-case statuses,
//! identical shards for any thread count, for split workers and after a killed run; and
//! `dfer bench detector`, the detector's cost per input size that prep is tuned against.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::files::{assert_same, shard_files};
use common::{dfer, dfer_expect, stdout, synth};
use dfer::face::iou;
use dfer::geometry::{fit_scene, scale_box, SceneFit, CLIP_MEAN_RGB};
use dfer::manifest::{read_parquet, Manifest};
use dfer::sampling;
use dfer::shard::ShardReader;
use dfer::synth::{read_truth, EdgeCase, TruthClip};
use image::RgbImage;

struct Prepared {
    _dir: tempfile::TempDir,
    root: PathBuf,
    manifest: PathBuf,
}

/// A DFEW-layout dataset with edge cases and its manifest.
fn dataset(clips: usize) -> Prepared {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dfew");
    synth("dfew", clips, &root, true);
    let manifest = dir.path().join("clips.parquet");
    dfer_expect(
        &["manifest", "--dataset", "dfew", "--root", root.to_str().unwrap(), "-o", manifest.to_str().unwrap()],
        1,
    );
    Prepared { _dir: dir, root, manifest }
}

fn prep(p: &Prepared, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["prep", "--manifest", p.manifest.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    dfer(&args)
}

fn small_shards(dir: &Path) -> PathBuf {
    let cfg = dir.join("prep.toml");
    std::fs::write(&cfg, "clips_per_shard = 4\n").unwrap();
    cfg
}

/// Turns the first usable video among manifest rows `rows` into a named pipe, so a worker
/// that reaches it blocks there (and a kill lands before it); dropping the guard restores it.
struct Held {
    video: PathBuf,
    real: PathBuf,
}

fn hold(p: &Prepared, rows: std::ops::Range<usize>) -> Held {
    let m = dfer::manifest::Manifest::read(&p.manifest).unwrap();
    let row = m.rows[rows].iter().find(|r| r.status.is_ok()).expect("a usable clip in these rows");
    let video = m.root.join(&row.source_path);
    let real = video.with_extension("real");
    std::fs::rename(&video, &real).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(&video).status().unwrap().success());
    Held { video, real }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.video);
        let _ = std::fs::rename(&self.real, &self.video);
    }
}

fn statuses(out: &Path) -> BTreeMap<String, String> {
    let (df, _) = read_parquet(&out.join("prep.parquet")).unwrap();
    let ids = df.column("clip_id").unwrap().str().unwrap().clone();
    let st = df.column("status").unwrap().str().unwrap().clone();
    ids.iter().zip(st.iter()).map(|(a, b)| (a.unwrap().to_string(), b.unwrap().to_string())).collect()
}

#[test]
fn prep_boxes_masks_labels_and_edge_cases() {
    let p = dataset(14);
    let out = p._dir.path().join("prep");
    let export = p._dir.path().join("frames");
    // Raw frames: the mask check below compares pixels with CLIP's mean colour exactly.
    let raw = p._dir.path().join("raw.toml");
    std::fs::write(&raw, "encoding = \"raw\"\n").unwrap();
    let args = ["--threads", "2", "--export-frames", export.to_str().unwrap(), "--config", raw.to_str().unwrap()];
    let o = prep(&p, &out, &args);
    assert_eq!(o.status.code(), Some(1), "edge cases fail, so exit 1: {}", String::from_utf8_lossy(&o.stderr));
    let truth: BTreeMap<String, TruthClip> =
        read_truth(&p.root).unwrap().into_iter().map(|t| (t.clip_id.clone(), t)).collect();
    let manifest = Manifest::read(&p.manifest).unwrap();

    // Every manifest row has a prep row; edge cases end with the right status.
    let st = statuses(&out);
    assert_eq!(st.len(), manifest.rows.len());
    for t in truth.values() {
        let want = match t.edge_case {
            Some(EdgeCase::Truncated) => "truncated",
            Some(EdgeCase::ZeroByte) => "empty",
            Some(EdgeCase::NoFace) => "no_face",
            _ => "ok",
        };
        assert_eq!(st[&t.clip_id], want, "{} ({:?})", t.clip_id, t.edge_case);
    }

    // Shards: ids and labels line up with the manifest; boxes on the true face; faces masked.
    let (mut frames_with_face, mut good_boxes, mut masked_frames, mut mask_ok) = (0, 0, 0, 0);
    let mut written = 0;
    for e in std::fs::read_dir(out.join("shards")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "h5") {
            continue;
        }
        let r = ShardReader::open(&path).unwrap();
        let (ids, labels, rows) = (r.clip_ids().unwrap(), r.labels().unwrap(), r.manifest_rows().unwrap());
        for i in 0..r.len {
            written += 1;
            let m = &manifest.rows[rows[i] as usize];
            assert_eq!((m.clip_id.as_str(), m.label as i64), (ids[i].as_str(), labels[i]));
            let t = &truth[&ids[i]];
            let c = r.clip(i).unwrap();
            // Clips of up to 24 frames under the default store_frames (64): stored whole.
            assert_eq!(c.clip_frames, t.n_frames, "{}", t.clip_id);
            assert_eq!(c.frame_index, (0..t.n_frames as i32).collect::<Vec<_>>(), "{}", t.clip_id);
            assert_eq!(c.frame_size, [t.width, t.height], "{}: display size (rotation applied)", t.clip_id);
            let (_, tr) = fit_scene(&RgbImage::new(t.width, t.height), 224, SceneFit::Letterbox);
            for f in 0..c.frame_index.len() {
                let Some(tb) = t.boxes[c.frame_index[f] as usize] else { continue };
                frames_with_face += 1;
                if iou(&c.face_box[f], &tb) >= 0.5 {
                    good_boxes += 1;
                }
                // The true face, shrunk a little, lies inside the masked region.
                let sb = tr.apply(&scale_box(&tb, 0.8));
                let scene = &c.scene[f * 224 * 224 * 3..(f + 1) * 224 * 224 * 3];
                let (mut n, mut fill) = (0, 0);
                for y in sb[1].ceil() as usize..(sb[3].floor() as usize).min(224) {
                    for x in sb[0].ceil() as usize..(sb[2].floor() as usize).min(224) {
                        n += 1;
                        let px = &scene[(y * 224 + x) * 3..(y * 224 + x) * 3 + 3];
                        if px == CLIP_MEAN_RGB {
                            fill += 1;
                        }
                    }
                }
                masked_frames += 1;
                if n > 0 && fill as f32 >= 0.98 * n as f32 {
                    mask_ok += 1;
                }
            }
        }
    }
    let ok_clips = st.values().filter(|s| *s == "ok" || *s == "no_face").count();
    assert_eq!(written, ok_clips, "every decodable clip is in the shards, the one without a face too");
    let rate = good_boxes as f64 / frames_with_face as f64;
    assert!(rate >= 0.95, "IoU >= 0.5 on {good_boxes}/{frames_with_face} frames with a face ({rate:.3})");
    assert!(mask_ok as f64 >= 0.95 * masked_frames as f64, "face masked in {mask_ok}/{masked_frames} scene frames");

    // Exported frames and annotation lists.
    let lists: Vec<String> = std::fs::read_dir(&export)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".txt"))
        .collect();
    assert!(
        lists.contains(&"DFEW_set_1_train.txt".to_string()) && lists.contains(&"DFEW_set_5_test_scene.txt".to_string()),
        "{lists:?}"
    );
    let mut listed = 0;
    for k in 1..=5 {
        let text = std::fs::read_to_string(export.join(format!("DFEW_set_{k}_test.txt"))).unwrap_or_default();
        for line in text.lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            assert_eq!(parts.len(), 3, "{line}");
            let id = Path::new(parts[0]).file_name().unwrap().to_str().unwrap();
            assert_eq!(parts[1], truth[id].n_frames.to_string(), "{line}: every frame of the clip");
            assert_eq!(std::fs::read_dir(parts[0]).unwrap().count(), truth[id].n_frames, "{line}");
            listed += 1;
        }
    }
    assert_eq!(listed, ok_clips, "each written clip is in exactly one test list");

    // inspect on the prep table: statuses with the failing clips' errors.
    let text = stdout(&dfer_expect(&["inspect", out.join("prep.parquet").to_str().unwrap()], 0));
    assert!(text.contains(&format!("prep table: {} clips, {ok_clips} written", st.len())), "{text}");
    assert!(text.contains("no_face") && text.contains("truncated"), "{text}");

    // inspect on a shard: summary and contact sheet.
    let shard = out.join("shards/00000.h5");
    let sheet = p._dir.path().join("sheet.png");
    let text = stdout(&dfer_expect(&["inspect", shard.to_str().unwrap(), "--grid", sheet.to_str().unwrap()], 0));
    assert!(text.contains("datasets:") && text.contains("config_hash"), "{text}");
    assert!(image::open(&sheet).unwrap().width() > 0);
}

#[test]
fn threads_workers_and_killed_runs_give_identical_shards() {
    let p = dataset(10);
    let cfg = small_shards(p._dir.path());
    let cfg = cfg.to_str().unwrap();
    // Inside a job array's task, a prep without --shard-index still prepares every shard: the
    // index comes from the command line (or a pipeline) only, never from the environment.
    let base = p._dir.path().join("one-thread");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_dfer"))
        .args(["prep", "--manifest", p.manifest.to_str().unwrap(), "--out", base.to_str().unwrap(), "--config", cfg])
        .args(["--threads", "1"])
        .env("SLURM_ARRAY_TASK_ID", "1")
        .env("SLURM_ARRAY_TASK_COUNT", "2")
        .env("JOB_COMPLETION_INDEX", "1")
        .output()
        .unwrap();
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", String::from_utf8_lossy(&o.stderr));
    let reference = shard_files(&base);
    assert!(reference.len() >= 4, "{} shards", reference.len());
    assert!(base.join("prep.parquet").exists(), "every shard written, so the table too");

    let two = p._dir.path().join("two-threads");
    prep(&p, &two, &["--config", cfg, "--threads", "2"]);
    assert_same(&shard_files(&two), &reference, "shards");

    // Two workers splitting the shards into one folder.
    let split = p._dir.path().join("split");
    let w0 = prep(&p, &split, &["--config", cfg, "--threads", "1", "--shard-index", "0", "--num-shards", "2"]);
    assert!(!split.join("prep.parquet").exists(), "{}", String::from_utf8_lossy(&w0.stderr));
    let o = prep(&p, &split, &["--config", cfg, "--threads", "1", "--shard-index", "1", "--num-shards", "2"]);
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", String::from_utf8_lossy(&o.stderr));
    // One of the pair alone is refused.
    let o = prep(&p, &split, &["--config", cfg, "--shard-index", "1"]);
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same(&shard_files(&split), &reference, "shards");
    assert_eq!(statuses(&split), statuses(&base));

    // SIGKILL midway (held in shard 3 after shard 0 is written), then resume.
    let killed = p._dir.path().join("killed");
    let held = hold(&p, 12..16);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dfer"))
        .args([
            "prep",
            "--manifest",
            p.manifest.to_str().unwrap(),
            "--out",
            killed.to_str().unwrap(),
            "--config",
            cfg,
            "--threads",
            "1",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while std::time::Instant::now() < deadline && (!killed.join("shards").exists() || shard_files(&killed).is_empty()) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    drop(held);
    let partial = shard_files(&killed).len();
    assert!(partial < reference.len(), "killed before the end ({partial} shards)");
    let o = prep(&p, &killed, &["--config", cfg, "--threads", "2"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("already complete"), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same(&shard_files(&killed), &reference, "shards");
    let leftovers: Vec<_> = std::fs::read_dir(killed.join("shards"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Other settings into the same folder are refused.
    std::fs::write(p._dir.path().join("other.toml"), "clips_per_shard = 4\nmargin = 1.4\n").unwrap();
    let other = p._dir.path().join("other.toml");
    let o = prep(&p, &base, &["--config", other.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("prepared with other settings"));

    // A settings record that exists but cannot be read is refused, not taken for absent and
    // overwritten.
    let record = base.join("prep_config.toml");
    std::fs::write(&record, b"# config_hash = \"\xff\xfe\"\n").unwrap();
    let o = prep(&p, &base, &["--config", cfg]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("prep_config.toml: exists but cannot be read"), "{err}");
    assert_eq!(std::fs::read(&record).unwrap(), b"# config_hash = \"\xff\xfe\"\n", "left as it was");
}

#[test]
fn verify_tells_a_prep_stopped_before_its_plan_from_a_folder_that_is_no_prep_output() {
    let dir = tempfile::tempdir().unwrap();
    let stopped = dir.path().join("stopped");
    std::fs::create_dir_all(stopped.join("shards")).unwrap();
    let o = dfer_expect(&["verify", stopped.to_str().unwrap()], 1);
    assert!(stdout(&o).contains("prep was stopped before it planned the shards"), "{}", stdout(&o));
    let o = dfer_expect(&["verify", dir.path().to_str().unwrap()], 2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("prep_plan.json: missing") && err.contains("dfer prep output"), "{err}");
}

/// prep.parquet without its timing columns, which differ from run to run.
fn prep_table_without_timings(out: &Path) -> polars::prelude::DataFrame {
    let (df, _) = read_parquet(&out.join("prep.parquet")).unwrap();
    df.drop_many(["decode_ms", "detect_ms", "crop_ms", "write_ms"])
}

#[test]
fn three_workers_one_killed_then_verify_and_merge_equal_one_process() {
    let p = dataset(10);
    // 18 manifest rows (the last two broken) in 6 shards of 3 rows.
    let cfg = p._dir.path().join("prep.toml");
    std::fs::write(&cfg, "clips_per_shard = 3\n").unwrap();
    let cfg = cfg.to_str().unwrap();
    let single = p._dir.path().join("single");
    prep(&p, &single, &["--config", cfg, "--threads", "1"]);
    let reference = shard_files(&single);
    assert!(reference.len() >= 5, "{} shards", reference.len());

    // Worker 1 owns shards 1 and 4; a pipe in shard 4 holds it there once shard 1 is written,
    // so the kill below always lands between the two.
    let held = hold(&p, 12..15);
    let out = p._dir.path().join("workers");
    let worker = |i: usize| {
        std::process::Command::new(env!("CARGO_BIN_EXE_dfer"))
            .args(["prep", "--manifest", p.manifest.to_str().unwrap(), "--out", out.to_str().unwrap()])
            .args(["--config", cfg, "--threads", "1", "--shard-index", &i.to_string(), "--num-shards", "3"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut children: Vec<_> = (0..3).map(worker).collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while std::time::Instant::now() < deadline && !out.join("shards/00001.h5").exists() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    children[1].kill().unwrap();
    for c in &mut children {
        c.wait().unwrap();
    }
    drop(held);
    let dir = out.to_str().unwrap();
    let v = dfer(&["verify", dir]);
    assert_eq!(v.status.code(), Some(1), "{}", stdout(&v));
    assert!(stdout(&v).contains("shards to prepare again: 4"), "{}", stdout(&v));
    // The killed worker runs again; being the last, it also writes prep.parquet.
    let again = worker(1).wait_with_output().unwrap();
    assert!(again.status.code().is_some_and(|c| c <= 1));
    assert!(out.join("prep.parquet").exists());
    // Merging the per-shard tables by hand gives the same table.
    std::fs::remove_file(out.join("prep.parquet")).unwrap();
    assert_eq!(dfer(&["verify", dir]).status.code(), Some(1), "prep.parquet missing");
    let mut merge = vec!["prep".to_string(), "merge".into(), "-o".into(), format!("{dir}/prep.parquet")];
    for k in 0..reference.len() {
        merge.push(format!("{dir}/shards/{k:05}.parquet"));
    }
    let merge: Vec<&str> = merge.iter().map(String::as_str).collect();
    dfer_expect(&merge, 0);
    let ok = dfer_expect(&["verify", dir], 0);
    assert!(stdout(&ok).contains("all shards complete"), "{}", stdout(&ok));
    assert_same(&shard_files(&out), &reference, "shards");
    assert!(prep_table_without_timings(&out).equals_missing(&prep_table_without_timings(&single)));
    // A clip in two inputs is refused, by the old spelling too, which says it is old.
    let twice = ["manifest", merge[1], merge[2], merge[3], merge[4], merge[4]];
    let o = dfer(&twice);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is in both") && err.contains("now dfer prep merge"), "{err}");
}

#[test]
fn official_face_frame_folders_go_through_the_same_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ferv");
    synth("ferv39k", 6, &root, false);
    let manifest = dir.path().join("clips.parquet");
    let m = manifest.to_str().unwrap();
    dfer_expect(
        &["manifest", "--dataset", "ferv39k", "--root", root.to_str().unwrap(), "-o", m, "--source", "frames"],
        0,
    );
    let out = dir.path().join("prep");
    dfer_expect(&["prep", "--manifest", m, "--out", out.to_str().unwrap(), "--threads", "2"], 0);
    let truth: BTreeMap<String, TruthClip> =
        read_truth(&root).unwrap().into_iter().map(|t| (t.clip_id.clone(), t)).collect();
    let r = ShardReader::open(&out.join("shards/00000.h5")).unwrap();
    assert_eq!(r.len, 6);
    for (i, id) in r.clip_ids().unwrap().iter().enumerate() {
        let c = r.clip(i).unwrap();
        let want: Vec<i32> = sampling::stored_frames(truth[id].n_frames, 16, 64).iter().map(|&x| x as i32).collect();
        assert_eq!(c.frame_index, want, "{id}: every frame file, in numeric order");
        assert_eq!(c.frame_size, [224, 224]);
        assert!(c.face_source.iter().all(|s| *s == 1 || *s == 2), "{id}: {:?}", c.face_source);
    }
}

/// The h5py + Pillow shard reader of docs/formats.md "Reading a shard in Python", taken from the file itself.
fn documented_shard_reader() -> String {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/formats.md")).unwrap();
    let block = doc.split("<!-- shard-reader -->\n```python\n").nth(1).expect("docs/formats.md has the shard reader");
    block.split("```").next().unwrap().to_string()
}

/// The Python of the readers' venv that `scripts/setup.sh` makes (h5py, numpy, Pillow).
fn reader_python() -> PathBuf {
    let cache = std::env::var_os("DFER_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/dfer"));
    let py = cache.join("py/bin/python");
    assert!(py.exists(), "{} is missing: run scripts/setup.sh --assets", py.display());
    py
}

/// Per clip: id, label name, face and scene means, as dfer reads them.
fn dfer_view(shard: &Path) -> Vec<(String, String, f64, f64)> {
    let r = ShardReader::open(shard).unwrap();
    let (ids, labels) = (r.clip_ids().unwrap(), r.labels().unwrap());
    let mean = |p: &[u8]| p.iter().map(|&v| v as f64).sum::<f64>() / p.len() as f64;
    (0..r.len)
        .map(|i| {
            let (face, scene) = r.pixels(i).unwrap();
            (ids[i].clone(), r.attrs.label_names[labels[i] as usize].clone(), mean(&face), mean(&scene))
        })
        .collect()
}

/// Reads the exported lists the way DFER-CLIP's and Former-DFER's `VideoDataset` does (split on
/// spaces, path / frame count / class index), or the forks that return `label - 1`; every listed
/// clip has its frames and the shard's label, and a JPEG shard's frames are its stored bytes.
fn check_exported_lists(frames: &Path, shard: &Path, minus_one: bool) {
    let r = ShardReader::open(shard).unwrap();
    let ids = r.clip_ids().unwrap();
    let labels = r.labels().unwrap();
    let list = frames.join("DFEW_set_1_test.txt");
    let text = std::fs::read_to_string(&list).unwrap_or_else(|e| panic!("{}: {e}", list.display()));
    assert!(!text.is_empty());
    for line in text.lines() {
        let cols: Vec<&str> = line.trim().split(' ').collect();
        let (dir, n, col3) = (Path::new(cols[0]), cols[1].parse::<usize>().unwrap(), cols[2].parse::<i64>().unwrap());
        let label = if minus_one { col3 - 1 } else { col3 };
        let id = dir.file_name().unwrap().to_str().unwrap();
        let row = ids.iter().position(|x| x == id).unwrap_or_else(|| panic!("{id} not in the shard"));
        assert_eq!(label, labels[row], "{line}");
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        assert_eq!(files.len(), n, "{line}");
        if r.attrs.pixels.encoding == dfer::shard::Encoding::Jpeg {
            let (face, _) = r.jpeg_frames(row).unwrap();
            assert_eq!(std::fs::read(&files[0]).unwrap(), face[0], "exported bytes are the stored JPEG");
        }
    }
}

/// Each pixel encoding reads back the same in dfer and in the documented h5py snippet; JPEG stays
/// close to raw; a corrupt JPEG frame is found by `dfer verify`, naming shard, clip and frame.
#[test]
fn every_encoding_reads_back_in_dfer_and_in_h5py() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dfew");
    synth("dfew", 6, &root, false);
    let manifest = dir.path().join("clips.parquet");
    let m = manifest.to_str().unwrap();
    dfer_expect(&["manifest", "--dataset", "dfew", "--root", root.to_str().unwrap(), "-o", m], 0);
    let snippet = dir.path().join("read_shard.py");
    std::fs::write(&snippet, documented_shard_reader()).unwrap();
    let mut views = BTreeMap::new();
    for encoding in ["raw", "gzip", "jpeg"] {
        let out = dir.path().join(encoding);
        let cfg = dir.path().join(format!("{encoding}.toml"));
        std::fs::write(
            &cfg,
            format!("frames = 4\nstore_frames = 4\nface_size = 64\nscene_size = 64\nencoding = \"{encoding}\"\n"),
        )
        .unwrap();
        let frames = dir.path().join(format!("{encoding}-frames"));
        let base = if encoding == "jpeg" { "1" } else { "0" };
        let (o, c, f) = (out.to_str().unwrap(), cfg.to_str().unwrap(), frames.to_str().unwrap());
        dfer_expect(
            &["prep", "--manifest", m, "--out", o, "--config", c, "--export-frames", f, "--export-label-base", base],
            0,
        );
        let shard = out.join("shards/00000.h5");
        check_exported_lists(&frames, &shard, base == "1");
        let ours = dfer_view(&shard);
        assert_eq!(ours.len(), 6);
        let py = std::process::Command::new(reader_python()).arg(&snippet).arg(&shard).output().unwrap();
        assert!(py.status.success(), "{encoding}: {}", String::from_utf8_lossy(&py.stderr));
        let lines: Vec<String> = String::from_utf8(py.stdout).unwrap().lines().map(str::to_string).collect();
        assert_eq!(lines.len(), ours.len(), "{encoding}: {lines:?}");
        let r = ShardReader::open(&shard).unwrap();
        for (i, (line, (id, label, face, scene))) in lines.iter().zip(&ours).enumerate() {
            let f: Vec<&str> = line.split_whitespace().collect();
            assert_eq!((f[0], f[1]), (id.as_str(), label.as_str()), "{encoding}: {line}");
            let c = r.clip(i).unwrap();
            let m = c.frame_index.len();
            assert!(line.contains(&format!("({m}, 64, 64, 3) ({m}, 64, 64, 3)")), "{encoding}: {line}");
            // The documented Python finds the test frames where dfer's rule puts them.
            let view: Vec<usize> = f[f.len() - 1].split(',').map(|p| p.parse().unwrap()).collect();
            let frames: Vec<usize> = view.iter().map(|&p| c.frame_index[p] as usize).collect();
            assert_eq!(frames, sampling::test_indices(c.clip_frames, 4), "{encoding}: {line}");
            let (pf, ps): (f64, f64) = (f[f.len() - 3].parse().unwrap(), f[f.len() - 2].parse().unwrap());
            // Pillow's and dfer's JPEG decoders may round a few pixels differently.
            let tol = if encoding == "jpeg" { 0.05 } else { 0.0006 };
            assert!(
                (pf - face).abs() <= tol && (ps - scene).abs() <= tol,
                "{encoding}: {line} vs {face:.3} {scene:.3}"
            );
        }
        views.insert(encoding, ours);
    }
    assert_eq!(views["raw"], views["gzip"], "gzip is lossless");
    for (r, j) in views["raw"].iter().zip(&views["jpeg"]) {
        assert!((r.2 - j.2).abs() < 1.0 && (r.3 - j.3).abs() < 1.0, "JPEG close to raw: {r:?} {j:?}");
    }

    // Break one JPEG frame inside the shard (with h5py): verify names it and the shard to redo.
    let jpeg = dir.path().join("jpeg");
    let shard = jpeg.join("shards/00000.h5");
    let damage =
        "import h5py, sys\nwith h5py.File(sys.argv[1], 'r+') as f:\n    k = int(f['frame_start'][2]) + 1\n    f['scene'][k] = f['scene'][k][:40]\n";
    let py = std::process::Command::new(reader_python()).args(["-c", damage]).arg(&shard).output().unwrap();
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stderr));
    let o = dfer_expect(&["verify", jpeg.to_str().unwrap()], 1);
    let report = format!("{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
    let id = &views["jpeg"][2].0;
    assert!(
        report.contains("00000.h5") && report.contains(&format!("clip {id}")) && report.contains("scene frame 1"),
        "{report}"
    );
}

#[test]
fn bench_detector_times_each_input_size_and_refuses_a_size_centerface_cannot_take() {
    let o = dfer_expect(&["bench", "detector", "--sizes", "64x64,128x96", "--runs", "2"], 0);
    let lines: Vec<serde_json::Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{}", stdout(&o));
    for (line, (w, h)) in lines.iter().zip([(64, 64), (128, 96)]) {
        assert_eq!((line["width"].as_u64(), line["height"].as_u64()), (Some(w), Some(h)));
        let (ms, ns) = (line["ms_per_run"].as_f64().unwrap(), line["ns_per_pixel"].as_f64().unwrap());
        assert!(ms > 0.0 && (ns - ms * 1e6 / (w * h) as f64).abs() < 1e-6 * ns, "{line}");
    }
    let o = dfer_expect(&["bench", "detector", "--sizes", "100x64"], 2);
    assert!(common::stderr(&o).contains("100x64"), "{}", common::stderr(&o));
}
