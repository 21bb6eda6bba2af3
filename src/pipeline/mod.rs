//! Pipelines: `dfer run PIPELINE.toml` chains synth → manifest → prep → embed → train → eval
//! → report. Each stage's stamp records the key it ran with; the plan skips stages whose key
//! and outputs are unchanged, re-runs a stage whose settings, inputs or dfer version changed
//! (and, through the keys, everything downstream), and continues an interrupted stage.

pub mod spec;
pub(crate) mod stamp;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::atomic::read_if_exists;
use crate::train::run_dir::RunDir;

pub(crate) use spec::{Pipeline, Stage, StageKind};
use stamp::{Phase, StageOutcome, Stamp, State};

/// How `dfer run` was asked to treat the stamps.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Selection {
    /// Run this stage and everything after it, whatever the stamps say.
    pub from: Option<StageKind>,
    /// Run only this stage (every fold of it), whatever its stamp says; its inputs must be done.
    pub only: Option<StageKind>,
}

/// What the plan does with one stage, and why.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Step {
    pub stage: String,
    #[serde(skip)]
    pub key: String,
    #[serde(skip)]
    pub inputs: BTreeMap<String, String>,
    #[serde(skip)]
    pub state: State,
    /// done, missing, interrupted, stale, output missing
    #[serde(rename = "state")]
    pub state_label: &'static str,
    pub run: bool,
    /// Remove the stage's outputs before it runs (otherwise it continues from them).
    pub fresh: bool,
    pub reason: String,
    pub command: String,
    /// When the stage last started (Unix seconds) and how long its finished run took.
    pub started: Option<u64>,
    pub seconds: Option<f64>,
}

