//! What a `dfer prep` output folder is meant to hold, claimed before any work: its resolved
//! config (`prep_config.toml`) and plan (`prep_plan.json`), so reruns never mix settings;
//! which shards this worker owns and still has to write; and the attributes of each shard.

use anyhow::{Context, Result};
use serde::Serialize;

use super::config::PrepConfig;
use super::out_dir::{config_record, shard_files, PrepDir};
use crate::atomic::{read_if_exists, remove_unfinished, write_atomic};
use crate::error::UsageError;
use crate::face::centerface;
use crate::manifest::Manifest;
use crate::shard::{shard_name, ShardAttrs};

/// Checks or records the resolved config of an output folder, so reruns never mix settings.
pub(super) fn claim_output(out: &PrepDir, cfg: &PrepConfig, hash: &str) -> Result<()> {
    std::fs::create_dir_all(out.shards()).with_context(|| format!("{}: cannot create", out.path().display()))?;
    let path = out.config_record();
    let text = config_record(hash, &cfg.to_toml());
    match read_if_exists(&path)? {
        Some(existing) if existing == text => Ok(()),
        Some(existing) => {
            let old = existing.lines().next().unwrap_or("").to_string();
            Err(UsageError::new(format!(
                "{}: this output was prepared with other settings ({old}); use a new --out or the same config",
                path.display()
            ))
            .into())
        }
        None => write_atomic(&path, text.as_bytes()),
    }
}

/// What an output folder is meant to hold (`prep_plan.json`): `dfer verify` checks against it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub(crate) struct Plan {
    pub manifest_rows: usize,
    pub clips_per_shard: usize,
    pub shards: usize,
}

impl Plan {
    /// Manifest rows `[start, end)` of shard `k`.
    pub(crate) fn range(&self, k: usize) -> (usize, usize) {
        (k * self.clips_per_shard, ((k + 1) * self.clips_per_shard).min(self.manifest_rows))
    }
}

fn claim_plan(out: &PrepDir, plan: &Plan) -> Result<()> {
    let path = out.plan();
    match read_if_exists(&path)? {
        Some(text) => {
            let old: Plan = serde_json::from_str(&text).with_context(|| format!("{}: unreadable", path.display()))?;
            if &old != plan {
                return Err(UsageError::new(format!(
                    "{}: this output was prepared from a manifest of {} rows, not {}; use a new --out",
                    path.display(),
                    old.manifest_rows,
                    plan.manifest_rows
                ))
                .into());
            }
            Ok(())
        }
        None => write_atomic(&path, serde_json::to_string_pretty(plan)?.as_bytes()),
    }
}

/// This worker's part of the plan.
pub(super) struct Work {
    pub plan: Plan,
    /// The shards this worker owns (every `num_shards`-th).
    pub owned: Vec<usize>,
    /// Owned shards not complete yet; their unfinished files are removed.
    pub todo: Vec<usize>,
    /// (shard, manifest row) of every clip to process, in shard then manifest order.
    pub jobs: Vec<(usize, usize)>,
}

impl Work {
    /// Claims the plan of `out` and lists the owned shards still to write.
    pub(crate) fn claim(out: &PrepDir, plan: Plan, shard_index: usize, num_shards: usize) -> Result<Work> {
        claim_plan(out, &plan)?;
        let dir = out.shards();
        let owned: Vec<usize> = (0..plan.shards).filter(|k| k % num_shards == shard_index).collect();
        let mut todo = Vec::new();
        for &k in &owned {
            let (h5, pq) = shard_files(&dir, k);
            if h5.exists() && pq.exists() {
                continue;
            }
            remove_unfinished(&dir, |name| name == shard_name(k) || name == format!("{k:05}.parquet"))?;
            todo.push(k);
        }
        let skipped = owned.len() - todo.len();
        if skipped > 0 {
            tracing::info!("{skipped} of {} shards already complete: skipped", owned.len());
        }
        let jobs = todo
            .iter()
            .flat_map(|&k| {
                let (start, end) = plan.range(k);
                (start..end).map(move |r| (k, r))
            })
            .collect();
        Ok(Work { plan, owned, todo, jobs })
    }

    pub(crate) fn skipped(&self) -> usize {
        self.owned.len() - self.todo.len()
    }
}

/// The `sampling` attribute: which frames a clip stores (see `sampling::stored_frames`).
pub(crate) const SAMPLING: &str =
    "every frame up to store_frames, else the test frames and an even pool per training segment";

/// The attributes every shard of this output shares; [`shard_attrs`] adds a shard's own.
pub(super) fn common_attrs(
    manifest: &Manifest,
    cfg: &PrepConfig,
    detector_hash: &str,
    config_hash: &str,
) -> ShardAttrs {
    ShardAttrs {
        dataset: manifest.desc.name.clone(),
        label_names: manifest.desc.labels.clone(),
        label_polarity: (0..manifest.desc.labels.len())
            .map(|i| manifest.desc.polarity_of(i).as_str().to_string())
            .collect(),
        frames: cfg.frames,
        store_frames: cfg.store_frames,
        face_size: cfg.face_size,
        scene_size: cfg.scene_size,
        face_crops: cfg.face_crops,
        sampling: SAMPLING.into(),
        detector: centerface::NAME.into(),
        detector_hash: detector_hash.to_string(),
        mask_mode: cfg.mask_mode,
        mask_scale: cfg.mask_scale,
        margin: cfg.margin,
        scene_fit: cfg.scene_fit,
        config_hash: config_hash.to_string(),
        config_toml: cfg.to_toml(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        shard_index: 0,
        manifest_rows: [0, 0],
        pixels: cfg.pixel_format(),
    }
}

/// Shard `k`'s attributes: the common ones with its index and manifest rows.
pub(super) fn shard_attrs(common: &ShardAttrs, plan: &Plan, k: usize) -> ShardAttrs {
    let (start, end) = plan.range(k);
    ShardAttrs { shard_index: k, manifest_rows: [start, end], ..common.clone() }
}
