//! `dfer train`, `eval`, `report` and `embed` on synthetic DFEW-layout datasets with the tiny
//! OUS config on CPU: it learns held-out clips, the scene stream matters when only the scene
//! shows the label, a resumed run is bit-identical to an uninterrupted one, and training from
//! the feature cache agrees with training from pixels.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::files::{differences, snapshot, Files};
use common::{dfer, dfer_expect, stdout};
use dfer::eval::Report;
use dfer::train::{read_metrics, EpochLine};

/// Prep settings for training tests: T = 4 frames, 48 px crops (the tiny model sees 32 px).
const PREP: &str = "frames = 4\nstore_frames = 4\nface_size = 48\nscene_size = 48\nclips_per_shard = 32\n";

struct Data {
    _dir: tempfile::TempDir,
    manifest: PathBuf,
    shards: PathBuf,
}

/// Synth → manifest → prep of 105 clips, once per cue for the whole test binary.
fn data(cue: &str) -> &'static Data {
    static FACE: OnceLock<Data> = OnceLock::new();
    static SCENE: OnceLock<Data> = OnceLock::new();
    let cell = if cue == "face" { &FACE } else { &SCENE };
    cell.get_or_init(|| make_data(cue, 105))
}

/// 8 clips with the face cue, for the network trained from scratch on 112 px frames (IAL),
/// whose steps cost 20 times the tiny CLIP's.
fn small_data() -> &'static Data {
    static SMALL: OnceLock<Data> = OnceLock::new();
    SMALL.get_or_init(|| make_data("face", 8))
}

/// Synth → manifest → prep of `clips` clips whose label shows in the `cue` (face or scene).
fn make_data(cue: &str, clips: usize) -> Data {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dfew");
    let r = root.to_str().unwrap();
    let n = clips.to_string();
    let args = ["synth", "--layout", "dfew", "--clips", &n, "--out", r, "--seed", "5", "--cue", cue];
    let mut args = args.to_vec();
    args.extend(["--max-height", "240", "--max-frames", "20", "--lfw-faces", "6", "--no-face-frames"]);
    dfer_expect(&args, 0);
    let manifest = dir.path().join("clips.parquet");
    let m = manifest.to_str().unwrap();
    dfer_expect(&["manifest", "--dataset", "dfew", "--root", r, "-o", m, "--source", "video"], 0);
    let prep_cfg = dir.path().join("prep.toml");
    std::fs::write(&prep_cfg, PREP).unwrap();
    let out = dir.path().join("prep");
    let o = out.to_str().unwrap();
    dfer_expect(&["prep", "--manifest", m, "--out", o, "--config", prep_cfg.to_str().unwrap()], 0);
    Data { manifest, shards: out.join("shards"), _dir: dir }
}

/// Augmentation of most tests: mild crops and jitter.
const AUG: &str = "crop_area = [0.6, 1.0]\njitter = 0.1";

/// A tiny-model training config in `dir`; `data`, `model`, `train` and `aug` add keys to their tables.
fn config(dir: &Path, d: &Data, data: &str, model: &str, train: &str, aug: &str) -> PathBuf {
    let model = format!("arch = \"tiny\"\nheads = 4\nn_ctx = 4\nsim_dim = 16\n{model}");
    config_with_model(dir, d, data, &model, train, aug)
}