/// Quotes an argument for a POSIX shell when it needs it.
fn shell_word(a: &str) -> String {
    if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=,:+@%".contains(c)) {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

pub(crate) fn command_line(argv: &[String]) -> String {
    std::iter::once("dfer".to_string()).chain(argv.iter().map(|a| shell_word(a))).collect::<Vec<_>>().join(" ")
}

/// Decides for every stage whether it runs, from its stamp and the selection.
pub(crate) fn plan(p: &Pipeline, sel: Selection) -> Result<Vec<Step>> {
    for kind in [sel.from, sel.only].into_iter().flatten() {
        if !p.has(kind) {
            return Err(
                crate::error::UsageError::new(format!("{}: has no {} stage", p.file.display(), kind.as_str())).into()
            );
        }
    }
    let mut steps: Vec<Step> = Vec::new();
    for s in &p.stages {
        let inputs: BTreeMap<String, String> =
            s.inputs.iter().map(|&j| (p.stages[j].id.clone(), steps[j].key.clone())).collect();
        let key = stamp::key(s, &inputs);
        let stamp = Stamp::read(&p.stamp_path(s));
        let state = match &stamp {
            Ok(Some(st)) => st.state(s, &key, &inputs),
            Ok(None) => State::Missing,
            Err(e) => State::Stale(format!("{e:#}")),
        };
        let upstream = s.inputs.iter().find(|&&j| steps[j].run).map(|&j| p.stages[j].id.clone());
        let (run, fresh, reason) = if let Some(only) = sel.only {
            if s.kind == only {
                if let Some(&j) = s.inputs.iter().find(|&&j| !matches!(steps[j].state, State::Done(_))) {
                    return Err(crate::error::UsageError::new(format!(
                        "--only {}: its input {} is not done ({}); run without --only first",
                        only.as_str(),
                        p.stages[j].id,
                        steps[j].state.describe()
                    ))
                    .into());
                }
                (true, true, format!("asked for (--only {})", only.as_str()))
            } else {
                (false, false, format!("not asked for (--only {})", only.as_str()))
            }
        } else if sel.from.is_some_and(|f| s.kind >= f) {
            (true, true, format!("asked for (--from {})", sel.from.expect("checked").as_str()))
        } else {
            match (&state, upstream) {
                (State::Done(_), Some(u)) => (true, true, format!("input {u} runs again")),
                (State::Done(_), None) => (false, false, state.describe()),
                (State::Interrupted, _) => (true, s.kind == StageKind::Synth, state.describe()),
                // Without a stamp nothing is removed: outputs made outside the pipeline (shards
                // from cluster workers) are continued, or refused by the stage if they differ.
                (State::OutputMissing(_) | State::Missing, _) => (true, false, state.describe()),
                (State::Stale(_), _) => (true, true, state.describe()),
            }
        };
        let recorded = stamp.ok().flatten();
        steps.push(Step {
            stage: s.id.clone(),
            key,
            inputs,
            state_label: state.label(),
            state,
            run,
            fresh,
            reason,
            command: command_line(&s.argv),
            started: recorded.as_ref().map(|r| r.started),
            seconds: recorded.and_then(|r| r.seconds),
        });
    }
    Ok(steps)
}

/// The plan as text: one line per stage (run or skip, and why) with the command it runs.
pub(crate) fn render_plan(p: &Pipeline, steps: &[Step]) -> String {
    let mut s = format!("pipeline {} ({}) → {}\n", p.name, p.file.display(), p.out.display());
    for st in steps {
        let action = if st.run { "run " } else { "skip" };
        s += &format!("  {action}  {:<12} {}\n", st.stage, st.reason);
        if st.run {
            s += &format!("        $ {}\n", st.command);
        }
    }
    s
}

/// Each stage's state for `dfer inspect PIPELINE.toml`.
pub(crate) fn render_states(p: &Pipeline, steps: &[Step]) -> String {
    let mut s = format!("pipeline {} ({}) → {}, dfer {}\n", p.name, p.file.display(), p.out.display(), stamp::VERSION);
    let now = stamp::now();
    for st in steps {
        let when = match (&st.state, st.started, st.seconds) {
            (State::Done(_), Some(t), Some(secs)) => {
                format!("  (finished {} ago, took {})", duration(now.saturating_sub(t) as f64 - secs), duration(secs))
            }
            _ => String::new(),
        };
        let detail = match &st.state {
            State::Done(_) => st.reason.clone(),
            other => format!("{}: {}", other.label(), other.describe()),
        };
        s += &format!("  {:<12} {detail}{when}\n", st.stage);
    }
    s
}

fn duration(secs: f64) -> String {
    let secs = secs.max(0.0);
    match secs {
        s if s < 90.0 => format!("{s:.1} s"),
        s if s < 5400.0 => format!("{:.0} min", s / 60.0),
        s if s < 172_800.0 => format!("{:.1} h", s / 3600.0),
        s => format!("{:.1} days", s / 86400.0),
    }
}

fn remove(path: &Path) -> Result<()> {
    let r = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
    match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("{}: cannot remove before re-running", path.display()))
        }
        _ => Ok(()),
    }
}

/// `OUT/stamps/STAGE.lock` while a `dfer run` runs that stage; removed when it ends. Runs on one
/// folder keep apart stage by stage, so workers that each run other stages (one fold each, on a
/// cluster) share the folder, and a second run reaching a stage that is running is refused. A
/// lock whose process is gone (killed) is taken over.
struct Lock(std::path::PathBuf);

