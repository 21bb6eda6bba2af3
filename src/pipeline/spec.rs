//! The pipeline file (`pipelines/NAME.toml`) and `--set` overrides, turned into stages: each
//! with its resolved settings, the exact `dfer` command it runs, its input stages and outputs.
//!
//! Sections: `[pipeline]` (name, out), `[synth]` (optional: `dfer synth` flags), `[dataset]`
//! (name, root, source), `[prep]` (prep.toml keys, plus `threads` and `export_frames`),
//! `[embed]` (optional: views), `[train]` (schedule keys, `folds`, and `[train.model]`,
//! `[train.loss]`, `[train.aug]`), `[eval]` (checkpoint). Relative paths are taken from the
//! folder `dfer run` is started in.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use toml::Table;

use crate::dataset::DatasetDesc;
use crate::error::UsageError;
use crate::model::tokenizer::TokenizerChoice;
use crate::prep::config::PrepConfig;
use crate::prep::out_dir::PrepDir;
use crate::text_enum::text_enum;
use crate::train::checkpoint::CheckpointChoice;
use crate::train::config::TrainConfig;
use crate::train::run_dir::RunDir;
use crate::weights::WeightsSource;

text_enum! {
    /// The sections of a pipeline file.
    enum Section("pipeline section") {
        Pipeline = "pipeline",
        Synth = "synth",
        Dataset = "dataset",
        Prep = "prep",
        Embed = "embed",
        Train = "train",
        Eval = "eval",
    }
}

text_enum! {
    /// Stage kinds in pipeline order; `--from` and `--only` name them.
    #[derive(clap::ValueEnum)]
    pub enum StageKind("stage") {
        Synth = "synth",
        Manifest = "manifest",
        Prep = "prep",
        Embed = "embed",
        Train = "train",
        Eval = "eval",
        Report = "report",
    }
}

impl StageKind {
    /// The pipeline section whose keys make this stage's settings (for messages).
    pub(crate) fn section(self) -> &'static str {
        match self {
            StageKind::Manifest => "dataset",
            k => k.as_str(),
        }
    }
}

/// One step of a pipeline: a `dfer` subcommand with fixed arguments.
#[derive(Debug, Clone)]
pub struct Stage {
    pub kind: StageKind,
    /// `prep`, `train-fold3`, …: names the stamp file.
    pub id: String,
    /// The subcommand and its arguments (without `dfer`).
    pub argv: Vec<String>,
    /// Everything that decides the stage's outputs, as written in its stamp.
    pub settings: Value,
    /// Indices of the stages whose outputs it reads.
    pub inputs: Vec<usize>,
    /// A file that exists once the stage has finished.
    pub marker: PathBuf,
    /// Files and folders removed before the stage starts afresh.
    pub outputs: Vec<PathBuf>,
    /// A training run folder that `--resume` continues after an interruption.
    pub resumable_run: Option<PathBuf>,
}

/// A pipeline file read with its overrides.
#[derive(Debug)]
pub struct Pipeline {
    pub file: PathBuf,
    pub name: String,
    /// Folder of every output (as given, relative to the working folder).
    pub out: PathBuf,
    pub stages: Vec<Stage>,
    /// Config files the stages read, written under `out/pipeline/` before a run.
    pub files: Vec<(PathBuf, String)>,
}

fn bad(file: &Path, msg: impl std::fmt::Display) -> anyhow::Error {
    UsageError::new(format!("{}: {msg}", file.display())).into()
}

impl Pipeline {
    /// Reads `file`, applies `--set KEY=VALUE` overrides and builds the stages.
    pub(crate) fn load(file: &Path, sets: &[String]) -> Result<Pipeline> {
        let text = std::fs::read_to_string(file).map_err(|e| bad(file, format!("cannot read pipeline: {e}")))?;
        Self::parse(file, &text, sets, &std::env::current_dir()?)
    }

    /// Builds the pipeline from `text` (the contents of `file`), relative paths taken from `cwd`.
    pub fn parse(file: &Path, text: &str, sets: &[String], cwd: &Path) -> Result<Pipeline> {
        let mut doc: Table = toml::from_str(text).map_err(|e| bad(file, format!("not a valid pipeline file: {e}")))?;
        for s in sets {
            apply_set(&mut doc, s)?;
        }
        build(file, cwd, doc)
    }