/// A training config in `dir` whose `[model]` table is `model`.
fn config_with_model(dir: &Path, d: &Data, data: &str, model: &str, train: &str, aug: &str) -> PathBuf {
    let text = format!(
        "[data]\nmanifest = {:?}\nshards = {:?}\nfold = 1\n{data}\n\
         [model]\n{model}\n\
         [train]\nbatch_size = 8\nloader_threads = 2\nwarmup_epochs = 0.5\n{train}\n\
         [aug]\n{aug}\n",
        d.manifest, d.shards
    );
    let p = dir.join("train.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// The tiny CLIP made with `transformers` (real structure, CLIP's 49,408-token vocabulary).
fn clip_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip-tiny")
}

/// `[model]` keys for CLIP weights at `weights` with the fixture's tower sizes.
fn clip_model(weights: &Path, extra: &str) -> String {
    format!("arch = \"config\"\nclip_weights = {weights:?}\nheads = 4\nn_ctx = 4\nsim_dim = 16\n{extra}")
}

fn train(cfg: &Path, run: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["train", "--config", cfg.to_str().unwrap(), "--run", run.to_str().unwrap()];
    args.extend_from_slice(extra);
    dfer_expect(&args, 0)
}

fn eval(run: &Path) -> Report {
    let out = dfer_expect(&["eval", "--run", run.to_str().unwrap(), "--json"], 0);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn learns_held_out_clips_and_reports() {
    let d = data("face");
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), d, "", "", "epochs = 12\nfinetune_image = true\nlr_image = 0.001\nlr = 0.003", AUG);
    let run = dir.path().join("run");
    train(&cfg, &run, &[]);
    let r = eval(&run);
    assert!(r.metrics.war >= 90.0, "held-out WAR {:.1} < 90 (UAR {:.1})", r.metrics.war, r.metrics.uar);
    assert_eq!(r.fold, 1);
    assert_eq!(r.labels.len(), 7);
    let test_clips: u64 = r.metrics.confusion.iter().flatten().sum();
    assert_eq!(test_clips, r.metrics.clips);
    assert!(test_clips >= 15, "{test_clips} test clips");
    for f in ["report.json", "confusion.csv", "confusion.png", "predictions.csv", "metrics.jsonl", "config.toml"] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    let png = image::open(run.join("confusion.png")).unwrap();
    assert!(png.width() > 400 && png.height() > 400);
    let csv = std::fs::read_to_string(run.join("predictions.csv")).unwrap();
    assert_eq!(csv.lines().count() as u64, test_clips + 1);
    let lines = read_metrics(&run.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.len(), 12);
    assert!(
        lines[11].train_loss < lines[0].train_loss,
        "loss fell: {} → {}",
        lines[0].train_loss,
        lines[11].train_loss
    );
    // Inspecting a run reads it and writes nothing; the curves are drawn on request.
    let before = snapshot(&run);
    let shown = stdout(&dfer_expect(&["inspect", run.to_str().unwrap()], 0));
    assert!(shown.contains("12 of 12 epochs done") && shown.contains("report (epoch"), "{shown}");
    let now = snapshot(&run);
    assert!(now == before, "dfer inspect changed the run folder:{}", differences(&now, &before));
    let curves = dir.path().join("curves.png");
    dfer_expect(&["inspect", run.to_str().unwrap(), "--plot", curves.to_str().unwrap()], 0);
    assert!(image::open(&curves).is_ok(), "training curves drawn");
    let _ = dfer_expect(&["eval", "--run", run.to_str().unwrap(), "--checkpoint", "last", "--json"], 0);
    let checkpoints = |f: Files| -> Files { f.into_iter().filter(|(n, _)| n.starts_with("checkpoints")).collect() };
    let (after_eval, ckpts) = (checkpoints(snapshot(&run)), checkpoints(before));
    assert!(
        after_eval == ckpts,
        "dfer eval --checkpoint last changed the checkpoints:{}",
        differences(&after_eval, &ckpts)
    );
    let rep = stdout(&dfer_expect(&["report", run.to_str().unwrap(), run.to_str().unwrap()], 0));
    assert!(rep.contains("mean of 2 runs") && rep.contains("chosen on each fold's test clips"), "{rep}");
    // A run folder is never silently overwritten.
    let again = dfer(&["train", "--config", cfg.to_str().unwrap(), "--run", run.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));
}

fn comparable(lines: Vec<EpochLine>) -> Vec<EpochLine> {
    lines.into_iter().map(|l| EpochLine { seconds: 0.0, clips_per_s: 0.0, ..l }).collect()
}

/// Runs `a` (uninterrupted) and `b` (stopped and resumed) end with the same weights and
/// optimiser state at `epoch`, byte for byte, and the same metrics but for timings.
fn assert_same_end(a: &Path, b: &Path, epoch: u32) {
    for f in [format!("epoch-{epoch:04}.safetensors"), format!("epoch-{epoch:04}.optim.safetensors")] {
        let (x, y) = (
            std::fs::read(a.join("checkpoints").join(&f)).unwrap(),
            std::fs::read(b.join("checkpoints").join(&f)).unwrap(),
        );
        assert!(x == y, "{f} differs between the uninterrupted and the resumed run");
    }
    assert_eq!(
        comparable(read_metrics(&a.join("metrics.jsonl")).unwrap()),
        comparable(read_metrics(&b.join("metrics.jsonl")).unwrap())
    );
}

