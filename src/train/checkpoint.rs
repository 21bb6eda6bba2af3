//! Checkpoints of a run (`runs/<name>/checkpoints/`): per epoch `epoch-NNNN.safetensors`
//! (weights), `epoch-NNNN.optim.safetensors` (the optimiser's state: AdamW's moments or SGD's momentum) and `epoch-NNNN.json` (epoch, step,
//! test metrics, data and config hashes, SHA-256 of both files). The JSON is written last, so a
//! checkpoint without it is incomplete and never used; `best.json` names the best epoch (test
//! WAR, then UAR). Only the latest and the best epoch are kept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::run_dir::beats;
use crate::atomic::write_atomic;
use crate::error::UsageError;
use crate::model::runner::Runner;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct EpochState {
    pub epoch: u32,
    pub step: u64,
    pub test_uar: f64,
    pub test_war: f64,
    pub data_hash: String,
    pub config_hash: String,
    /// File name → SHA-256 of the checkpoint's files.
    pub files: BTreeMap<String, String>,
    /// [`Runner::towers_hash`] of the CLIP towers the run was built on: the weights file holds
    /// only the trained parameters, so loading it needs the same frozen towers. Empty in
    /// checkpoints written before (which hold every parameter).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub towers_hash: String,
}

pub(crate) struct Checkpoints {
    dir: PathBuf,
}

/// Which checkpoint of a run: the best epoch, the last complete one, or epoch N. Written
/// `best`, `last` or `N` (on the command line and in a pipeline's `[eval]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointChoice {
    Best,
    Last,
    Epoch(u32),
}

impl std::str::FromStr for CheckpointChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "best" => Ok(CheckpointChoice::Best),
            "last" => Ok(CheckpointChoice::Last),
            n => n
                .parse()
                .map(CheckpointChoice::Epoch)
                .map_err(|_| format!("{n:?}: expected best, last or an epoch number")),
        }
    }
}

impl std::fmt::Display for CheckpointChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckpointChoice::Best => f.write_str("best"),
            CheckpointChoice::Last => f.write_str("last"),
            CheckpointChoice::Epoch(n) => write!(f, "{n}"),
        }
    }
}

impl<'de> Deserialize<'de> for CheckpointChoice {
    /// `"best"`, `"last"`, `"N"` or the integer `N`.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Epoch(u32),
            Text(String),
        }
        match Written::deserialize(d)? {
            Written::Epoch(n) => Ok(CheckpointChoice::Epoch(n)),
            Written::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

fn stem(epoch: u32) -> String {
    format!("epoch-{epoch:04}")
}

fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(crate::digest::sha256_hex(&bytes))
}

