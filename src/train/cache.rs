//! The feature cache: with the image tower frozen, `dfer embed` runs it once over every clip of
//! the shards (view 0 = test transform, views 1..=K = augmented) and stores the features; training
//! from the cache then runs only the light modules. Each epoch picks one augmented view per clip
//! from (seed, epoch, clip).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::config::TrainConfig;
use super::data::{clip_key, pixel_batch, Batch, ClipRef, InputShape, Payload, ShardSet, View};
use crate::error::UsageError;
use crate::logging::Progress;
use crate::manifest::Manifest;
use crate::model::config::Normalise;
use crate::model::runner::{HostFeatures, Runner};
use crate::shard::features::{FeatureAttrs, FeatureReader, FeatureRow, FeatureWriter};

pub(crate) const FILE_NAME: &str = "features.h5";

/// What the cached features depend on: the image tower's arch, weights and options. The
/// weights' files are the ones `runner` was built from, streamed into the hash.
pub(crate) fn model_hash(cfg: &TrainConfig, runner: &Runner) -> Result<String> {
    let m = &cfg.model;
    let mut h = Sha256::new();
    h.update(format!("{}|{}|{}|{}", m.arch.as_str(), m.polarity_blocks, m.use_scene, m.use_polarity));
    if m.normalise != Normalise::Clip {
        h.update(format!("|normalise={}", m.normalise));
    }
    runner.hash_towers(&mut h)?;
    Ok(crate::digest::hex(&h.finalize()))
}

pub(crate) struct FeatureCache {
    reader: FeatureReader,
    row_of: HashMap<usize, usize>,
    dims: (usize, usize, usize),
}

impl FeatureCache {
    /// Opens `dir/features.h5`, checking it was made from these shards with this image tower.
    pub(crate) fn open(dir: &Path, shards: &ShardSet, runner: &Runner, cfg: &TrainConfig) -> Result<FeatureCache> {
        if cfg.train.finetune_image {
            bail!(UsageError::new("data.features cannot be used with train.finetune_image (the tower changes)"));
        }
        let path = dir.join(FILE_NAME);
        let reader = FeatureReader::open(&path)?;
        let a = &reader.attrs;
        let stale =
            |what: &str| UsageError::new(format!("{}: made from other {what}; run dfer embed again", path.display()));
        if a.data_hash != shards.data_hash() {
            bail!(stale("shards"));
        }
        if a.model_hash != model_hash(cfg, runner)? {
            bail!(stale("image-tower settings or weights"));
        }
        let row_of = reader.manifest_rows.iter().enumerate().map(|(i, &r)| (r as usize, i)).collect();
        Ok(FeatureCache { reader, row_of, dims: runner.feature_dims() })
    }

    fn view_index(&self, view: &View, clip: &ClipRef) -> usize {
        let k = self.reader.attrs.views - 1;
        match view {
            View::Test => 0,
            View::Train { .. } if k == 0 => 0,
            View::Train { seed, epoch, .. } => {
                let key = clip_key(*seed, *epoch, clip);
                1 + (key.wrapping_mul(0xD6E8_FEB8_6659_FD93) >> 33) as usize % k
            }
        }
    }

    pub(crate) fn batch(&self, clips: &[ClipRef], chunk: &[usize], view: &View) -> Result<Batch> {
        let (e, p, w) = self.dims;
        let t = self.reader.attrs.frames;
        let mut f = HostFeatures { batch: chunk.len(), ..Default::default() };
        for &i in chunk {
            let c = &clips[i];
            let row = *self
                .row_of
                .get(&c.manifest_row)
                .with_context(|| format!("{}: has no features for clip {}", self.reader.path.display(), c.clip_id))?;
            let r = self.reader.read(row, self.view_index(view, c))?;
            if r.face.len() != t * e || (!r.early.is_empty() && r.early.len() != p * w) {
                bail!("{}: feature sizes do not fit the model", self.reader.path.display());
            }
            f.face.extend(r.face);
            f.scene.extend(r.scene);
            f.early.extend(r.early);
        }
        Ok(Batch::of(Payload::Features(f), clips, chunk))
    }
}

/// `dfer embed`: writes `out/features.h5` for every clip of the shards with `views` augmented views.
pub(crate) fn embed(cfg: &TrainConfig, out: &Path, views: usize) -> Result<PathBuf> {
    if let Some(why) = cfg.model.method.feature_cache_refusal() {
        bail!(UsageError::new(format!(
            "a feature cache holds a frozen CLIP image tower's features; model.method = \"{}\" cannot use one: {why}",
            cfg.model.method
        )));
    }
    if cfg.train.finetune_image {
        bail!(UsageError::new("a feature cache needs the frozen image tower (train.finetune_image = false)"));
    }
    let manifest = Manifest::read(&cfg.data.manifest)?;
    let shards = ShardSet::open(&cfg.data.shards)?;
    let clips = shards.all_clips(&manifest)?;
    let attrs = shards.attrs();
    let runner = Runner::new(&cfg.model, &attrs.label_names, attrs.frames, &cfg.train.device, cfg.loss.clone())?;
    let (e, p, w) = runner.feature_dims();
    let fa = FeatureAttrs {
        data_hash: shards.data_hash(),
        model_hash: model_hash(cfg, &runner)?,
        clips: clips.len(),
        views: views + 1,
        frames: attrs.frames,
        embed: e,
        early: [p, if p > 0 { w } else { 0 }],
        scene: runner.uses_scene(),
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let rows: Vec<i64> = clips.iter().map(|c| c.manifest_row as i64).collect();
    let writer = FeatureWriter::create(&out.join(FILE_NAME), &fa, &rows)?;
    let shape = InputShape {
        frames: attrs.frames,
        size: runner.image_size() as u32,
        scene: runner.uses_scene(),
        points: false,
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(cfg.train.loader_threads.max(1)).build()?;
    let progress = Progress::new((clips.len() * (views + 1)) as u64, "embed");
    let order: Vec<usize> = (0..clips.len()).collect();
    for v in 0..=views {
        let view = if v == 0 {
            View::Test
        } else {
            View::Train { aug: cfg.aug.clone(), seed: cfg.train.seed, epoch: v as u32 }
        };
        for chunk in order.chunks(cfg.train.batch_size) {
            let batch = pixel_batch(&shards, &clips, chunk, shape, &view, &pool)?;
            let Payload::Pixels { face, scene, colour, .. } = &batch.payload else { unreachable!("pixel batch") };
            let f = runner.encode(face, scene, colour, chunk.len())?;
            let split = |x: &[f32], i: usize| -> Vec<f32> {
                let n = x.len() / chunk.len();
                x[i * n..(i + 1) * n].to_vec()
            };
            for (k, &ci) in chunk.iter().enumerate() {
                let row = FeatureRow { face: split(&f.face, k), scene: split(&f.scene, k), early: split(&f.early, k) };
                writer.write(ci, v, &row)?;
            }
            progress.advance(chunk.len() as u64, "");
        }
    }
    progress.finish();
    writer.finish()
}
