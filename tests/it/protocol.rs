//! The field's evaluation protocol end to end, on synthetic DFEW-layout datasets: every clip a
//! fold's test split lists is scored (a clip without a face from the centre fallback; a
//! truncated clip and an empty file counted wrong), the test frames are the published rule's on
//! each clip's own frame count, a score that does not cover the split is refused, and the
//! datasets' own face crops go through unchanged.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{dfer, dfer_expect, stdout, synth};
use dfer::eval::Report;
use dfer::sampling;
use dfer::shard::ShardReader;
use dfer::synth::{read_truth, EdgeCase, TruthClip};

const SPLITS: &str = "EmoLabel_DataSplit";

/// Moves the clips `ids` into fold 1's test split (and out of its training split) of a DFEW-layout
/// dataset at `root`: test files list padded ids, training files unpadded ones (as synth writes).
fn into_fold1_test(root: &Path, ids: &[&str], labels: &BTreeMap<String, usize>) {
    let test = root.join(format!("{SPLITS}/test(single-labeled)/set_1.csv"));
    let train = root.join(format!("{SPLITS}/train(single-labeled)/set_1.csv"));
    let id_of = |line: &str| format!("{:0>5}", line.split(',').next().unwrap());
    let keep = |path: &Path| -> Vec<String> {
        let text = std::fs::read_to_string(path).unwrap();
        text.lines().skip(1).filter(|l| !ids.contains(&id_of(l).as_str())).map(str::to_string).collect()
    };
    let (mut t, tr) = (keep(&test), keep(&train));
    t.extend(ids.iter().map(|id| format!("{id},{}", labels[*id] + 1)));
    std::fs::write(&test, format!("video_name,label\n{}\n", t.join("\n"))).unwrap();
    std::fs::write(&train, format!("video_name,label\n{}\n", tr.join("\n"))).unwrap();
}

/// Synth with edge cases, fold 1's test split made to list the clip without a face, the
/// truncated one, the empty one and the two short ones; manifest and prep (T = 16, 48 px).
struct Protocol {
    dir: tempfile::TempDir,
    truth: BTreeMap<String, TruthClip>,
    manifest: PathBuf,
}

fn protocol_data() -> Protocol {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dfew");
    synth("dfew", 21, &root, true);
    let truth: BTreeMap<String, TruthClip> =
        read_truth(&root).unwrap().into_iter().map(|t| (t.clip_id.clone(), t)).collect();
    let edges = [EdgeCase::NoFace, EdgeCase::Truncated, EdgeCase::ZeroByte, EdgeCase::Short, EdgeCase::OneFrame];
    let ids: Vec<&str> = truth
        .values()
        .filter(|t| t.edge_case.is_some_and(|e| edges.contains(&e)))
        .map(|t| t.clip_id.as_str())
        .collect();
    assert_eq!(ids.len(), edges.len());
    let labels = truth.iter().map(|(id, t)| (id.clone(), t.label)).collect();
    into_fold1_test(&root, &ids, &labels);
    let manifest = dir.path().join("clips.parquet");
    let m = manifest.to_str().unwrap();
    dfer_expect(&["manifest", "--dataset", "dfew", "--root", root.to_str().unwrap(), "-o", m], 1);
    Protocol { dir, truth, manifest }
}