    pub(crate) fn stamp_path(&self, stage: &Stage) -> PathBuf {
        self.out.join("stamps").join(format!("{}.json", stage.id))
    }

    pub(crate) fn has(&self, kind: StageKind) -> bool {
        self.stages.iter().any(|s| s.kind == kind)
    }

    /// The training run folders, in fold order.
    pub(crate) fn runs(&self) -> Vec<PathBuf> {
        self.stages.iter().filter_map(|s| s.resumable_run.clone()).collect()
    }
}

/// `--set train.epochs=12`: the value is read as TOML (number, bool, array, quoted string),
/// else taken as a plain string (`--set dataset.root=/data/DFEW`).
fn apply_set(doc: &mut Table, set: &str) -> Result<()> {
    let fail = |m: &str| -> anyhow::Error { UsageError::new(format!("--set {set}: {m}")).into() };
    let (key, raw) =
        set.split_once('=').ok_or_else(|| fail("expected KEY=VALUE, e.g. --set dataset.root=/data/DFEW"))?;
    let parts: Vec<&str> = key.trim().split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(fail("the key has an empty part"));
    }
    let raw = raw.trim();
    let value = toml::from_str::<Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let (last, path) = parts.split_last().expect("split gives at least one part");
    let mut table = doc;
    for p in path {
        let entry = table.entry(p.to_string()).or_insert_with(|| toml::Value::Table(Table::new()));
        table = entry.as_table_mut().ok_or_else(|| fail(&format!("'{p}' is a value, not a section")))?;
    }
    table.insert(last.to_string(), value);
    Ok(())
}

/// Reads and removes a typed key of a section.
fn take<T: DeserializeOwned>(file: &Path, t: &mut Table, section: &str, key: &str) -> Result<Option<T>> {
    match t.remove(key) {
        None => Ok(None),
        Some(v) => v.try_into().map(Some).map_err(|e| bad(file, format!("{section}.{key}: {}", e.message()))),
    }
}

fn take_section(file: &Path, doc: &mut Table, name: &str) -> Result<Option<Table>> {
    match doc.remove(name) {
        None => Ok(None),
        Some(toml::Value::Table(t)) => Ok(Some(t)),
        Some(_) => Err(bad(file, format!("[{name}] must be a section"))),
    }
}

