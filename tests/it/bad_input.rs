//! The bad-input catalogue: malformed split files, dataset descriptions, videos, paths that
//! leave the dataset root, configs, shards and checkpoints. Every case runs the real binary and
//! asserts the exit code, that the message names the file and the problem, and that nothing
//! else in the output folder changed. (Pipeline files: tests/pipeline.rs.)

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::files::{changed, snapshot};
use common::{dfer, dfer_expect, dfew_prepared, ffmpeg, s, stderr, synth};
use dfer::manifest::Manifest;

/// Runs `args`; asserts the exit code, that stderr holds every `want`, and that in `out`
/// only the files in `may_change` changed.
fn check(case: &str, args: &[&str], code: i32, wants: &[&str], out: &Path, may_change: &[&str]) -> String {
    let before = snapshot(out);
    let o = dfer(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(code), "{case}: exit code\n{err}");
    for w in wants {
        assert!(err.contains(w), "{case}: wanted {w:?} in:\n{err}");
    }
    let diff = changed(&before, &snapshot(out));
    let allowed: Vec<PathBuf> = may_change.iter().map(PathBuf::from).collect();
    assert!(diff.iter().all(|d| allowed.contains(&PathBuf::from(d))), "{case}: changed {diff:?}");
    err
}

/// A change made to a file before a case runs.
type Damage<'a> = Box<dyn Fn() + 'a>;

fn copy_dir(from: &Path, to: &Path) {
    let st = Command::new("cp").arg("-r").arg(from).arg(to).status().unwrap();
    assert!(st.success());
}

#[test]
fn malformed_split_files_and_descriptions() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    synth("dfew", 5, &base, false);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let manifest = out.join("clips.parquet");
    dfer_expect(&["manifest", "--dataset", "dfew", "--root", s(&base), "-o", s(&manifest)], 0);
    let split = "EmoLabel_DataSplit/train(single-labeled)/set_1.csv";
    let test_split = "EmoLabel_DataSplit/test(single-labeled)/set_1.csv";

    // (case, edit of the dataset copy, exit code, wanted in stderr)
    type Edit = Box<dyn Fn(&Path)>;
    let append = |file: &'static str, text: &'static str| -> Edit {
        Box::new(move |root: &Path| {
            let p = root.join(file);
            let mut t = std::fs::read_to_string(&p).unwrap();
            t.push_str(text);
            std::fs::write(&p, t).unwrap();
        })
    };
    let cases: Vec<(&str, Edit, i32, Vec<&str>)> = vec![
        (
            "missing split file",
            Box::new(move |r: &Path| std::fs::remove_file(r.join(split)).unwrap()),
            2,
            vec!["set_1.csv", "cannot read split file"],
        ),
        (
            "wrong header",
            Box::new(move |r: &Path| std::fs::write(r.join(split), "name,emotion\n1,1\n").unwrap()),
            2,
            vec!["set_1.csv", "header"],
        ),
        (
            "not UTF-8",
            Box::new(move |r: &Path| std::fs::write(r.join(split), b"video_name,label\n\xff\xfe1,1\n").unwrap()),
            2,
            vec!["set_1.csv", "UTF-8"],
        ),
        ("missing column", append(split, "3\n"), 1, vec!["set_1.csv:", "field"]),
        ("label out of range", append(split, "3,8\n"), 1, vec!["set_1.csv:", "label 8 out of range 1..=7"]),
        ("label zero (0-based copy)", append(split, "3,0\n"), 1, vec!["set_1.csv:", "out of range"]),
        ("non-integer id", append(split, "abc,1\n"), 1, vec!["set_1.csv:", "'abc' is not an integer"]),
        ("duplicate line", append(split, "1,1\n"), 0, vec!["set_1.csv:", "listed again"]),
        ("clip in train and test", append(test_split, "1,1\n"), 1, vec!["split_conflict"]),
        (
            "BOM and CRLF",
            Box::new(move |r: &Path| {
                let t = std::fs::read_to_string(r.join(split)).unwrap().replace('\n', "\r\n");
                std::fs::write(r.join(split), format!("\u{feff}{t}")).unwrap();
            }),
            0,
            vec!["byte-order mark", "CRLF"],
        ),
        ("unknown id", append(split, "77,2\n"), 1, vec!["clip 00077: missing:", "00077.mp4"]),
    ];
    let n = cases.len();
    for (i, (case, edit, code, wants)) in cases.into_iter().enumerate() {
        let root = dir.path().join(format!("case{i}"));
        copy_dir(&base, &root);
        edit(&root);
        let may = if code == 2 { vec![] } else { vec!["clips.parquet"] };
        let err = check(
            case,
            &["manifest", "--dataset", "dfew", "--root", s(&root), "-o", s(&manifest)],
            code,
            &wants,
            &out,
            &may,
        );
        if case == "clip in train and test" || case == "unknown id" {
            let m = Manifest::read(&manifest).unwrap();
            let bad: Vec<_> = m.rows.iter().filter(|r| !r.status.is_ok()).collect();
            assert!(!bad.is_empty(), "{case}: no clip marked\n{err}");
        }
    }
    assert_eq!(n, 11);

    // Dataset descriptions.
    let good = std::fs::read_to_string("data-manifests/dfew.toml").unwrap();
    let descs: Vec<(&str, String, Vec<&str>)> = vec![
        ("not TOML", "name = \"x\"\nlabels = [\n".into(), vec!["desc.toml", "not a valid dataset description"]),
        ("unknown key", format!("{good}\ncolour = 1\n"), vec!["desc.toml", "unknown field `colour`"]),
        ("label twice", good.replace("\"Sad\"", "\"Happy\""), vec!["desc.toml", "Happy"]),
        ("no labels", good.replace("labels = [", "labelz = ["), vec!["desc.toml", "labels"]),
    ];
    for (case, text, wants) in descs {
        let p = dir.path().join("desc.toml");
        std::fs::write(&p, text).unwrap();
        check(case, &["manifest", "--dataset", s(&p), "--root", s(&base), "-o", s(&manifest)], 2, &wants, &out, &[]);
    }
    check(
        "description file missing",
        &["manifest", "--dataset", "nosuch.toml", "--root", s(&base), "-o", s(&manifest)],
        2,
        &["unknown dataset 'nosuch.toml'"],
        &out,
        &[],
    );
    check(
        "root not a folder",
        &["manifest", "--dataset", "dfew", "--root", "Cargo.toml", "-o", s(&manifest)],
        2,
        &["Cargo.toml", "not a folder"],
        &out,
        &[],
    );
}