/// Preps `p` into `out` with T = 16 and 48 px crops (plus `extra` prep.toml lines and flags).
fn prep(p: &Protocol, out: &Path, extra_toml: &str, flags: &[&str]) -> std::process::Output {
    let cfg = out.with_extension("toml");
    std::fs::write(&cfg, format!("face_size = 48\nscene_size = 48\nclips_per_shard = 8\n{extra_toml}")).unwrap();
    let mut args = vec!["prep", "--manifest", p.manifest.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend(["--config", cfg.to_str().unwrap()]);
    args.extend_from_slice(flags);
    dfer(&args)
}

/// A one-epoch tiny OUS run of fold 1 on `shards`.
fn train(p: &Protocol, shards: &Path, run: &Path, model: &str) {
    let cfg = run.with_extension("toml");
    let text = format!(
        "[data]\nmanifest = {:?}\nshards = {shards:?}\nfold = 1\n\
         [model]\narch = \"tiny\"\nheads = 4\nn_ctx = 4\nsim_dim = 16\n{model}\n\
         [train]\nepochs = 1\nbatch_size = 8\nloader_threads = 2\n",
        p.manifest
    );
    std::fs::write(&cfg, text).unwrap();
    dfer_expect(&["train", "--config", cfg.to_str().unwrap(), "--run", run.to_str().unwrap()], 0);
}

/// The ids fold 1's test split lists.
fn fold1_test_ids(p: &Protocol) -> Vec<String> {
    let text = std::fs::read_to_string(p.dir.path().join(format!("dfew/{SPLITS}/test(single-labeled)/set_1.csv")));
    text.unwrap().lines().skip(1).map(|l| format!("{:0>5}", l.split(',').next().unwrap())).collect()
}

#[test]
fn every_listed_test_clip_is_scored_on_the_published_frames() {
    let p = protocol_data();
    let out = p.dir.path().join("prep");
    let o = prep(&p, &out, "", &["--threads", "2"]);
    assert_eq!(o.status.code(), Some(1), "the truncated and empty clips fail: {}", String::from_utf8_lossy(&o.stderr));
    let run = p.dir.path().join("run");
    train(&p, &out.join("shards"), &run, "");
    let e = dfer_expect(&["eval", "--run", run.to_str().unwrap()], 0);
    let said = stdout(&e);
    let r: Report = serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();

    // Counts: every listed clip accounted for, the no-face clip from the fallback, the truncated
    // and empty ones unscorable; the metrics count them all.
    let listed = fold1_test_ids(&p);
    let c = r.test_clips;
    assert_eq!(c.listed, listed.len(), "{c:?}");
    assert!(c.adds_up(), "{c:?}");
    assert_eq!((c.fallback, c.unscorable, c.not_prepared), (1, 2, 0), "{c:?}");
    assert_eq!(r.metrics.clips as usize, listed.len());
    assert_eq!(r.metrics.unscored.iter().sum::<u64>(), 2);
    assert!(said.contains(&format!("test clips: {} listed", listed.len())), "{said}");

    // predictions.csv: one row per listed clip, the published test frames of each clip's length.
    let csv = std::fs::read_to_string(run.join("predictions.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("clip_id,label,predicted,source,frames"));
    let rows: BTreeMap<String, Vec<String>> =
        lines.map(|l| l.split(',').map(str::to_string).collect::<Vec<_>>()).map(|v| (v[0].clone(), v)).collect();
    let mut ids: Vec<String> = rows.keys().cloned().collect();
    let mut want = listed.clone();
    ids.sort();
    want.sort();
    assert_eq!(ids, want, "one row per listed clip");
    for (id, row) in &rows {
        let t = &p.truth[id];
        match t.edge_case {
            Some(EdgeCase::Truncated | EdgeCase::ZeroByte) => {
                assert_eq!((row[2].as_str(), row[3].as_str(), row[4].as_str()), ("", "unscorable", ""), "{id}");
                continue;
            }
            Some(EdgeCase::NoFace) => assert_eq!(row[3], "fallback", "{id}"),
            _ => assert_eq!(row[3], "faces", "{id}"),
        }
        let frames: Vec<usize> = row[4].split(' ').map(|f| f.parse().unwrap()).collect();
        assert_eq!(frames, sampling::test_indices(t.n_frames, 16), "{id}: {} frames", t.n_frames);
        assert!(!row[2].is_empty(), "{id}: scored");
    }
    // The short clips take every frame and repeat the last, as the published loaders pad them.
    let short = p.truth.values().find(|t| t.edge_case == Some(EdgeCase::Short)).unwrap();
    assert!(rows[&short.clip_id][4].starts_with("0 1 2 3 4 5 6 7 8 9 9 9"), "{:?}", rows[&short.clip_id]);

    // dfer report takes the run, with its counts beside the figures.
    let rep = stdout(&dfer_expect(&["report", run.to_str().unwrap()], 0));
    let counts = format!("{} = {} + 1 + 2", c.listed, c.faces);
    assert!(rep.contains(&counts) && !rep.contains("PARTIAL"), "{rep}");
}

#[test]
fn a_score_that_does_not_cover_the_split_is_refused_unless_allowed() {
    let p = protocol_data();
    // Worker 0 of 3: only every third shard of 8 clips is prepared.
    let out = p.dir.path().join("prep");
    let o = prep(&p, &out, "", &["--threads", "2", "--shard-index", "0", "--num-shards", "3"]);
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", String::from_utf8_lossy(&o.stderr));
    let run = p.dir.path().join("run");
    train(&p, &out.join("shards"), &run, "");
    let e = dfer_expect(&["eval", "--run", run.to_str().unwrap()], 0);
    let err = String::from_utf8_lossy(&e.stderr);
    assert!(err.contains("does not cover the fold's test split"), "{err}");
    let r: Report = serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    assert!(r.test_clips.not_prepared > 0 && !r.test_clips.adds_up(), "{:?}", r.test_clips);
    let refused = dfer_expect(&["report", run.to_str().unwrap()], 2);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("run") && err.contains("NOT PREPARED") && err.contains("--allow-partial"), "{err}");
    let rep = stdout(&dfer_expect(&["report", run.to_str().unwrap(), "--allow-partial"], 0));
    assert!(rep.contains("PARTIAL"), "{rep}");
}

#[test]
fn the_datasets_own_face_crops_go_through_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dfew");
    synth("dfew", 14, &root, false);
    let truth: BTreeMap<String, TruthClip> =
        read_truth(&root).unwrap().into_iter().map(|t| (t.clip_id.clone(), t)).collect();
    let manifest = dir.path().join("clips.parquet");
    let m = manifest.to_str().unwrap();
    dfer_expect(&["manifest", "--dataset", "dfew", "--root", root.to_str().unwrap(), "-o", m], 0);
    for (name, scene) in [("faces-only", 0), ("with-scenes", 48)] {
        let cfg = dir.path().join(format!("{name}.toml"));
        std::fs::write(&cfg, format!("face_crops = \"dataset\"\nface_size = 224\nscene_size = {scene}\n")).unwrap();
        let out = dir.path().join(name);
        let args = ["prep", "--manifest", m, "--out", out.to_str().unwrap(), "--config", cfg.to_str().unwrap()];
        dfer_expect(&args, 0);
        let r = ShardReader::open(&out.join("shards/00000.h5")).unwrap();
        assert_eq!(r.attrs.face_crops.as_str(), "dataset");
        assert_eq!(r.attrs.scene_size, scene);
        for (i, id) in r.clip_ids().unwrap().iter().enumerate() {
            let c = r.clip(i).unwrap();
            let t = &truth[id];
            let folder = root.join(t.frames_dir.as_ref().unwrap());
            let mut files: Vec<PathBuf> = std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().path()).collect();
            files.sort();
            assert_eq!(c.clip_frames, files.len(), "{id}: frames counted in the crop folder");
            // At the test frames, the shard's face frames are the folder's JPEG files, within
            // the shard's own JPEG error.
            for f in sampling::test_indices(files.len(), 16) {
                let k = c.frame_index.binary_search(&(f as i32)).unwrap();
                let want = image::open(&files[f]).unwrap().to_rgb8();
                let got = &c.face[k * 224 * 224 * 3..(k + 1) * 224 * 224 * 3];
                let err: f64 = want.as_raw().iter().zip(got).map(|(a, b)| (*a as f64 - *b as f64).abs()).sum::<f64>()
                    / got.len() as f64;
                assert!(err < 2.0, "{id} frame {f}: mean error {err:.2} grey levels");
            }
            if scene > 0 {
                assert!(
                    c.scene_frame.iter().all(|&v| v >= 0 && (v as usize) < t.n_frames),
                    "{id}: {:?}",
                    c.scene_frame
                );
            } else {
                assert!(c.scene.is_empty() && c.scene_frame.iter().all(|&v| v == -1), "{id}");
            }
        }
    }
    // A DFER-CLIP run on the dataset's crops trains and evaluates.
    let run = dir.path().join("run");
    let cfg = run.with_extension("toml");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip-tiny");
    let text = format!(
        "[data]\nmanifest = {manifest:?}\nshards = {:?}\nfold = 1\n\
         [model]\nmethod = \"dfer-clip\"\narch = \"config\"\nclip_weights = {fixture:?}\nheads = 4\nn_ctx = 4\n\
         normalise = \"unit\"\n\
         [train]\nepochs = 1\nbatch_size = 4\ndrop_last = true\nloader_threads = 2\n\
         [aug]\njitter = 0.5\njitter_kind = \"brightness\"\nrotation = 4.0\n",
        dir.path().join("faces-only/shards")
    );
    std::fs::write(&cfg, text).unwrap();
    dfer_expect(&["train", "--config", cfg.to_str().unwrap(), "--run", run.to_str().unwrap()], 0);
    let r: Report =
        serde_json::from_slice(&dfer_expect(&["eval", "--run", run.to_str().unwrap(), "--json"], 0).stdout).unwrap();
    assert!(r.test_clips.adds_up() && r.test_clips.faces == r.test_clips.listed, "{:?}", r.test_clips);
    // OUS needs the scene stream these shards do not have, and says so.
    let ous = dir.path().join("ous.toml");
    std::fs::write(&ous, std::fs::read_to_string(&cfg).unwrap().replace("method = \"dfer-clip\"", "method = \"ous\""))
        .unwrap();
    let o = dfer_expect(
        &["train", "--config", ous.to_str().unwrap(), "--run", dir.path().join("ous").to_str().unwrap()],
        2,
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("no scene stream"), "{}", String::from_utf8_lossy(&o.stderr));
}
