//! Hugging Face Hub downloads through the `hf-hub` crate, into Hugging Face's own cache layout
//! (`$HF_HOME/hub/models--owner--name/{blobs,snapshots,refs}`, default `~/.cache/huggingface`),
//! so files are shared with Python users. `HF_ENDPOINT` names another server (a mirror, or the
//! tests' local one), `HF_TOKEN` (or the cache's `token` file) authenticates, and a file already
//! in the cache is used without any network; `HF_HUB_OFFLINE=1` forbids the network altogether.
//!
//! `hf-hub` names each blob after the hub's etag, which is the file's sha256 for large (LFS)
//! files and its git blob sha1 for small ones, but checks neither, nor the size. Every file we
//! hand out, downloaded now or found in the cache, is checked against its blob name; a file that
//! fails is removed from the cache so that the next run downloads it again.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::{ClipFiles, CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE};
use crate::error::UsageError;

/// Fetches (or finds in the cache) a CLIP checkpoint: `model.safetensors` and `config.json` are
/// required, `tokenizer.json` is taken when the repository has one.
pub(crate) fn fetch_clip(repo: &str, revision: &str) -> Result<ClipFiles> {
    let need = |file: &str| -> Result<PathBuf> {
        fetch(repo, revision, file)?.ok_or_else(|| {
            UsageError::new(format!(
                "hf:{repo}@{revision} has no {file}: is it a CLIP checkpoint in the Hugging Face layout?"
            ))
            .into()
        })
    };
    let weights = need(WEIGHTS_FILE)?;
    let config = Some(need(CONFIG_FILE)?);
    let tokenizer = fetch(repo, revision, TOKENIZER_FILE)?;
    Ok(ClipFiles { weights, config, tokenizer })
}

/// One file of a model repository: `None` when the repository has no such file.
pub(crate) fn fetch(repo: &str, revision: &str, file: &str) -> Result<Option<PathBuf>> {
    let cache = Cache::from_env();
    let id = Repo::with_revision(repo.to_string(), RepoType::Model, revision.to_string());
    if let Some(path) = cache.repo(id.clone()).get(file) {
        verify(&path, repo, file)?;
        return Ok(Some(path));
    }
    if std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0") {
        bail!(UsageError::new(format!(
            "hf:{repo}@{revision}: {file} is not in the Hugging Face cache {} and HF_HUB_OFFLINE is set",
            cache.path().display()
        )));
    }
    let token = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty()).or_else(|| cache.token());
    let mut builder = ApiBuilder::from_cache(cache).with_progress(false).with_token(token);
    if let Some(endpoint) = std::env::var("HF_ENDPOINT").ok().filter(|e| !e.is_empty()) {
        builder = builder.with_endpoint(endpoint.trim_end_matches('/').to_string());
    }
    let api = builder.build().context("starting the Hugging Face client")?;
    tracing::info!("fetching {file} of hf:{repo}@{revision}");
    let path = match api.repo(id).download(file) {
        Ok(p) => p,
        Err(ApiError::RequestError(e)) if matches!(*e, ureq::Error::Status(404, _)) => return Ok(None),
        Err(e) => return Err(explain(e, repo, revision, file)),
    };
    verify(&path, repo, file)?;
    Ok(Some(path))
}

fn explain(e: ApiError, repo: &str, revision: &str, file: &str) -> anyhow::Error {
    let hint = match &e {
        ApiError::RequestError(r) if matches!(**r, ureq::Error::Status(401 | 403, _)) => {
            " (the repository needs access: set HF_TOKEN or run `huggingface-cli login`)"
        }
        ApiError::RequestError(r) if matches!(**r, ureq::Error::Transport(_)) => {
            " (no connection: check the network or HF_ENDPOINT, or copy the files into the cache)"
        }
        _ => "",
    };
    anyhow::anyhow!("downloading {file} of hf:{repo}@{revision}: {e}{hint}")
}

/// Checks a cached file against the hub's checksum in its blob name; removes it when it differs.
fn verify(pointer: &Path, repo: &str, file: &str) -> Result<()> {
    let blob = std::fs::canonicalize(pointer).with_context(|| format!("{}: cannot resolve", pointer.display()))?;
    let expected = blob.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_ascii_lowercase();
    let (algorithm, actual) = match expected.len() {
        64 => ("sha256", hash_file::<Sha256>(&blob, None)?),
        40 => ("git blob sha1", hash_file::<Sha1>(&blob, Some(std::fs::metadata(&blob)?.len()))?),
        _ => bail!(
            "{}: blob name {expected:?} is no checksum, so {file} of hf:{repo} cannot be verified",
            blob.display()
        ),
    };
    if actual == expected {
        return Ok(());
    }
    let _ = std::fs::remove_file(pointer);
    let _ = std::fs::remove_file(&blob);
    bail!(
        "{file} of hf:{repo}: its {algorithm} is {actual}, the hub says {expected} (truncated or corrupt download); \
         removed it from the cache, run again to download it anew"
    )
}

/// Hex digest of a file; `git_len` prefixes git's blob header (`blob <len>\0`).
fn hash_file<D: Digest>(path: &Path, git_len: Option<u64>) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut h = D::new();
    if let Some(n) = git_len {
        h.update(format!("blob {n}\0").as_bytes());
    }
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).with_context(|| format!("{}: cannot read", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(crate::digest::hex(&h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_blob_sha1_matches_git() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello\n").unwrap();
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(hash_file::<Sha1>(&p, Some(6)).unwrap(), "ce013625030ba8dba906f756967f9e9ca394464a");
        assert_eq!(
            hash_file::<Sha256>(&p, None).unwrap(),
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        );
    }
}