#[test]
fn malformed_videos_and_paths_leaving_the_root_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    std::fs::create_dir_all(&root).unwrap();
    let r = |f: &str| root.join(f).to_str().unwrap().to_string();
    let src = dir.path().join("src.mp4");
    ffmpeg(&["-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-frames:v", "250", "-pix_fmt", "yuv420p", s(&src)]);
    let bytes = std::fs::read(&src).unwrap();
    std::fs::write(r("cut.mp4"), &bytes[..bytes.len() / 2]).unwrap();
    let faststart = dir.path().join("faststart.mp4");
    ffmpeg(&["-i", s(&src), "-c", "copy", "-movflags", "+faststart", s(&faststart)]);
    let bytes = std::fs::read(&faststart).unwrap();
    std::fs::write(r("truncated.mp4"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(r("zero.mp4"), b"").unwrap();
    std::fs::write(r("text.mp4"), "this is not a video\n".repeat(100)).unwrap();
    std::fs::write(r("wav.mp4"), [b"RIFF".as_slice(), &[0u8; 64]].concat()).unwrap();
    ffmpeg(&["-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", &r("audio.mp4")]);
    ffmpeg(&["-i", s(&src), "-c", "copy", "-f", "matroska", &r("mkv_named.mp4")]);
    ffmpeg(&["-i", s(&src), "-c", "copy", "-output_ts_offset", "-1", &r("negative_ts.mkv")]);
    ffmpeg(&["-f", "lavfi", "-i", "color=size=160x120:rate=0.001", "-frames:v", "3", "-c:v", "mpeg4", &r("slow.avi")]);
    ffmpeg(&["-f", "lavfi", "-i", "color=size=8192x4352", "-frames:v", "1", "-c:v", "mjpeg", &r("huge.avi")]);
    std::fs::create_dir_all(root.join("huge_frames")).unwrap();
    ffmpeg(&["-f", "lavfi", "-i", "color=size=8192x4352", "-frames:v", "1", &r("huge_frames/1.png")]);
    // Display matrices: all zero, and a 45° turn (tkhd matrix of the first track patched).
    let base = std::fs::read(&src).unwrap();
    let tkhd = base.windows(4).position(|w| w == b"tkhd").unwrap() - 4;
    for (name, m) in
        [("zero_matrix.mp4", [0i32; 9]), ("turned_45.mp4", [46341, 46341, 0, -46341, 46341, 0, 0, 0, 1 << 30])]
    {
        let mut b = base.clone();
        let bytes: Vec<u8> = m.iter().flat_map(|v| v.to_be_bytes()).collect();
        b[tkhd + 48..tkhd + 84].copy_from_slice(&bytes);
        std::fs::write(r(name), b).unwrap();
    }
    std::fs::create_dir_all(root.join("empty_frames")).unwrap();
    std::fs::create_dir_all(root.join("sub")).unwrap();
    let outside = dir.path().join("outside.mp4");
    std::fs::copy(&src, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("link_out.mp4")).unwrap();
    std::os::unix::fs::symlink(dir.path(), root.join("sub/up")).unwrap();
    std::fs::copy(&src, root.join("good.mp4")).unwrap();
    let rows = [
        ("good.mp4", "ok", ""),
        ("truncated.mp4", "truncated", "truncated.mp4: the header lists"),
        ("cut.mp4", "unreadable", "cut.mp4: cannot open as a video container"),
        ("zero.mp4", "empty", "zero-byte"),
        ("text.mp4", "unreadable", "text.mp4"),
        ("wav.mp4", "unreadable", "wav.mp4"),
        ("audio.mp4", "unreadable", "no video stream"),
        ("mkv_named.mp4", "ok", ""),
        ("negative_ts.mkv", "ok", ""),
        ("empty_frames", "empty", "empty_frames"),
        ("slow.avi", "ok", ""),
        ("huge.avi", "too_large", "frame size 8192x4352 is over"),
        ("huge_frames", "too_large", "1.png: frame size 8192x4352"),
        ("zero_matrix.mp4", "unreadable", "display matrix is degenerate"),
        ("turned_45.mp4", "unreadable", "not a multiple of 90°"),
        ("link_out.mp4", "outside_root", "outside the dataset root"),
        ("sub/up/outside.mp4", "outside_root", "outside the dataset root"),
        ("nothere.mp4", "missing", "nothere.mp4"),
    ];
    let mut csv = String::from("path,label,split\n");
    for (i, (p, _, _)) in rows.iter().enumerate() {
        csv += &format!("{p},neutral,{}\n", if i % 2 == 0 { "train" } else { "test" });
    }
    csv += "../escape.mp4,neutral,train\n/etc/passwd,neutral,test\n";
    std::fs::write(root.join("labels.csv"), csv).unwrap();
    let desc = dir.path().join("generic.toml");
    std::fs::copy("data-manifests/generic-csv.toml", &desc).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let manifest = out.join("clips.parquet");
    let err = check(
        "videos",
        &["manifest", "--dataset", s(&desc), "--root", s(&root), "-o", s(&manifest)],
        1,
        &["labels.csv:", "'../escape.mp4' points outside the dataset root", "'/etc/passwd' is an absolute path"],
        &out,
        &["clips.parquet"],
    );
    let m = Manifest::read(&manifest).unwrap();
    for (path, status, msg) in rows {
        let row = m.rows.iter().find(|r| r.source_path == path).unwrap_or_else(|| panic!("{path}: no row\n{err}"));
        assert_eq!(row.status.as_str(), status, "{path}: {:?}", row.error);
        assert!(row.error.as_deref().unwrap_or("").contains(msg), "{path}: {:?}", row.error);
    }

    // prep re-checks the paths of a hand-edited manifest.
    let mut m = Manifest::read(&manifest).unwrap();
    let good = m.rows.iter_mut().find(|r| r.source_path == "good.mp4").unwrap();
    good.source_path = "../outside.mp4".into();
    let edited = dir.path().join("edited.parquet");
    m.write(&edited).unwrap();
    let prep = dir.path().join("prep");
    dfer_expect(&["prep", "--manifest", s(&edited), "--out", s(&prep), "--threads", "1"], 1);
    let (table, _) = dfer::manifest::read_parquet(&prep.join("prep.parquet")).unwrap();
    let st = table.column("status").unwrap().str().unwrap().iter().map(|s| s.unwrap().to_string()).collect::<Vec<_>>();
    assert!(st.iter().any(|s| s == "outside_root"), "{st:?}");
}

#[test]
fn malformed_configs_shards_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, prep) = dfew_prepared(dir.path(), 14);

    // prep configs
    let cfg = dir.path().join("prep.toml");
    for (case, text, want) in [
        ("prep.toml unknown key", "framez = 8\n", "unknown field `framez`"),
        ("prep.toml store_frames", "frames = 8\nstore_frames = 4\n", "store_frames (4) at least frames"),
        ("prep.toml not TOML", "frames = \n", "not a valid prep config"),
    ] {
        std::fs::write(&cfg, text).unwrap();
        check(
            case,
            &["prep", "--manifest", s(&manifest), "--out", s(&prep), "--config", s(&cfg)],
            2,
            &["prep.toml", want],
            &prep,
            &[],
        );
    }
    std::fs::write(&cfg, "frames = 8\nstore_frames = 8\n").unwrap();
    check(
        "prep into a folder made with other settings",
        &["prep", "--manifest", s(&manifest), "--out", s(&prep), "--config", s(&cfg)],
        2,
        &["prep", "settings"],
        &prep,
        &[],
    );

    // training configs
    let train = dir.path().join("train.toml");
    let good = format!(
        "[data]\nmanifest = \"{}\"\nshards = \"{}\"\n[model]\narch = \"tiny\"\n[train]\nepochs = 1\nbatch_size = 4\n",
        s(&manifest),
        s(&prep.join("shards"))
    );
    let runs = dir.path().join("runs");
    std::fs::create_dir_all(&runs).unwrap();
    let run = runs.join("r");
    for (case, text, wants) in [
        ("train.toml unknown key", format!("{good}colour = 1\n"), ["train.toml", "unknown field `colour`"]),
        ("train.toml bad arch", good.replace("tiny", "vit-l14"), ["train.toml", "vit-l14"]),
        ("train.toml manifest missing", good.replace("clips.parquet", "nope.parquet"), ["nope.parquet", "cannot open"]),
        ("train.toml zero epochs", good.replace("epochs = 1", "epochs = 0"), ["train.toml", "train.epochs"]),
    ] {
        std::fs::write(&train, text).unwrap();
        check(case, &["train", "--config", s(&train), "--run", s(&run)], 2, &wants, &runs, &[]);
    }
    std::fs::write(&train, &good).unwrap();
    dfer_expect(&["train", "--config", s(&train), "--run", s(&run)], 0);

    // shards
    let shard = prep.join("shards/00000.h5");
    let bytes = std::fs::read(&shard).unwrap();
    let bad_shards = dir.path().join("bad");
    std::fs::create_dir_all(&bad_shards).unwrap();
    let copy = bad_shards.join("00000.h5");
    let shard_cases: Vec<(&str, Damage, &str)> = vec![
        ("truncated shard", Box::new(|| std::fs::write(&copy, &bytes[..bytes.len() / 2]).unwrap()), "00000.h5"),
        ("text as shard", Box::new(|| std::fs::write(&copy, "not hdf5").unwrap()), "00000.h5"),
        (
            "shard schema version",
            Box::new(|| {
                std::fs::write(&copy, &bytes).unwrap();
                let f = hdf5::File::open_rw(&copy).unwrap();
                f.delete_attr("schema_version").unwrap();
                f.new_attr::<u64>().create("schema_version").unwrap().write_scalar(&99u64).unwrap();
            }),
            "schema version 99",
        ),
        (
            "shard dataset missing",
            Box::new(|| {
                std::fs::write(&copy, &bytes).unwrap();
                let f = hdf5::File::open_rw(&copy).unwrap();
                f.unlink("scene").unwrap();
            }),
            "scene",
        ),
    ];
    for (case, make, want) in shard_cases {
        make();
        check(case, &["inspect", s(&copy)], 2, &["00000.h5", want], &bad_shards, &[]);
    }

    // checkpoints: eval and resume refuse damaged files and name them.
    let ck = run.join("checkpoints");
    let weights = ck.join("epoch-0001.safetensors");
    let good_weights = std::fs::read(&weights).unwrap();
    let record = ck.join("epoch-0001.json");
    let good_record = std::fs::read(&record).unwrap();
    let optim = ck.join("epoch-0001.optim.safetensors");
    let good_optim = std::fs::read(&optim).unwrap();
    let restore = || {
        std::fs::write(&weights, &good_weights).unwrap();
        std::fs::write(&record, &good_record).unwrap();
        std::fs::write(&optim, &good_optim).unwrap();
    };
    let ck_cases: Vec<(&str, Damage, Vec<&str>)> = vec![
        (
            "weights truncated",
            Box::new(|| std::fs::write(&weights, &good_weights[..good_weights.len() / 2]).unwrap()),
            vec!["epoch-0001.safetensors"],
        ),
        ("record not JSON", Box::new(|| std::fs::write(&record, "{").unwrap()), vec!["epoch-0001.json"]),
        (
            "optimiser state missing",
            Box::new(|| std::fs::remove_file(&optim).unwrap()),
            vec!["epoch-0001.optim.safetensors", "missing"],
        ),
    ];
    for (case, damage, wants) in ck_cases {
        damage();
        let snapshot_dir = run.clone();
        check(case, &["eval", "--run", s(&run)], 2, &wants, &snapshot_dir, &[]);
        check(case, &["train", "--config", s(&train), "--run", s(&run), "--resume"], 2, &wants, &snapshot_dir, &[]);
        restore();
    }
    check("eval of a folder that is no run", &["eval", "--run", s(&prep)], 2, &["prep"], &prep, &[]);
}
