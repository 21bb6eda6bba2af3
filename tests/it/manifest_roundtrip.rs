//! synth → manifest → inspect for every official layout, checked against what synth wrote.

use crate::common;

use std::collections::BTreeMap;

use common::{dfer, dfer_expect, stderr, stdout, synth};
use dfer::clip_status::ClipStatus;
use dfer::manifest::Manifest;
use dfer::synth::{read_truth, EdgeCase};

/// Checks one manifest against the truth file: ids, labels, roles, statuses, probe facts.
fn check_against_truth(layout: &str, source: &str) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(layout);
    synth(layout, 12, &root, true);
    let truth = read_truth(&root).unwrap();
    let out = dir.path().join("clips.parquet");
    let o = dfer_expect(
        &[
            "manifest",
            "--dataset",
            layout,
            "--root",
            root.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--source",
            source,
        ],
        1,
    );
    assert!(stderr(&o).contains("with problems"), "{}", stderr(&o));
    let m = Manifest::read(&out).unwrap();
    assert_eq!(m.rows.len(), truth.len(), "one row per clip");
    let by_id: BTreeMap<&str, _> = m.rows.iter().map(|r| (r.clip_id.as_str(), r)).collect();
    for t in &truth {
        let r = by_id.get(t.clip_id.as_str()).unwrap_or_else(|| panic!("{} missing from manifest", t.clip_id));
        assert_eq!(r.label, t.label, "{}", t.clip_id);
        assert_eq!(m.desc.labels[r.label], t.label_name);
        let roles: Vec<&str> = r.roles.iter().map(|x| x.map(|x| x.as_str()).unwrap_or("none")).collect();
        let want: Vec<&str> = t.roles.iter().map(|r| r.as_str()).collect();
        assert_eq!(roles, want, "{}", t.clip_id);
        let expected = if source == "video" { t.expected_status } else { t.expected_status_frames.unwrap() };
        assert_eq!(r.status, expected, "{} ({:?}): {:?}", t.clip_id, t.edge_case, r.error);
        if !r.status.is_ok() {
            assert!(r.error.is_some(), "{}: a problem row carries an error", t.clip_id);
            continue;
        }
        let p = r.probe.as_ref().unwrap();
        assert_eq!(p.n_frames as usize, t.n_frames, "{}", t.clip_id);
        if source == "video" {
            assert_eq!((p.width, p.height, p.rotation), (t.width, t.height, t.rotation), "{}", t.clip_id);
            if t.edge_case != Some(EdgeCase::VariableFrameRate) {
                assert!((p.fps.unwrap() - t.fps as f64).abs() < 0.01, "{}: fps {:?}", t.clip_id, p.fps);
            }
        } else {
            assert_eq!((p.width, p.height), (224, 224));
        }
    }
    // Folds: every clip is tested in exactly one fold (k-fold layouts).
    if m.folds > 0 {
        for r in m.rows.iter().filter(|r| r.status.is_ok()) {
            assert_eq!(r.roles.iter().filter(|x| x.map(|x| x.as_str()) == Some("test")).count(), 1);
        }
    }
    // inspect: text and JSON agree with the manifest.
    let text = stdout(&dfer_expect(&["inspect", out.to_str().unwrap()], 0));
    let problems = m.problem_count();
    assert!(
        text.contains(&format!("clips {}  usable {}  problems {problems}", truth.len(), truth.len() - problems)),
        "{text}"
    );
    assert!(text.contains(&format!("0 {}", m.desc.labels[0])), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&dfer_expect(&["inspect", out.to_str().unwrap(), "--json"], 0))).unwrap();
    assert_eq!(json["clips"], truth.len());
    let class_total: u64 = json["classes"].as_array().unwrap().iter().map(|c| c["clips"].as_u64().unwrap()).sum();
    assert_eq!(class_total as usize, truth.len());
    let problem_total: u64 = json["problems"].as_object().unwrap().values().map(|p| p["count"].as_u64().unwrap()).sum();
    assert_eq!(problem_total as usize, problems);
}

#[test]
fn dfew_videos_round_trip() {
    check_against_truth("dfew", "video");
}

#[test]
fn dfew_face_frames_round_trip() {
    check_against_truth("dfew", "frames");
}

#[test]
fn ferv39k_videos_round_trip() {
    check_against_truth("ferv39k", "video");
}

#[test]
fn ferv39k_face_frames_round_trip() {
    check_against_truth("ferv39k", "frames");
}

#[test]
fn mafw_videos_round_trip() {
    check_against_truth("mafw", "video");
}

#[test]
fn synth_is_deterministic_for_a_seed() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    synth("mafw", 4, &a, false);
    synth("mafw", 4, &b, false);
    for t in read_truth(&a).unwrap() {
        let x = std::fs::read(a.join(&t.video)).unwrap();
        let y = std::fs::read(b.join(&t.video)).unwrap();
        assert!(x == y, "{} differs between two runs with one seed", t.video);
    }
    assert_eq!(
        std::fs::read(a.join("synth_truth.jsonl")).unwrap(),
        std::fs::read(b.join("synth_truth.jsonl")).unwrap()
    );
}

#[test]
fn broken_split_files_are_diagnosed_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dfew");
    synth("dfew", 5, &root, false);
    let f = root.join("EmoLabel_DataSplit/test(single-labeled)/set_2.csv");
    let mut text = std::fs::read_to_string(&f).unwrap().replace('\n', "\r\n");
    text.insert(0, '\u{feff}');
    text.push_str("00099,3\r\n00001,9\r\n");
    std::fs::write(&f, text).unwrap();
    let out = dir.path().join("c.parquet");
    let o = dfer_expect(
        &["manifest", "--dataset", "dfew", "--root", root.to_str().unwrap(), "-o", out.to_str().unwrap()],
        1,
    );
    let err = stderr(&o);
    assert!(err.contains("set_2.csv:1: note: UTF-8 byte-order mark ignored"), "{err}");
    assert!(err.contains("set_2.csv: note: CRLF line endings"), "{err}");
    assert!(err.contains("label 9 out of range 1..=7"), "{err}");
    let m = Manifest::read(&out).unwrap();
    let unknown = m.rows.iter().find(|r| r.clip_id == "00099").unwrap();
    assert_eq!(unknown.status, ClipStatus::Missing);
    assert!(unknown.error.as_deref().unwrap().contains("00099.mp4"));
}

#[test]
fn unusable_input_exits_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let o = dfer(&["manifest", "--dataset", "dfew", "--root", dir.path().to_str().unwrap(), "-o", "/dev/null"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("set_1.csv") && stderr(&o).contains("cannot read split file"), "{}", stderr(&o));
    let o = dfer(&["manifest", "--dataset", "nosuch", "--root", "."]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown dataset 'nosuch'"), "{}", stderr(&o));
    let o = dfer(&["inspect", "Cargo.toml"]);
    assert_eq!(o.status.code(), Some(2));
    let o = dfer(&["synth", "--layout", "dfew", "--out", "src"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not empty"), "{}", stderr(&o));
}

#[test]
fn every_subcommand_has_help_with_an_example() {
    for sub in ["manifest", "prep", "inspect", "synth", "train", "eval", "report", "embed", "bench", "verify", "run"] {
        let o = dfer_expect(&[sub, "--help"], 0);
        assert!(stdout(&o).contains("Example:"), "{sub} --help lacks an example");
    }
    assert!(stdout(&dfer_expect(&["--help"], 0)).contains("Exit codes"));
}
