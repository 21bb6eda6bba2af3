//! `dfer run` on the shipped pipeline files: the demo pipeline shrunk with `--set` runs end to
//! end, a second run skips every stage, a changed setting re-runs exactly the stages after it,
//! `--from` / `--only` / `--dry-run`, a killed run continues where it stopped and ends
//! identical to an uninterrupted one, `dfer inspect` on pipeline files, and the real-data
//! pipelines' plans.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use common::{dfer, dfer_expect, stderr, stdout};

/// `dfer run pipelines/demo.toml` shrunk to 14 small clips and `epochs` tiny epochs in `out`.
fn demo(out: &Path, epochs: u32, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec!["run".into(), "pipelines/demo.toml".into()];
    let sets = [
        format!("pipeline.out={}", out.display()),
        "synth.clips=14".into(),
        "synth.edge_cases=false".into(),
        "synth.max_height=240".into(),
        "synth.max_frames=24".into(),
        "prep.export_frames=false".into(),
        format!("train.epochs={epochs}"),
    ];
    for s in sets {
        args.extend(["--set".into(), s]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn run(args: &[String], code: i32) -> String {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    stdout(&dfer_expect(&refs, code))
}

fn mtime(p: &Path) -> SystemTime {
    std::fs::metadata(p).and_then(|m| m.modified()).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn lines_with<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[test]
fn stamps_skip_done_stages_and_rerun_exactly_the_changed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");

    let plan = run(&demo(&out, 2, &["--dry-run"]), 0);
    for stage in ["synth", "manifest", "prep", "train-fold1", "eval-fold1", "report"] {
        assert!(plan.contains(&format!("run   {stage:<12} never run")), "{stage}:\n{plan}");
    }
    assert!(!out.exists(), "--dry-run wrote {}", out.display());

    let first = run(&demo(&out, 2, &[]), 0);
    assert_eq!(lines_with(&first, "==> ").len(), 6, "{first}");
    let fold = out.join("runs/fold1");
    for f in ["report.json", "confusion.png", "metrics.jsonl"] {
        assert!(fold.join(f).is_file(), "{f} missing");
    }
    assert!(out.join("report.json").is_file());
    assert!(first.contains("UAR") && first.contains("WAR"), "{first}");
    assert!(first.contains(&fold.join("confusion.png").display().to_string()), "{first}");
    let prep_table = out.join("prep/prep.parquet");
    let prep_time = mtime(&prep_table);
    let shard = std::fs::read(out.join("prep/shards/00000.h5")).unwrap();

    // Nothing changed: every stage is skipped.
    let again = run(&demo(&out, 2, &[]), 0);
    assert!(lines_with(&again, "==> ").is_empty(), "{again}");
    assert_eq!(lines_with(&again, "skip ").len(), 6, "{again}");
    assert_eq!(mtime(&prep_table), prep_time);

    // One more epoch: train, eval and report re-run; synth, manifest and prep do not.
    let plan = run(&demo(&out, 3, &["--dry-run"]), 0);
    for (stage, reason) in [
        ("synth", "skip  synth        up to date"),
        ("prep", "skip  prep         up to date"),
        ("train", "run   train-fold1  settings changed: train.epochs 2 → 3"),
        ("eval", "run   eval-fold1   input train-fold1 changed"),
        ("report", "run   report       input eval-fold1 changed"),
    ] {
        assert!(plan.contains(reason), "{stage}:\n{plan}");
    }
    let third = run(&demo(&out, 3, &[]), 0);
    let ran: Vec<&str> = lines_with(&third, "==> ");
    assert_eq!(ran.len(), 3, "{third}");
    assert!(ran[0].contains("train-fold1"), "{third}");
    assert_eq!(mtime(&prep_table), prep_time);
    assert_eq!(std::fs::read(out.join("prep/shards/00000.h5")).unwrap(), shard);
    let epochs = std::fs::read_to_string(fold.join("metrics.jsonl")).unwrap().lines().count();
    assert_eq!(epochs, 3);

    // `dfer inspect` on the pipeline: done under the settings it ran with, stale otherwise.
    let mut inspect = vec!["inspect".to_string()];
    inspect.extend(demo(&out, 3, &[]).into_iter().skip(1));
    let states = run(&inspect, 0);
    assert_eq!(states.matches("up to date").count(), 6, "{states}");
    let mut inspect = vec!["inspect".to_string()];
    inspect.extend(demo(&out, 2, &[]).into_iter().skip(1));
    let states = run(&inspect, 0);
    assert!(states.contains("train-fold1  stale: settings changed: train.epochs 3 → 2"), "{states}");

    // --only runs one stage; its inputs must be done.
    let only = run(&demo(&out, 3, &["--only", "eval"]), 0);
    assert_eq!(lines_with(&only, "==> "), ["==> [1/1] eval-fold1: asked for (--only eval)"], "{only}");
    let refused = dfer(&demo(&out, 2, &["--only", "eval"]).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("its input train-fold1 is not done"), "{}", stderr(&refused));

    // A run reaching a stage that another live run holds is refused.
    let lock = out.join("stamps/eval-fold1.lock");
    std::fs::write(&lock, std::process::id().to_string()).unwrap();
    let busy = dfer(&demo(&out, 3, &["--only", "eval"]).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(busy.status.code(), Some(2));
    let want = format!("another dfer run (process {}) is running stage eval-fold1", std::process::id());
    assert!(stderr(&busy).contains(&want), "{}", stderr(&busy));
    std::fs::remove_file(&lock).unwrap();

    // --from re-runs a stage and everything after it.
    let plan = run(&demo(&out, 3, &["--from", "prep", "--dry-run"]), 0);
    assert_eq!(lines_with(&plan, "  run ").len(), 4, "{plan}");
    assert!(plan.contains("run   prep         asked for (--from prep)"), "{plan}");
}

#[test]
fn killed_run_continues_where_it_stopped_and_matches_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let epochs = 10;
    let args = demo(&out, epochs, &[]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dfer"))
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let first_epoch = out.join("runs/fold1/checkpoints/epoch-0001.json");
    let t0 = Instant::now();
    while !first_epoch.exists() {
        assert!(child.try_wait().unwrap().is_none(), "dfer run ended before it could be killed");
        assert!(t0.elapsed() < Duration::from_secs(600), "no checkpoint after 10 minutes");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(out.join("stamps/train-fold1.lock").exists(), "the killed run's stage lock is left behind");
    let stamp = std::fs::read_to_string(out.join("stamps/train-fold1.json")).unwrap();
    assert!(stamp.contains("\"phase\": \"started\""), "{stamp}");

    let resumed = run(&args, 0);
    for stage in ["synth", "manifest", "prep"] {
        assert!(resumed.contains(&format!("skip {stage}: up to date")), "{stage}:\n{resumed}");
    }
    assert!(resumed.contains("==> [1/3] train-fold1: interrupted; continues where it stopped"), "{resumed}");
    assert!(resumed.contains("--fold 1 --resume"), "{resumed}");
    assert!(!out.join("stamps/train-fold1.lock").exists(), "a dead run's lock is taken over and removed");

    // The same training without interruption, from the pipeline's own config.
    let straight = dir.path().join("straight");
    let config = out.join("pipeline/train.toml");
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    dfer_expect(&["train", "--config", &s(&config), "--run", &s(&straight), "--fold", "1"], 0);
    let last = format!("checkpoints/epoch-{epochs:04}.safetensors");
    let a = std::fs::read(out.join("runs/fold1").join(&last)).unwrap();
    let b = std::fs::read(straight.join(&last)).unwrap();
    assert!(a == b, "resumed weights differ from an uninterrupted run");
}

#[test]
fn shards_prepared_outside_the_pipeline_are_continued_not_redone() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    run(&demo(&out, 1, &["--only", "synth"]), 0);
    run(&demo(&out, 1, &["--only", "manifest"]), 0);
    // A cluster worker's prep, with the config the pipeline wrote.
    let s = |p: PathBuf| p.to_str().unwrap().to_string();
    let (manifest, prep, config) =
        (s(out.join("clips.parquet")), s(out.join("prep")), s(out.join("pipeline/prep.toml")));
    dfer_expect(&["prep", "--manifest", &manifest, "--out", &prep, "--config", &config], 0);
    let shard = out.join("prep/shards/00000.h5");
    let before = mtime(&shard);
    let rest = run(&demo(&out, 1, &[]), 0);
    assert!(rest.contains("==> [1/4] prep: never run"), "{rest}");
    assert_eq!(mtime(&shard), before, "a complete shard was written again");
    assert!(out.join("runs/fold1/report.json").is_file());
}

#[test]
fn ready_pipelines_need_only_the_dataset_root() {
    let root = tempfile::tempdir().unwrap();
    let root_set = format!("dataset.root={}", root.path().display());
    for (name, folds) in [("dfew", 5), ("ferv39k", 0), ("mafw", 5)] {
        let file = format!("pipelines/{name}-ous.toml");
        let o = dfer(&["run", &file]);
        assert_eq!(o.status.code(), Some(2));
        let e = stderr(&o);
        assert!(e.contains(&file) && e.contains("--set dataset.root="), "{e}");

        let plan = stdout(&dfer_expect(&["run", &file, "--set", &root_set, "--dry-run"], 0));
        assert_eq!(plan.matches("$ dfer train ").count(), folds.max(1), "{plan}");
        assert_eq!(plan.matches("--fold ").count(), folds, "{plan}");
        assert!(plan.contains("$ dfer embed "), "{plan}");
        let states = stdout(&dfer_expect(&["inspect", &file, "--set", &root_set], 0));
        assert_eq!(states.matches("missing: never run").count(), 2 * folds.max(1) + 4, "{states}");
        // IAL's and FineCLIPER's pipelines: the same folds, no feature cache (IAL's network has
        // no frozen tower; FineCLIPER's adapters sit inside it).
        for method in ["ial", "fineclip"] {
            let file = format!("pipelines/{name}-{method}.toml");
            let plan = stdout(&dfer_expect(&["run", &file, "--set", &root_set, "--dry-run"], 0));
            assert_eq!(plan.matches("$ dfer train ").count(), folds.max(1), "{plan}");
            assert!(!plan.contains("$ dfer embed "), "{plan}");
        }
    }
}

#[test]
fn pipeline_mistakes_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[pipeline]\nout = \"x\"\n[dataset]\nname = \"dfew\"\n[prep\n").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (demo(&out, 2, &["--set", "synth.colour=red"]), "[synth] unexpected argument '--colour'"),
        (demo(&out, 2, &["--set", "prep.frame=8"]), "[prep]: unknown field `frame`"),
        (demo(&out, 2, &["--set", "train.model.arch=vit-l14"]), "vit-l14"),
        (demo(&out, 2, &["--set", "train.folds=[7]"]), "train.folds: dfew has folds 1 to 5"),
        (demo(&out, 2, &["--set", "pipeline"]), "--set pipeline: expected KEY=VALUE"),
        (demo(&out, 2, &["--set", "dataset.root=/data"]), "dataset.root cannot be set with [synth]"),
        (vec!["run".into(), bad.display().to_string()], "not a valid pipeline file"),
    ];
    for (args, want) in cases {
        let o = dfer(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert!(e.contains(want), "{args:?}: wanted {want:?} in {e}");
        assert!(e.contains("demo.toml") || e.contains("bad.toml") || e.contains("--set"), "{e}");
    }
    assert!(!out.exists(), "a refused pipeline wrote {}", out.display());
}

/// `dfer run PIPELINE` on `root` into `out`, made small (T = 4, 48 px, fold 1, 2 epochs, the tiny
/// CLIP fixture's weights and sizes), with `extra` settings.
fn small_run(pipeline: &str, root: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip-tiny");
    let mut sets = vec![
        format!("dataset.root={}", root.display()),
        format!("pipeline.out={}", out.display()),
        format!("train.model.clip_weights={}", fixture.display()),
    ];
    sets.extend(
        [
            "prep.frames=4",
            "prep.store_frames=8",
            "prep.face_size=48",
            "prep.scene_size=48",
            "train.folds=[1]",
            "train.epochs=2",
            "train.batch_size=8",
            "train.model.arch=config",
            "train.model.heads=4",
            "train.model.n_ctx=4",
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string()),
    );
    let mut args = vec!["run".to_string(), pipeline.into()];
    for s in sets {
        args.extend(["--set".into(), s]);
    }
    args
}

/// The real DFEW pipeline, changed only in dataset root, sizes and the weights: on a synthetic
/// DFEW with CLIP weights in Hugging Face names (the tiny CLIP made by transformers, with CLIP's
/// 49,408-token vocabulary) and CLIP's own BPE tokenizer, it caches features, trains, evaluates
/// and reports; DFER-CLIP's, IAL's and FineCLIPER's pipelines run on the same dataset, and one
/// report puts the four methods side by side.
#[test]
fn dfew_pipeline_runs_with_clip_weights_and_clips_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dfew");
    common::synth("dfew", 24, &root, false);
    let out = dir.path().join("out");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip-tiny");
    let args = small_run("pipelines/dfew-ous.toml", &root, &out, &["embed.views=2", "train.model.sim_dim=16"]);
    let o = dfer(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let (so, se) = (stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(0), "{so}\n{se}");
    assert!(se.contains("tokenizer: CLIP's BPE (49408 tokens)"), "{se}");
    for stage in ["manifest", "prep", "embed", "train-fold1", "eval-fold1", "report"] {
        assert!(so.contains(&format!("] {stage}: ")), "{stage}: {so}");
    }
    let saved = std::fs::read_to_string(out.join("runs/fold1/config.toml")).unwrap();
    assert!(saved.contains(fixture.to_str().unwrap()) && saved.contains("tokenizer = \"auto\""), "{saved}");
    assert!(out.join("runs/fold1/report.json").is_file() && out.join("report.json").is_file());

    // DFER-CLIP's pipeline (the paper's recipe: SGD, steps, fine-tuned tower) on the same data,
    // then one report of both methods.
    let clip_out = dir.path().join("dfer-clip");
    let args = small_run("pipelines/dfew-dfer-clip.toml", &root, &clip_out, &["train.milestones=[1]"]);
    let o = dfer(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let (so, se) = (stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(0), "{so}\n{se}");
    let saved = std::fs::read_to_string(clip_out.join("runs/fold1/config.toml")).unwrap();
    assert!(saved.contains("method = \"dfer-clip\"") && saved.contains("optimizer = \"sgd\""), "{saved}");
    let lines = dfer::train::read_metrics(&clip_out.join("runs/fold1/metrics.jsonl")).unwrap();
    assert_eq!(
        lines.iter().map(|l| (l.lr_factor * 100.0).round()).collect::<Vec<_>>(),
        [100.0, 10.0],
        "steps at epoch 1"
    );
    assert!(clip_out.join("report.png").is_file());

    // IAL's pipeline (their network from scratch on the dataset's crops, their recipe), one epoch.
    let ial_out = dir.path().join("ial");
    let ial_sets = [
        format!("dataset.root={}", root.display()),
        format!("pipeline.out={}", ial_out.display()),
        "prep.frames=4".into(),
        "prep.store_frames=8".into(),
        "prep.face_size=48".into(),
        "train.folds=[1]".into(),
        "train.epochs=1".into(),
        "train.batch_size=8".into(),
    ];
    let mut args = vec!["run".to_string(), "pipelines/dfew-ial.toml".into()];
    args.extend(ial_sets.iter().flat_map(|s| ["--set".to_string(), s.clone()]));
    let o = dfer(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    let saved = std::fs::read_to_string(ial_out.join("runs/fold1/config.toml")).unwrap();
    assert!(saved.contains("method = \"ial\"") && saved.contains("ial = 0.1"), "{saved}");

    // FineCLIPER's pipeline (adapters in the frozen towers), sized as the others.
    let fine_out = dir.path().join("fineclip");
    let args = small_run("pipelines/dfew-fineclip.toml", &root, &fine_out, &["train.warmup_epochs=0.5"]);
    let o = dfer(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));

    let both = dir.path().join("both.json");
    let plot = dir.path().join("both.png");
    let runs =
        [out.join("runs/fold1"), clip_out.join("runs/fold1"), ial_out.join("runs/fold1"), fine_out.join("runs/fold1")];
    let mut args: Vec<&str> = vec!["report"];
    args.extend(runs.iter().map(|r| r.to_str().unwrap()));
    args.extend(["-o", both.to_str().unwrap(), "--plot", plot.to_str().unwrap()]);
    let o = dfer(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("dfer-clip") && stdout(&o).contains("ous"), "{}", stdout(&o));
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&both).unwrap()).unwrap();
    let methods: Vec<&str> = r["methods"].as_array().unwrap().iter().map(|m| m["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["ous", "dfer-clip", "ial", "fineclip"]);
    assert_eq!(r["methods"][1]["mean_best_war"], r["runs"][1]["best_war"], "one run: its mean is itself");
    assert!(std::fs::read(&plot).unwrap().starts_with(b"\x89PNG"));
}

/// A pipeline's `report.json` and each fold's evaluation with the folder paths taken out.
fn figures(out: &Path) -> (serde_json::Value, Vec<serde_json::Value>) {
    let read = |p: PathBuf| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
    };
    let mut report = read(out.join("report.json"));
    for run in report["runs"].as_array_mut().unwrap() {
        run["run"] = run["run"].as_str().unwrap().rsplit('/').next().unwrap().into();
    }
    let folds = (1..=3).map(|k| read(out.join(format!("runs/fold{k}/report.json")))["metrics"].clone()).collect();
    (report, folds)
}

#[test]
fn fold_workers_on_one_folder_report_what_one_run_does() {
    let dir = tempfile::tempdir().unwrap();
    let (single, shared) = (dir.path().join("single"), dir.path().join("shared"));
    let folds = "train.folds=[1,2,3]";
    run(&demo(&single, 2, &["--set", folds]), 0);

    // The cluster recipe: the stages before training once, then one worker per fold, all at
    // once as separate processes, then a final run that evaluates and reports.
    for only in ["synth", "manifest", "prep"] {
        run(&demo(&shared, 2, &["--set", folds, "--only", only]), 0);
    }
    let workers: Vec<_> = (1..=3)
        .map(|k| {
            let args = demo(&shared, 2, &["--set", &format!("train.folds=[{k}]"), "--only", "train"]);
            std::process::Command::new(env!("CARGO_BIN_EXE_dfer"))
                .args(&args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (k, w) in workers.into_iter().enumerate() {
        let o = w.wait_with_output().unwrap();
        assert!(o.status.success(), "worker {}: {}", k + 1, String::from_utf8_lossy(&o.stderr));
        assert!(stdout(&o).contains(&format!("==> [1/1] train-fold{}", k + 1)), "{}", stdout(&o));
    }
    let last = run(&demo(&shared, 2, &["--set", folds]), 0);
    let ran = lines_with(&last, "==> ");
    assert_eq!(ran.len(), 4, "the final run evaluates three folds and reports:\n{last}");
    assert!(ran.iter().all(|l| !l.contains("train-fold")), "no fold is trained again:\n{last}");
    assert_eq!(figures(&shared), figures(&single), "fold workers and one run report the same");
    assert!(!std::fs::read_dir(shared.join("stamps"))
        .unwrap()
        .any(|e| { e.unwrap().file_name().to_string_lossy().ends_with(".lock") }));
}