#[test]
fn resumed_run_is_bit_identical() {
    let d = data("face");
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), d, "", "", "epochs = 3", AUG);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    train(&cfg, &a, &[]);
    train(&cfg, &b, &["--stop-after", "1"]);
    assert!(b.join("checkpoints/epoch-0001.json").exists() && !b.join("checkpoints/epoch-0002.json").exists());
    // What a kill inside a checkpoint save leaves (the safetensors writer's own temporary file).
    let partial = b.join("checkpoints/.partial");
    std::fs::create_dir_all(&partial).unwrap();
    std::fs::write(partial.join(".tmpAbC123"), b"half a tensor").unwrap();
    train(&cfg, &b, &["--resume"]);
    assert!(!partial.exists(), "the resumed run removed what the killed save left");
    assert_same_end(&a, &b, 3);
    // Resuming with other settings is refused, naming the run's config.
    let other = config(dir.path(), d, "", "", "epochs = 4", AUG);
    let out = dfer(&["train", "--config", other.to_str().unwrap(), "--run", b.to_str().unwrap(), "--resume"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("config.toml"));
}

#[test]
fn scene_stream_matters_when_only_the_scene_shows_the_label() {
    let d = data("scene");
    let dir = tempfile::tempdir().unwrap();
    let train_opts = "epochs = 10\nfinetune_image = true\nlr_image = 0.001\nlr = 0.003";
    let with = dir.path().join("with");
    let without = dir.path().join("without");
    std::fs::create_dir_all(&with).unwrap();
    std::fs::create_dir_all(&without).unwrap();
    let c1 = config(&with, d, "", "", train_opts, AUG);
    let c2 = config(&without, d, "", "use_scene = false\nuse_polarity = false", train_opts, AUG);
    train(&c1, &with.join("run"), &[]);
    train(&c2, &without.join("run"), &[]);
    let (a, b) = (eval(&with.join("run")), eval(&without.join("run")));
    assert!(
        a.metrics.war >= b.metrics.war + 30.0,
        "scene stream on: WAR {:.1}; off: {:.1} (chance ≈ 14)",
        a.metrics.war,
        b.metrics.war
    );
}

/// Held-out WAR of `method` (faces only, CLIP's tokenizer, the tiny CLIP fixture) trained with
/// `train_opts` on the face-cue and the scene-cue data; checks each run's saved method and that
/// its checkpoint holds `prefix` tensors and no OUS module.
fn face_and_scene_war(method: &str, train_opts: &str, prefix: &str) -> [f64; 2] {
    let model = clip_model(&clip_fixture(), &format!("method = \"{method}\""));
    let mut war = [0.0; 2];
    for (i, cue) in ["face", "scene"].into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config_with_model(dir.path(), data(cue), "", &model, train_opts, AUG);
        let run = dir.path().join("run");
        let out = train(&cfg, &run, &[]);
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(log.contains("tokenizer: CLIP's BPE"), "{log}");
        let saved = std::fs::read_to_string(run.join("config.toml")).unwrap();
        assert!(saved.contains(&format!("method = \"{method}\"")), "{saved}");
        let names = checkpoint_tensors(&run, read_metrics(&run.join("metrics.jsonl")).unwrap().len() as u32);
        assert!(names.iter().any(|n| n.starts_with(prefix)), "{names:?}");
        assert!(!names.iter().any(|n| n.starts_with("ous.")), "no OUS module in a {method} run: {names:?}");
        war[i] = eval(&run).metrics.war;
    }
    eprintln!("{method} held-out WAR: face cue {:.1}, scene cue {:.1}", war[0], war[1]);
    war
}

/// FineCLIPER (every CLIP weight frozen; adapters, context and fusion weights trained) learns
/// held-out clips when the face shows the label and stays near chance when only the scene does.
#[test]
fn fineclip_learns_from_faces_and_cannot_from_scenes() {
    let war = face_and_scene_war("fineclip", "epochs = 12\nlr = 0.01", "fineclip.image.");
    assert!(war[0] >= 90.0, "face cue: held-out WAR {:.1} < 90", war[0]);
    assert!(war[1] <= 40.0, "scene cue: WAR {:.1}, a face-only model should stay near chance (≈ 14)", war[1]);
}