fn no_more(file: &Path, t: &Table, section: &str) -> Result<()> {
    match t.keys().next() {
        Some(k) => Err(bad(file, format!("unknown key {section}.{k}"))),
        None => Ok(()),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Value> {
    Ok(serde_json::to_value(v)?)
}

/// A section's keys as command-line flags: `edge_cases = true` → `--edge-cases`,
/// `fps = [24, 30]` → `--fps 24,30`.
fn flags(file: &Path, section: &str, t: &Table) -> Result<Vec<String>> {
    let scalar = |k: &str, v: &toml::Value| -> Result<String> {
        match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Float(f) => Ok(f.to_string()),
            _ => Err(bad(file, format!("{section}.{k}: expected a string, number, bool or list of them"))),
        }
    };
    let mut out = Vec::new();
    for (k, v) in t {
        let flag = format!("--{}", k.replace('_', "-"));
        match v {
            toml::Value::Boolean(true) => out.push(flag),
            toml::Value::Boolean(false) => {}
            toml::Value::Array(items) => {
                let parts: Vec<String> = items.iter().map(|i| scalar(k, i)).collect::<Result<_>>()?;
                out.extend([flag, parts.join(",")]);
            }
            v => out.extend([flag, scalar(k, v)?]),
        }
    }
    Ok(out)
}

fn path_arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Makes a path given relative to the working folder absolute (for settings and configs
/// that live elsewhere).
fn absolute(cwd: &Path, p: &str) -> String {
    path_arg(&cwd.join(p))
}

/// The pipeline as its sections are read: where outputs go, and the stages and config files
/// so far.
struct Builder<'a> {
    file: &'a Path,
    cwd: &'a Path,
    name: String,
    out: PathBuf,
    /// `OUT/pipeline`: the config files the stages read.
    conf_dir: PathBuf,
    stages: Vec<Stage>,
    files: Vec<(PathBuf, String)>,
}

/// `[dataset]`'s keys, with the description its name loads.
struct DatasetSection {
    name: String,
    root: Option<String>,
    source: Option<String>,
    desc: DatasetDesc,
}

/// The training config written for the train stages, checked.
struct TrainSetup {
    toml: PathBuf,
    cfg: TrainConfig,
}

fn build(file: &Path, cwd: &Path, mut doc: Table) -> Result<Pipeline> {
    if let Some(k) = doc.keys().find(|k| k.parse::<Section>().is_err()) {
        let all: Vec<&str> = Section::ALL.iter().map(|s| s.as_str()).collect();
        return Err(bad(file, format!("unknown section [{k}]; sections are [{}]", all.join("], ["))));
    }
    let effective = toml::to_string(&doc)?;
    let mut b = Builder::new(file, cwd, &mut doc)?;
    b.files.push((b.conf_dir.join("pipeline.toml"), effective));
    let synth = take_section(file, &mut doc, "synth")?;
    let ds = dataset_section(file, &mut doc)?;
    let root = b.dataset_root(synth.as_ref(), &ds)?;
    let manifest_stage = b.manifest(&ds, &root)?;
    let Some(prep) = take_section(file, &mut doc, "prep")? else {
        for later in ["embed", "train", "eval"] {
            if doc.contains_key(later) {
                return Err(bad(file, format!("[{later}] needs [prep]: training reads prep's shards")));
            }
        }
        return Ok(b.finish());
    };
    let prep_stage = b.prep(prep, manifest_stage)?;
    let embed = take_section(file, &mut doc, "embed")?;
    let eval = take_section(file, &mut doc, "eval")?;
    let Some(mut train) = take_section(file, &mut doc, "train")? else {
        if embed.is_some() || eval.is_some() {
            return Err(bad(file, "[embed] and [eval] need [train]"));
        }
        return Ok(b.finish());
    };
    let folds = train_folds(file, &ds.desc, take(file, &mut train, "train", "folds")?)?;
    let setup = b.train_config(train, embed.is_some())?;
    let mut train_inputs = vec![prep_stage];
    if let Some(e) = embed {
        train_inputs.push(b.embed(e, &setup, prep_stage)?);
    }
    let checkpoint = eval_checkpoint(file, eval.unwrap_or_default())?;
    let evals = b.train_and_eval(&setup, &folds, &train_inputs, checkpoint)?;
    b.report(evals);
    Ok(b.finish())
}

/// Reads and checks `[dataset]`, which every pipeline has.
fn dataset_section(file: &Path, doc: &mut Table) -> Result<DatasetSection> {
    let mut ds = take_section(file, doc, "dataset")?
        .ok_or_else(|| bad(file, "[dataset] is missing: name = \"dfew\" and root = \"/path/to/DFEW\""))?;
    let name: String = take(file, &mut ds, "dataset", "name")?
        .ok_or_else(|| bad(file, "dataset.name is not set: dfew, ferv39k, mafw or a description TOML file"))?;
    let root: Option<String> = take(file, &mut ds, "dataset", "root")?;
    let source: Option<String> = take(file, &mut ds, "dataset", "source")?;
    no_more(file, &ds, "dataset")?;
    let desc = DatasetDesc::load(&name).map_err(|e| bad(file, format!("dataset.name: {e}")))?;
    Ok(DatasetSection { name, root, source, desc })
}

/// The folds to train: all of the dataset's, or those `train.folds` names; one run without
/// folds for a dataset with a single train/test split.
fn train_folds(file: &Path, desc: &DatasetDesc, folds: Option<Vec<u32>>) -> Result<Vec<Option<u32>>> {
    match (desc.splits.as_ref().and_then(|s| s.folds), folds) {
        (None, None) => Ok(vec![None]),
        (None, Some(_)) => Err(bad(file, format!("train.folds: {} has one train/test split, not folds", desc.name))),
        (Some(n), None) => Ok((1..=n).map(Some).collect()),
        (Some(n), Some(f)) => {
            if f.is_empty() || f.iter().any(|k| *k == 0 || *k > n) {
                return Err(bad(file, format!("train.folds: {} has folds 1 to {n}", desc.name)));
            }
            Ok(f.into_iter().map(Some).collect())
        }
    }
}

/// `[train.model]`, with local weight and tokenizer files made absolute (stage configs live
/// elsewhere); hub sources and named tokenizers stay as they are.
fn train_model(file: &Path, cwd: &Path, train: &mut Table) -> Result<Table> {
    let mut model = match train.remove("model") {
        Some(toml::Value::Table(t)) => t,
        None => Table::new(),
        Some(_) => return Err(bad(file, "train.model must be a section")),
    };
    for key in ["clip_weights", "tokenizer"] {
        if let Some(toml::Value::String(p)) = model.get(key) {
            let local = match key {
                "clip_weights" => matches!(p.parse::<WeightsSource>(), Ok(WeightsSource::Local(_))),
                _ => matches!(p.parse::<TokenizerChoice>(), Ok(TokenizerChoice::File(_))),
            };
            if local {
                let abs = absolute(cwd, p);
                if !Path::new(&abs).exists() {
                    return Err(bad(file, format!("train.model.{key} {p}: no such file or folder")));
                }
                model.insert(key.into(), toml::Value::String(abs));
            }
        }
    }
    Ok(model)
}

/// `[eval]`: which checkpoint each run is evaluated with.
fn eval_checkpoint(file: &Path, mut eval: Table) -> Result<CheckpointChoice> {
    let checkpoint = take(file, &mut eval, "eval", "checkpoint")?.unwrap_or(CheckpointChoice::Best);
    no_more(file, &eval, "eval")?;
    Ok(checkpoint)
}

impl<'a> Builder<'a> {
    /// Reads `[pipeline]`: the name and the output folder.
    fn new(file: &'a Path, cwd: &'a Path, doc: &mut Table) -> Result<Builder<'a>> {
        let mut pl = take_section(file, doc, "pipeline")?.unwrap_or_default();
        let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let name = take::<String>(file, &mut pl, "pipeline", "name")?.unwrap_or(stem);
        let out: PathBuf = take::<String>(file, &mut pl, "pipeline", "out")?
            .ok_or_else(|| bad(file, "pipeline.out is not set: the folder for every output, e.g. out = \"out/demo\""))?
            .into();
        no_more(file, &pl, "pipeline")?;
        let conf_dir = out.join("pipeline");
        Ok(Builder { file, cwd, name, out, conf_dir, stages: Vec::new(), files: Vec::new() })
    }

    fn finish(self) -> Pipeline {
        Pipeline {
            file: self.file.to_path_buf(),
            name: self.name,
            out: self.out,
            stages: self.stages,
            files: self.files,
        }
    }

    /// Adds a stage; returns its index.
    fn push(&mut self, stage: Stage) -> usize {
        self.stages.push(stage);
        self.stages.len() - 1
    }

    /// The dataset folder: written by the synth stage (added here) under `[synth]`, else
    /// `dataset.root`, which must exist.
    fn dataset_root(&mut self, synth: Option<&Table>, ds: &DatasetSection) -> Result<PathBuf> {
        let file = self.file;
        match (synth, &ds.root) {
            (Some(_), Some(_)) => {
                Err(bad(file, "dataset.root cannot be set with [synth]: synth writes the dataset into OUT/dataset"))
            }
            (Some(t), None) => self.synth(t),
            (None, Some(r)) if r.is_empty() => Err(bad(file, "dataset.root is empty")),
            (None, Some(r)) => {
                let root = PathBuf::from(r);
                if !self.cwd.join(&root).is_dir() {
                    return Err(bad(file, format!("dataset.root {}: no such folder", root.display())));
                }
                Ok(root)
            }
            (None, None) => Err(bad(
                file,
                format!("dataset.root is not set; give it with --set dataset.root=/path/to/{}", ds.desc.name),
            )),
        }
    }

    /// `dfer synth` with `[synth]`'s keys as flags; returns the dataset folder it writes.
    fn synth(&mut self, t: &Table) -> Result<PathBuf> {
        let root = self.out.join("dataset");
        let mut argv = vec!["synth".to_string(), "--out".into(), path_arg(&root)];
        argv.extend(flags(self.file, "synth", t)?);
        self.push(Stage {
            kind: StageKind::Synth,
            id: "synth".into(),
            argv,
            settings: to_json(t)?,
            inputs: vec![],
            marker: root.join("synth_truth.jsonl"),
            outputs: vec![root.clone()],
            resumable_run: None,
        });
        Ok(root)
    }

    /// `dfer manifest` of the dataset folder; returns the stage's index.
    fn manifest(&mut self, ds: &DatasetSection, root: &Path) -> Result<usize> {
        let manifest = self.out.join("clips.parquet");
        let mut argv =
            vec!["manifest".to_string(), "--dataset".into(), ds.name.clone(), "--root".into(), path_arg(root)];
        argv.extend(["-o".into(), path_arg(&manifest)]);
        let mut settings = json!({ "name": ds.name, "root": absolute(self.cwd, &path_arg(root)), "source": ds.source });
        if let Some(s) = &ds.source {
            argv.extend(["--source".into(), s.clone()]);
        }
        if Path::new(&ds.name).is_file() {
            let bytes =
                std::fs::read(&ds.name).map_err(|e| bad(self.file, format!("dataset.name {}: {e}", ds.name)))?;
            settings["description_sha256"] = json!(crate::digest::sha256_hex(bytes));
        }
        Ok(self.push(Stage {
            kind: StageKind::Manifest,
            id: "manifest".into(),
            argv,
            settings,
            inputs: self.stages.iter().position(|s| s.kind == StageKind::Synth).into_iter().collect(),
            marker: manifest.clone(),
            outputs: vec![manifest],
            resumable_run: None,
        }))
    }

    /// `dfer prep` with `[prep]` written as `OUT/pipeline/prep.toml`; returns the stage's index.
    fn prep(&mut self, mut prep: Table, manifest_stage: usize) -> Result<usize> {
        let file = self.file;
        let threads: Option<usize> = take(file, &mut prep, "prep", "threads")?;
        let export: bool = take(file, &mut prep, "prep", "export_frames")?.unwrap_or(false);
        let prep_cfg: PrepConfig = toml::Value::Table(prep)
            .try_into()
            .map_err(|e: toml::de::Error| bad(file, format!("[prep]: {}", e.message())))?;
        prep_cfg.validate().map_err(|m| bad(file, format!("[prep]: {m}")))?;
        let prep_toml = self.conf_dir.join("prep.toml");
        self.files.push((prep_toml.clone(), toml::to_string(&prep_cfg)?));
        let prep_out = self.out.join("prep");
        let frames = self.out.join("frames");
        let manifest = &self.stages[manifest_stage].marker;
        let mut argv =
            vec!["prep".to_string(), "--manifest".into(), path_arg(manifest), "--out".into(), path_arg(&prep_out)];
        argv.extend(["--config".into(), path_arg(&prep_toml)]);
        if let Some(n) = threads {
            argv.extend(["--threads".into(), n.to_string()]);
        }
        if export {
            argv.extend(["--export-frames".into(), path_arg(&frames)]);
        }
        let mut settings = to_json(&prep_cfg)?;
        settings["export_frames"] = json!(export);
        Ok(self.push(Stage {
            kind: StageKind::Prep,
            id: "prep".into(),
            argv,
            settings,
            inputs: vec![manifest_stage],
            marker: PrepDir::new(&prep_out).table(),
            outputs: vec![prep_out, frames],
            resumable_run: None,
        }))
    }

    /// `[train]` (with `[train.model]`, `[train.loss]`, `[train.aug]`) and the data the
    /// earlier stages write, as `OUT/pipeline/train.toml`, checked.
    fn train_config(&mut self, mut train: Table, embed: bool) -> Result<TrainSetup> {
        let model = train_model(self.file, self.cwd, &mut train)?;
        let mut data = Table::new();
        data.insert("manifest".into(), "../clips.parquet".into());
        data.insert("shards".into(), "../prep/shards".into());
        if embed {
            data.insert("features".into(), "../features".into());
        }
        let mut config = Table::new();
        config.insert("data".into(), data.into());
        config.insert("model".into(), model.into());
        for sub in ["loss", "aug"] {
            if let Some(v) = train.remove(sub) {
                config.insert(sub.into(), v);
            }
        }
        config.insert("train".into(), train.into());
        let train_text = toml::to_string(&config)?;
        let train_toml = self.conf_dir.join("train.toml");
        let cfg = TrainConfig::from_toml(&train_text, &self.cwd.join(&self.conf_dir), &self.file.join("[train]"))
            .map_err(|e| bad(self.file, format!("[train]: {e:#}")))?;
        self.files.push((train_toml.clone(), train_text));
        Ok(TrainSetup { toml: train_toml, cfg })
    }

    /// `dfer embed` (the frozen image tower's feature cache); returns the stage's index.
    fn embed(&mut self, mut e: Table, setup: &TrainSetup, prep_stage: usize) -> Result<usize> {
        let file = self.file;
        let views: usize = take(file, &mut e, "embed", "views")?.unwrap_or(0);
        no_more(file, &e, "embed")?;
        if setup.cfg.train.finetune_image {
            return Err(bad(file, "[embed] caches the frozen image tower; it needs train.finetune_image = false"));
        }
        let features = self.out.join("features");
        let argv = vec![
            "embed".to_string(),
            "--config".into(),
            path_arg(&setup.toml),
            "--out".into(),
            path_arg(&features),
            "--views".into(),
            views.to_string(),
        ];
        let cfg = &setup.cfg;
        Ok(self.push(Stage {
            kind: StageKind::Embed,
            id: "embed".into(),
            argv,
            settings: json!({ "views": views, "model": to_json(&cfg.model)?, "device": cfg.train.device }),
            inputs: vec![prep_stage],
            marker: features.join(crate::train::cache::FILE_NAME),
            outputs: vec![features],
            resumable_run: None,
        }))
    }

    /// A train stage and its eval stage for every fold; returns the eval stages' indices.
    fn train_and_eval(
        &mut self,
        setup: &TrainSetup,
        folds: &[Option<u32>],
        inputs: &[usize],
        checkpoint: CheckpointChoice,
    ) -> Result<Vec<usize>> {
        let cfg = &setup.cfg;
        let mut settings = to_json(&cfg.train)?;
        for (k, v) in [("model", to_json(&cfg.model)?), ("loss", to_json(&cfg.loss)?), ("aug", to_json(&cfg.aug)?)] {
            settings[k] = v;
        }
        let mut evals = Vec::new();
        for &fold in folds {
            let (suffix, run) = match fold {
                Some(k) => (format!("-fold{k}"), self.out.join("runs").join(format!("fold{k}"))),
                None => (String::new(), self.out.join("runs").join("main")),
            };
            let train_stage = self.train(&setup.toml, &settings, fold, &suffix, &run, inputs);
            evals.push(self.eval(&suffix, &run, checkpoint, train_stage));
        }
        Ok(evals)
    }

    /// `dfer train` of one fold into `run`; returns the stage's index.
    fn train(
        &mut self,
        train_toml: &Path,
        settings: &Value,
        fold: Option<u32>,
        suffix: &str,
        run: &Path,
        inputs: &[usize],
    ) -> usize {
        let mut argv =
            vec!["train".to_string(), "--config".into(), path_arg(train_toml), "--run".into(), path_arg(run)];
        let mut settings = settings.clone();
        if let Some(k) = fold {
            argv.extend(["--fold".into(), k.to_string()]);
            settings["fold"] = json!(k);
        }
        self.push(Stage {
            kind: StageKind::Train,
            id: format!("train{suffix}"),
            argv,
            settings,
            inputs: inputs.to_vec(),
            marker: RunDir::new(run).metrics(),
            outputs: vec![run.to_path_buf()],
            resumable_run: Some(run.to_path_buf()),
        })
    }

    /// `dfer eval` of the run `train_stage` writes; returns the stage's index.
    fn eval(&mut self, suffix: &str, run: &Path, checkpoint: CheckpointChoice, train_stage: usize) -> usize {
        let dir = RunDir::new(run);
        self.push(Stage {
            kind: StageKind::Eval,
            id: format!("eval{suffix}"),
            argv: vec!["eval".into(), "--run".into(), path_arg(run), "--checkpoint".into(), checkpoint.to_string()],
            settings: json!({ "checkpoint": checkpoint.to_string() }),
            inputs: vec![train_stage],
            marker: dir.report(),
            outputs: dir.eval_outputs(),
            resumable_run: None,
        })
    }

    /// `dfer report` over every evaluated run: `report.json` and its bar plot `report.png`.
    fn report(&mut self, evals: Vec<usize>) {
        let report = self.out.join("report.json");
        let plot = self.out.join("report.png");
        let mut argv = vec!["report".to_string()];
        argv.extend(evals.iter().map(|&i| path_arg(self.stages[i].marker.parent().expect("run folder"))));
        argv.extend(["--output".into(), path_arg(&report), "--plot".into(), path_arg(&plot)]);
        self.push(Stage {
            kind: StageKind::Report,
            id: "report".into(),
            argv,
            settings: json!({}),
            inputs: evals,
            marker: report.clone(),
            outputs: vec![report, plot],
            resumable_run: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, sets: &[&str]) -> Result<Pipeline> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.toml");
        std::fs::write(&file, text).unwrap();
        let mut doc: Table = toml::from_str(text).unwrap();
        for s in sets {
            apply_set(&mut doc, s)?;
        }
        build(&file, dir.path(), doc)
    }

    const DEMO: &str = "[pipeline]\nout = \"o\"\n[synth]\nlayout = \"dfew\"\nclips = 14\nedge_cases = true\n\
        fps = [25, 30]\n[dataset]\nname = \"dfew\"\n[prep]\nframes = 8\nstore_frames = 8\n\
        [train]\nfolds = [1, 3]\nepochs = 2\n[train.model]\narch = \"tiny\"\n";

    #[test]
    fn stages_commands_and_fold_fan_out() {
        let p = load(DEMO, &[]).unwrap();
        let ids: Vec<&str> = p.stages.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            ["synth", "manifest", "prep", "train-fold1", "eval-fold1", "train-fold3", "eval-fold3", "report"]
        );
        assert_eq!(
            p.stages[0].argv.join(" "),
            "synth --out o/dataset --clips 14 --edge-cases --fps 25,30 --layout dfew"
        );
        assert_eq!(p.stages[3].argv.join(" "), "train --config o/pipeline/train.toml --run o/runs/fold1 --fold 1");
        assert_eq!(
            p.stages[7].argv.join(" "),
            "report o/runs/fold1 o/runs/fold3 --output o/report.json --plot o/report.png"
        );
        assert_eq!(p.stages[7].inputs, vec![4, 6]);
        assert_eq!(p.stages[3].settings["epochs"], json!(2));
        assert_eq!(p.stages[3].settings["fold"], json!(1));
        assert_eq!(p.stages[2].settings["frames"], json!(8));
    }

    #[test]
    fn set_overrides_values_and_sections() {
        let p =
            load(DEMO, &["train.epochs=5", "train.folds=[2]", "synth.layout=dfew", "eval.checkpoint=last"]).unwrap();
        assert_eq!(p.stages[3].settings["epochs"], json!(5));
        assert_eq!(p.stages[3].id, "train-fold2");
        assert_eq!(p.stages[4].argv.last().unwrap(), "last");
        let e = load(DEMO, &["train.epochs"]).unwrap_err().to_string();
        assert!(e.contains("expected KEY=VALUE"), "{e}");
        let e = load(DEMO, &["train.epochs.x=1"]).unwrap_err().to_string();
        assert!(e.contains("'epochs' is a value"), "{e}");
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("[pipelin]\n", "unknown section [pipelin]"),
            ("[dataset]\nname = \"dfew\"\n", "pipeline.out is not set"),
            ("[pipeline]\nout = \"o\"\n[dataset]\nname = \"dfew\"\n", "dataset.root is not set"),
            ("[pipeline]\nout = \"o\"\n[dataset]\nname = \"nope\"\nroot = \".\"\n", "unknown dataset 'nope'"),
            ("[pipeline]\nout = \"o\"\n[dataset]\nname = \"dfew\"\nroot = \"/no/such\"\n", "no such folder"),
            ("[pipeline]\nout = \"o\"\nfoo = 1\n", "unknown key pipeline.foo"),
        ];
        for (text, want) in cases {
            let e = load(text, &[]).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("p.toml"), "{text:?}: {e}");
        }
        let e = load(DEMO, &["prep.frame=3"]).unwrap_err().to_string();
        assert!(e.contains("[prep]") && e.contains("frame"), "{e}");
        let e = load(DEMO, &["train.folds=[6]"]).unwrap_err().to_string();
        assert!(e.contains("folds 1 to 5"), "{e}");
        let e = load(DEMO, &["train.epochs=0"]).unwrap_err().to_string();
        assert!(e.contains("epochs"), "{e}");
        let e = load(DEMO, &["embed.views=2", "train.finetune_image=true"]).unwrap_err().to_string();
        assert!(e.contains("finetune_image = false"), "{e}");
    }
}