impl Checkpoints {
    pub(crate) fn new(run: &Path) -> Self {
        Self { dir: run.join("checkpoints") }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn weights_path(&self, epoch: u32) -> PathBuf {
        self.dir.join(format!("{}.safetensors", stem(epoch)))
    }

    fn optim_path(&self, epoch: u32) -> PathBuf {
        self.dir.join(format!("{}.optim.safetensors", stem(epoch)))
    }

    fn json_path(&self, epoch: u32) -> PathBuf {
        self.dir.join(format!("{}.json", stem(epoch)))
    }

    /// Where weight and optimiser files are written before they are renamed into place. The
    /// safetensors writer makes temporary files of its own beside its target, so a kill while it
    /// writes leaves them here, never among the checkpoints; a starting or resuming run removes
    /// the folder ([`Self::remove_partial`]).
    fn partial_dir(&self) -> PathBuf {
        self.dir.join(".partial")
    }

    /// Removes what a killed save left.
    pub(crate) fn remove_partial(&self) -> Result<()> {
        let p = self.partial_dir();
        match std::fs::remove_dir_all(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("{}: cannot remove", p.display()))
            }
            _ => Ok(()),
        }
    }

    /// Saves epoch `state.epoch`, updates `best.json` and removes epochs that are neither.
    pub(crate) fn save(&self, mut state: EpochState, runner: &Runner) -> Result<()> {
        let (w, o) = (self.weights_path(state.epoch), self.optim_path(state.epoch));
        let partial = self.partial_dir();
        std::fs::create_dir_all(&partial).with_context(|| format!("{}: cannot create", partial.display()))?;
        let inside = |p: &Path| partial.join(p.file_name().expect("file name"));
        let (wt, ot) = (inside(&w), inside(&o));
        if let Err(e) = runner.save(&wt, &ot) {
            self.remove_partial()?;
            return Err(e);
        }
        for (tmp, fin) in [(&wt, &w), (&ot, &o)] {
            let name = fin.file_name().expect("file name").to_string_lossy().into_owned();
            state.files.insert(name, sha256_file(tmp)?);
            std::fs::rename(tmp, fin).with_context(|| format!("{}: cannot rename into place", fin.display()))?;
        }
        self.remove_partial()?;
        write_atomic(&self.json_path(state.epoch), serde_json::to_string_pretty(&state)?.as_bytes())?;
        self.update_best(&state)
    }

    fn update_best(&self, state: &EpochState) -> Result<()> {
        let best = self.best()?;
        let better = best.as_ref().is_none_or(|b| beats(state.test_war, b.test_war) || b.epoch == state.epoch);
        let best = if better { state.clone() } else { best.expect("checked") };
        if better {
            write_atomic(&self.dir.join("best.json"), serde_json::to_string_pretty(state)?.as_bytes())?;
        }
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let Some(epoch) = name.strip_prefix("epoch-").and_then(|r| r.get(..4)).and_then(|d| d.parse::<u32>().ok())
            else {
                continue;
            };
            if epoch != state.epoch && epoch != best.epoch {
                std::fs::remove_file(&path).with_context(|| format!("{}: cannot remove", path.display()))?;
            }
        }
        Ok(())
    }

    fn read_state(path: &Path) -> Result<EpochState> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| UsageError::new(format!("{}: not a checkpoint record: {e}", path.display())).into())
    }

    /// The best epoch so far, if any.
    pub(crate) fn best(&self) -> Result<Option<EpochState>> {
        let p = self.dir.join("best.json");
        if p.exists() {
            Self::read_state(&p).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The latest complete checkpoint (its files present and matching their hashes). Read-only:
    /// evaluation and inspection use it too; resuming training then calls [`Self::settle`].
    pub(crate) fn latest(&self) -> Result<Option<EpochState>> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Ok(None) };
        let mut epochs: Vec<u32> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_prefix("epoch-")?.strip_suffix(".json")?.parse().ok()
            })
            .collect();
        epochs.sort_unstable();
        let Some(&epoch) = epochs.last() else { return Ok(None) };
        let state = Self::read_state(&self.json_path(epoch))?;
        self.verify(&state)?;
        Ok(Some(state))
    }

    /// Before training resumes from `latest`: a crash between the epoch record and best.json
    /// leaves best behind (and older epochs undeleted); bring both up to date.
    pub(crate) fn settle(&self, latest: &EpochState) -> Result<()> {
        self.update_best(latest)
    }

    /// The record of `epoch` (`epoch-NNNN.json`).
    pub(crate) fn record(&self, epoch: u32) -> Result<EpochState> {
        let path = self.json_path(epoch);
        if !path.exists() {
            bail!(UsageError::new(format!("{}: no such checkpoint", path.display())));
        }
        Self::read_state(&path)
    }

    /// Checks that the checkpoint's record is readable and agrees with `state` (which may come
    /// from best.json), and that its files exist and match the hashes in it.
    pub(crate) fn verify(&self, state: &EpochState) -> Result<()> {
        if self.record(state.epoch)?.files != state.files {
            bail!(UsageError::new(format!(
                "{}: names other files than {}",
                self.json_path(state.epoch).display(),
                self.dir.join("best.json").display()
            )));
        }
        for (name, hash) in &state.files {
            let path = self.dir.join(name);
            if !path.exists() {
                bail!(UsageError::new(format!("{}: missing (named by epoch {})", path.display(), state.epoch)));
            }
            if &sha256_file(&path)? != hash {
                bail!(UsageError::new(format!(
                    "{}: content differs from the hash in {}",
                    path.display(),
                    self.json_path(state.epoch).display()
                )));
            }
        }
        Ok(())
    }

    /// Loads the weights of `state` into `runner`, whose frozen towers must be the ones the run
    /// was trained on.
    pub(crate) fn load_weights(&self, state: &EpochState, runner: &mut Runner) -> Result<()> {
        if !state.towers_hash.is_empty() && state.towers_hash != runner.towers_hash()? {
            bail!(UsageError::new(format!(
                "{}: trained on other CLIP towers than the config's model.clip_weights now gives (hash {} there, {} here)",
                self.json_path(state.epoch).display(),
                state.towers_hash,
                runner.towers_hash()?
            )));
        }
        runner.load_weights(&self.weights_path(state.epoch))
    }

    /// Loads weights and optimiser state of `state` into `runner`.
    pub(crate) fn restore(&self, state: &EpochState, runner: &mut Runner) -> Result<()> {
        self.load_weights(state, runner)?;
        runner.load_optimizer(&self.optim_path(state.epoch), state.step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_choice_reads_names_numbers_and_integers() {
        for (text, choice) in
            [("best", CheckpointChoice::Best), ("last", CheckpointChoice::Last), ("7", CheckpointChoice::Epoch(7))]
        {
            assert_eq!(text.parse::<CheckpointChoice>(), Ok(choice));
            assert_eq!(choice.to_string(), text);
        }
        assert_eq!(
            "latest".parse::<CheckpointChoice>().unwrap_err(),
            "\"latest\": expected best, last or an epoch number"
        );
        #[derive(Deserialize)]
        struct Eval {
            checkpoint: CheckpointChoice,
        }
        let read = |s: &str| toml::from_str::<Eval>(s).map(|e| e.checkpoint);
        assert_eq!(read("checkpoint = 3").unwrap(), CheckpointChoice::Epoch(3));
        assert_eq!(read("checkpoint = \"last\"").unwrap(), CheckpointChoice::Last);
        assert!(read("checkpoint = \"x\"").unwrap_err().to_string().contains("expected best, last or an epoch number"));
    }
}
