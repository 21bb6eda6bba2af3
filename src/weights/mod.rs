//! Where CLIP weights come from (`model.clip_weights`): a local `model.safetensors`, a folder
//! holding it (Hugging Face's `save_pretrained` layout, with `config.json` and `tokenizer.json`
//! beside it), or a Hugging Face Hub repository `hf:owner/name[@revision]`, fetched into Hugging
//! Face's own cache by `hub.rs`. Knows nothing of the model: it only finds files.

pub(crate) mod hub;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::UsageError;

/// File names of a Hugging Face CLIP checkpoint.
pub(crate) const WEIGHTS_FILE: &str = "model.safetensors";
pub(crate) const CONFIG_FILE: &str = "config.json";
pub(crate) const TOKENIZER_FILE: &str = "tokenizer.json";

/// `model.clip_weights`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum WeightsSource {
    /// `hf:owner/name[@revision]` (revision defaults to `main`).
    Hub { repo: String, revision: String },
    /// A `.safetensors` file or a folder holding `model.safetensors`.
    Local(PathBuf),
}

impl WeightsSource {
    pub(crate) fn as_str(&self) -> String {
        match self {
            WeightsSource::Hub { repo, revision } if revision == "main" => format!("hf:{repo}"),
            WeightsSource::Hub { repo, revision } => format!("hf:{repo}@{revision}"),
            WeightsSource::Local(p) => p.to_string_lossy().into_owned(),
        }
    }

    /// Makes a relative local path relative to `base` instead of the working folder.
    pub(crate) fn resolve_against(&mut self, base: &Path) {
        if let WeightsSource::Local(p) = self {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }
}

impl FromStr for WeightsSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let Some(spec) = s.strip_prefix("hf:") else {
            if s.is_empty() {
                return Err("model.clip_weights is empty (a path, or hf:owner/name)".into());
            }
            return Ok(WeightsSource::Local(PathBuf::from(s)));
        };
        let (repo, revision) = spec.split_once('@').unwrap_or((spec, "main"));
        let part_ok = |p: &str| {
            !p.starts_with('.') && !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        match repo.split_once('/') {
            Some((owner, name)) if part_ok(owner) && part_ok(name) && !revision.is_empty() => {
                Ok(WeightsSource::Hub { repo: repo.to_string(), revision: revision.to_string() })
            }
            _ => Err(format!("{s:?} is not a Hugging Face repository: write hf:owner/name or hf:owner/name@revision")),
        }
    }
}

impl TryFrom<String> for WeightsSource {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<WeightsSource> for String {
    fn from(w: WeightsSource) -> String {
        w.as_str()
    }
}

impl fmt::Display for WeightsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

/// The files of a CLIP checkpoint on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClipFiles {
    pub weights: PathBuf,
    /// Hugging Face `config.json` (tower sizes), when the checkpoint has one.
    pub config: Option<PathBuf>,
    /// The checkpoint's own `tokenizer.json`, when it has one.
    pub tokenizer: Option<PathBuf>,
}

/// Finds (and for hub sources fetches or takes from the cache) the checkpoint's files.
pub(crate) fn resolve(source: &WeightsSource) -> anyhow::Result<ClipFiles> {
    match source {
        WeightsSource::Hub { repo, revision } => hub::fetch_clip(repo, revision),
        WeightsSource::Local(p) => Ok(local(p)?),
    }
}

fn local(path: &Path) -> Result<ClipFiles, UsageError> {
    let (weights, folder) = if path.is_dir() {
        (path.join(WEIGHTS_FILE), path)
    } else {
        (path.to_path_buf(), path.parent().unwrap_or(Path::new(".")))
    };
    if !weights.is_file() {
        return Err(UsageError::new(format!(
            "model.clip_weights: {} does not exist (give a model.safetensors, a folder holding one, or hf:owner/name)",
            weights.display()
        )));
    }
    let beside = |name: &str| Some(folder.join(name)).filter(|p| p.is_file());
    Ok(ClipFiles { weights, config: beside(CONFIG_FILE), tokenizer: beside(TOKENIZER_FILE) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_and_print_back() {
        for s in ["hf:openai/clip-vit-base-patch16", "hf:org/m.v2@abc123", "weights/model.safetensors", "w"] {
            assert_eq!(s.parse::<WeightsSource>().unwrap().as_str(), s);
        }
        assert_eq!(
            "hf:openai/clip-vit-base-patch16".parse::<WeightsSource>().unwrap(),
            WeightsSource::Hub { repo: "openai/clip-vit-base-patch16".into(), revision: "main".into() }
        );
        for bad in ["hf:", "hf:noslash", "hf:a/b/c", "hf:a/b@", "hf:../x", ""] {
            assert!(bad.parse::<WeightsSource>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_folder_gives_its_files_and_a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(WEIGHTS_FILE), b"x").unwrap();
        std::fs::write(dir.path().join(TOKENIZER_FILE), b"{}").unwrap();
        let f = local(dir.path()).unwrap();
        assert_eq!(f.weights, dir.path().join(WEIGHTS_FILE));
        assert_eq!(f.tokenizer, Some(dir.path().join(TOKENIZER_FILE)));
        assert_eq!(f.config, None);
        assert_eq!(local(&dir.path().join(WEIGHTS_FILE)).unwrap(), f, "the file finds its neighbours");
        let e = local(&dir.path().join("nope.safetensors")).unwrap_err().to_string();
        assert!(e.contains("nope.safetensors") && e.contains("clip_weights"), "{e}");
    }
}