/// FineCLIPER's optional streams on the scene-cue clips, whose faces say nothing: one text per
/// clip that says what the face shows (as a multimodal model's description would) lets the
/// held-out clips be recognised, where the video-only run stays near chance
/// (`fineclip_learns_from_faces_and_cannot_from_scenes`); the landmark stream (the detector's
/// points drawn on the crops of the real shards) trains beside it; a descriptions file without a
/// clip the fold reads is refused, naming the file and the clip.
#[test]
fn fineclip_streams_read_each_clips_description_and_landmarks() {
    let d = data("scene");
    let dir = tempfile::tempdir().unwrap();
    let truth = dfer::synth::read_truth(&d.manifest.parent().unwrap().join("dfew")).unwrap();
    let line = |c: &dfer::synth::TruthClip| {
        let text = format!("the person looks {}", c.label_name.to_lowercase());
        serde_json::json!({ "clip": c.clip_id, "description": text }).to_string()
    };
    let lines: Vec<String> = truth.iter().map(line).collect();
    let file = dir.path().join("descriptions.jsonl");
    let model =
        clip_model(&clip_fixture(), &format!("method = \"fineclip\"\nlandmarks = true\nvideo_descriptions = {file:?}"));
    let cfg = config_with_model(dir.path(), d, "", &model, "epochs = 8\nlr = 0.01", AUG);
    let run = dir.path().join("run");

    std::fs::write(&file, lines[1..].join("\n")).unwrap();
    let out = dfer_expect(&["train", "--config", cfg.to_str().unwrap(), "--run", run.to_str().unwrap()], 2);
    let err = common::stderr(&out);
    assert!(err.contains("descriptions.jsonl") && err.contains(&format!("clip {:?}", truth[0].clip_id)), "{err}");

    std::fs::write(&file, lines.join("\n")).unwrap();
    train(&cfg, &run, &[]);
    let names = checkpoint_tensors(&run, 8);
    for n in ["fineclip.streams", "fineclip.text_description.0.attn.up.weight", "fineclip.image_points.0.mlp.up.weight"]
    {
        assert!(names.iter().any(|x| x == n), "{n} missing from the checkpoint: {names:?}");
    }
    let war = eval(&run).metrics.war;
    eprintln!("fineclip with descriptions and landmarks, scene cue: held-out WAR {war:.1}");
    assert!(war >= 80.0, "held-out WAR {war:.1} < 80 with descriptions naming the expression");
}

/// DFER-CLIP (faces only, CLIP's tokenizer on the built-in DFEW descriptions) learns held-out
/// clips when the face shows the label, and stays near chance when only the scene does, where
/// OUS learns (`scene_stream_matters_when_only_the_scene_shows_the_label`).
#[test]
fn dfer_clip_learns_from_faces_and_cannot_from_scenes() {
    let train_opts = "epochs = 8\nfinetune_image = true\nlr_image = 0.001\nlr = 0.003";
    let war = face_and_scene_war("dfer-clip", train_opts, "dfer_clip.temporal.");
    assert!(war[0] >= 90.0, "face cue: held-out WAR {:.1} < 90", war[0]);
    assert!(war[1] <= 40.0, "scene cue: WAR {:.1}, a face-only model should stay near chance (≈ 14)", war[1]);
}

/// IAL's own network (`method = "ial"`: from scratch, 112 px, BatchNorm, SGD) trains through
/// the real binary, and a run stopped and resumed ends bit-identical to an uninterrupted one,
/// BatchNorm's running statistics included. (That it learns: `ial_net.rs`
/// `fits_one_batch_from_scratch`, and docs/methods.md "IAL" for held-out clips.)
#[test]
fn ial_network_trains_and_resumes_bit_identically() {
    let d = small_data();
    let dir = tempfile::tempdir().unwrap();
    let model = "method = \"ial\"\nnormalise = \"unit\"";
    let opts = "epochs = 2\noptimizer = \"sgd\"\nmomentum = 0.9\nlr = 0.001\nlr_decay = \"steps\"\nmilestones = [1]";
    let cfg = config_with_model(dir.path(), d, "", model, opts, AUG);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    train(&cfg, &a, &[]);
    train(&cfg, &b, &["--stop-after", "1"]);
    train(&cfg, &b, &["--resume"]);
    assert_same_end(&a, &b, 2);
    let names = checkpoint_tensors(&a, 2);
    for n in ["s_former.layer2.0.gc.0.weight", "s_former.layer3.0.bn2.running_var", "fc_f.weight"] {
        assert!(names.iter().any(|x| x == n), "{n} missing from the checkpoint: {names:?}");
    }
    assert!(!names.iter().any(|n| n.starts_with("clip.") || n.starts_with("ous.")), "no CLIP or OUS tensor: {names:?}");
    let lines = read_metrics(&a.join("metrics.jsonl")).unwrap();
    let parts: Vec<&str> = lines[0].losses.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(parts, ["cont", "aux2", "aux3"], "IAL's losses: CE and its GCA blocks' auxiliary CEs");
    let r = eval(&a);
    assert_eq!(r.metrics.clips, r.metrics.confusion.iter().flatten().sum::<u64>());
}