impl Lock {
    fn take(path: &Path, stage: &str) -> Result<Lock> {
        use std::io::Write;
        loop {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut f) => {
                    write!(f, "{}", std::process::id()).with_context(|| format!("{}: cannot write", path.display()))?;
                    return Ok(Lock(path.to_path_buf()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let pid = read_if_exists(path)?.unwrap_or_default();
                    let pid = pid.trim();
                    if !pid.is_empty() && Path::new("/proc").join(pid).exists() {
                        return Err(crate::error::UsageError::new(format!(
                            "{}: another dfer run (process {pid}) is running stage {stage} in this output folder",
                            path.display()
                        ))
                        .into());
                    }
                    std::fs::remove_file(path)
                        .with_context(|| format!("{}: cannot remove stale lock", path.display()))?;
                }
                Err(e) => return Err(e).with_context(|| format!("{}: cannot create", path.display())),
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The outcome of stage `s` when another run finished it, with the same key, after this run
/// planned it as not done.
fn done_meanwhile(s: &Stage, step: &Step, stamp_path: &Path) -> Option<StageOutcome> {
    if matches!(step.state, State::Done(_)) {
        return None;
    }
    match Stamp::read(stamp_path).ok()??.state(s, &step.key, &step.inputs) {
        State::Done(o) => Some(o),
        _ => None,
    }
}

/// Runs stage `s` with `argv` between a started and a done stamp at `stamp_path`, removing its
/// outputs first when the plan says so.
fn run_stage(
    p: &Pipeline,
    s: &Stage,
    step: &Step,
    argv: &[String],
    stamp_path: &Path,
    exec: &dyn Fn(&[String]) -> Result<crate::error::Outcome>,
) -> Result<StageOutcome> {
    let mut stamp = Stamp {
        stage: s.id.clone(),
        key: step.key.clone(),
        version: stamp::VERSION.into(),
        settings: s.settings.clone(),
        inputs: step.inputs.clone(),
        command: command_line(argv),
        phase: Phase::Started,
        outcome: None,
        started: stamp::now(),
        seconds: None,
    };
    stamp.write(stamp_path)?;
    if step.fresh {
        for o in &s.outputs {
            remove(o)?;
        }
    }
    let t0 = Instant::now();
    let outcome = exec(argv).with_context(|| {
        format!(
            "{}: stage {} failed (the stages before it are kept; `dfer run` again continues from here)",
            p.file.display(),
            s.id
        )
    })?;
    let outcome = match outcome {
        crate::error::Outcome::Ok => StageOutcome::Ok,
        crate::error::Outcome::SomeFailed => StageOutcome::SomeFailed,
    };
    stamp.phase = Phase::Done;
    stamp.outcome = Some(outcome);
    stamp.seconds = Some(t0.elapsed().as_secs_f64());
    stamp.write(stamp_path)?;
    Ok(outcome)
}

/// Runs the planned stages in order through `exec` (which runs one `dfer` command line) and
/// stamps them. A stage that fails stops the pipeline; finished stages keep their stamps.
/// Returns the worst outcome over all stages, skipped ones included.
pub(crate) fn execute(
    p: &Pipeline,
    steps: &[Step],
    exec: &dyn Fn(&[String]) -> Result<crate::error::Outcome>,
) -> Result<StageOutcome> {
    for dir in [p.out.join("stamps"), p.out.join("pipeline")] {
        std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    for (path, text) in &p.files {
        if read_if_exists(path)?.as_deref() != Some(text.as_str()) {
            crate::atomic::write_atomic(path, text.as_bytes())?;
        }
    }
    let mut worst = StageOutcome::Ok;
    let total = steps.iter().filter(|s| s.run).count();
    let mut n = 0;
    for (s, step) in p.stages.iter().zip(steps) {
        if !step.run {
            println!("skip {}: {}", s.id, step.reason);
            if let State::Done(StageOutcome::SomeFailed) = step.state {
                worst = StageOutcome::SomeFailed;
            }
            continue;
        }
        n += 1;
        let mut argv = s.argv.clone();
        if let Some(run) = &s.resumable_run {
            if !step.fresh && RunDir::new(run).config().exists() {
                argv.push("--resume".into());
            }
        }
        println!("==> [{n}/{total}] {}: {}\n    $ {}", s.id, step.reason, command_line(&argv));
        let path = p.stamp_path(s);
        let _lock = Lock::take(&path.with_extension("lock"), &s.id)?;
        if let Some(o) = done_meanwhile(s, step, &path) {
            println!("    done meanwhile by another dfer run on this folder: skipped");
            if o == StageOutcome::SomeFailed {
                worst = o;
            }
            continue;
        }
        let outcome = run_stage(p, s, step, &argv, &path, exec)?;
        if outcome == StageOutcome::SomeFailed {
            worst = outcome;
        }
    }
    Ok(worst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        let argv: Vec<String> = ["prep", "--out", "a b/c", "it's", "x=1,2"].iter().map(|s| s.to_string()).collect();
        assert_eq!(command_line(&argv), r"dfer prep --out 'a b/c' 'it'\''s' x=1,2");
    }
}