#[test]
fn feature_cache_training_agrees_with_pixels() {
    let d = data("face");
    let dir = tempfile::tempdir().unwrap();
    let (p, c) = (dir.path().join("pixels"), dir.path().join("cached"));
    std::fs::create_dir_all(&p).unwrap();
    std::fs::create_dir_all(&c).unwrap();
    // Without augmentation both paths see the same inputs; only float rounding may differ.
    let no_aug = "crop_area = [1.0, 1.0]\ncrop_aspect = [1.0, 1.0]\nflip = false\njitter = 0.0";
    let cfg_p = config(&p, d, "", "", "epochs = 4", no_aug);
    let feats = dir.path().join("features");
    dfer_expect(&["embed", "--config", cfg_p.to_str().unwrap(), "--out", feats.to_str().unwrap()], 0);
    let cached = format!("features = {feats:?}");
    let cfg_c = config(&c, d, &cached, "", "epochs = 4", no_aug);
    train(&cfg_p, &p.join("run"), &[]);
    train(&cfg_c, &c.join("run"), &[]);
    let (a, b) =
        (read_metrics(&p.join("run/metrics.jsonl")).unwrap(), read_metrics(&c.join("run/metrics.jsonl")).unwrap());
    let (wa, wb) = (a.last().unwrap().test_war, b.last().unwrap().test_war);
    assert!((wa - wb).abs() <= 5.0, "pixels WAR {wa:.1}, cache WAR {wb:.1}");
    // Features made with another image tower are refused.
    let stale = config(&c, d, &cached, "seed = 9", "epochs = 4", no_aug);
    let out = dfer(&["train", "--config", stale.to_str().unwrap(), "--run", c.join("stale").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("run dfer embed again"));
}

#[test]
fn clip_weights_train_with_clips_own_tokenizer() {
    let d = data("face");
    let dir = tempfile::tempdir().unwrap();
    let model = clip_model(&clip_fixture(), "");
    let cfg = config_with_model(dir.path(), d, "", &model, "epochs = 3\nfinetune_image = true\nlr_image = 0.001", AUG);
    let run = dir.path().join("run");
    let out = train(&cfg, &run, &[]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("tokenizer: CLIP's BPE (49408 tokens)"), "{log}");
    assert!(log.contains("loaded") && log.contains("CLIP tensors"), "{log}");
    let lines = read_metrics(&run.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.len(), 3);
    assert!(lines[2].train_loss < lines[0].train_loss, "{} → {}", lines[0].train_loss, lines[2].train_loss);
    let r = eval(&run);
    assert_eq!(r.labels.len(), 7);
    let saved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(saved.contains("arch = \"config\"") && saved.contains("tokenizer = \"auto\""), "{saved}");
}

/// Weights that cannot work are refused before the run folder exists, naming the setting.
#[test]
fn clip_settings_that_cannot_work_are_refused_before_anything_is_written() {
    let d = data("face");
    let dir = tempfile::tempdir().unwrap();
    let fixture = clip_fixture();
    let config_json = std::fs::read_to_string(fixture.join("config.json")).unwrap();

    // Weights with two tensors missing and one of the wrong shape.
    let broken = dir.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("config.json"), &config_json).unwrap();
    let cpu = candle_core::Device::Cpu;
    let mut t = candle_core::safetensors::load(fixture.join("model.safetensors"), &cpu).unwrap();
    t.remove("text_projection.weight").unwrap();
    t.remove("vision_model.post_layernorm.bias").unwrap();
    t.insert(
        "visual_projection.weight".into(),
        candle_core::Tensor::zeros((3, 3), candle_core::DType::F32, &cpu).unwrap(),
    );
    candle_core::safetensors::save(&t, broken.join("model.safetensors")).unwrap();

    // A config.json with a text context longer than CLIP's.
    let long = dir.path().join("long");
    std::fs::create_dir_all(&long).unwrap();
    std::fs::copy(fixture.join("model.safetensors"), long.join("model.safetensors")).unwrap();
    let mut c: serde_json::Value = serde_json::from_str(&config_json).unwrap();
    c["text_config"]["max_position_embeddings"] = 100.into();
    std::fs::write(long.join("config.json"), c.to_string()).unwrap();

    let cases = [
        ("words tokenizer", clip_model(&fixture, "tokenizer = \"words\""), vec!["model.tokenizer = \"words\"", "auto"]),
        (
            "vocabulary too big",
            "arch = \"tiny\"\nheads = 4\nn_ctx = 4\ntokenizer = \"clip\"".into(),
            vec!["49408 tokens", "64"],
        ),
        (
            "tensors",
            clip_model(&broken, ""),
            vec!["3 of the model's", "text_projection.weight is missing", "visual_projection.weight is [3, 3]"],
        ),
        ("context", clip_model(&long, ""), vec!["max_position_embeddings is 100", "77"]),
        (
            "prompt",
            clip_model(&fixture, "").replace("n_ctx = 4", "n_ctx = 80"),
            vec!["model.n_ctx = 80", "lower model.n_ctx"],
        ),
        (
            "arch",
            clip_model(&fixture, "").replace("arch = \"config\"", "arch = \"vit-b16\""),
            vec!["model.arch = \"config\""],
        ),
    ];
    for (what, model, needles) in cases {
        let case = dir.path().join(what.replace(' ', "-"));
        std::fs::create_dir_all(&case).unwrap();
        let cfg = config_with_model(&case, d, "", &model, "epochs = 1", AUG);
        let run = case.join("run");
        let out = dfer(&["train", "--config", cfg.to_str().unwrap(), "--run", run.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        for n in needles {
            assert!(err.contains(n), "{what}: {n:?} not in {err}");
        }
        assert!(!run.exists(), "{what}: the run folder was created");
    }
}

/// Names of the tensors in a checkpoint's weights file.
fn checkpoint_tensors(run: &Path, epoch: u32) -> Vec<String> {
    let path = run.join(format!("checkpoints/epoch-{epoch:04}.safetensors"));
    let mut names: Vec<String> =
        candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap().into_keys().collect();
    names.sort();
    names
}

/// A checkpoint holds what was trained: with the image tower frozen, no CLIP tensor (the towers
/// are rebuilt from model.clip_weights, identified by their hash in the epoch record); fine-tuned,
/// the image tower too. Evaluating against CLIP weights that changed since is refused.
#[test]
fn checkpoints_hold_trained_parameters_and_name_the_frozen_towers() {
    let d = data("face");
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("clip");
    std::fs::create_dir(&weights).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(clip_fixture().join(f), weights.join(f)).unwrap();
    }
    let frozen_cfg = config_with_model(dir.path(), d, "", &clip_model(&weights, ""), "epochs = 1", AUG);
    let frozen = dir.path().join("frozen");
    train(&frozen_cfg, &frozen, &[]);
    let names = checkpoint_tensors(&frozen, 1);
    assert!(
        names.iter().any(|n| n.starts_with("ous.")) && names.iter().any(|n| n.starts_with("prompt_learner.")),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.starts_with("clip.")), "frozen towers copied into the checkpoint: {names:?}");
    let record = std::fs::read_to_string(frozen.join("checkpoints/epoch-0001.json")).unwrap();
    assert!(record.contains("\"towers_hash\""), "{record}");
    let before = eval(&frozen);

    let tuned_cfg =
        config_with_model(dir.path(), d, "", &clip_model(&weights, ""), "epochs = 1\nfinetune_image = true", AUG);
    let tuned = dir.path().join("tuned");
    train(&tuned_cfg, &tuned, &[]);
    let names = checkpoint_tensors(&tuned, 1);
    assert!(names.iter().any(|n| n.starts_with("clip.vision_model.")), "fine-tuned tower not saved: {names:?}");
    assert!(!names.iter().any(|n| n.starts_with("clip.text_model.")), "frozen text tower saved: {names:?}");

    // The same weights evaluate the same; changed weights are refused, naming the record.
    assert_eq!(eval(&frozen).metrics, before.metrics);
    let file = weights.join("model.safetensors");
    let mut t = candle_core::safetensors::load(&file, &candle_core::Device::Cpu).unwrap();
    let (name, first) = t.iter().next().map(|(n, v)| (n.clone(), v.clone())).unwrap();
    t.insert(name, (first + 1.0).unwrap());
    candle_core::safetensors::save(&t, &file).unwrap();
    let out = dfer(&["eval", "--run", frozen.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("epoch-0001.json") && err.contains("other CLIP towers"), "{err}");
}
