//! `dfer prep`: the parallel per-clip pipeline from a clip manifest to HDF5 shards plus
//! `prep.parquet`. Workers (rayon threads, one detector session each) process clips in
//! manifest order within a bounded window; one writer thread appends them to shards in that
//! order, so output is identical whatever the thread count. Complete shards are skipped on a
//! rerun; `--shard-index i --num-shards n` takes every n-th shard.
//!
//! This file owns the run's options, its summary and the order of its steps; `plan` claims
//! the output folder, `pool` and `writer` are the two sides of the work, `tables` the prep
//! tables, `verify` checks a finished folder.

pub(crate) mod clip;
pub(crate) mod config;
mod detector;
pub(crate) mod export;
pub(crate) mod inspect;
pub(crate) mod out_dir;
mod plan;
mod pool;
pub(crate) mod shots;
pub(crate) mod tables;
mod verify;
mod writer;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, Result};
use serde::Serialize;

use crate::atomic::remove_unfinished;
use crate::clip_status::ClipStatus;
use crate::error::UsageError;
use crate::face::centerface;
use crate::logging::Progress;
use crate::manifest::Manifest;
use crate::shard::{shard_name, FaceCrops};
use config::PrepConfig;
use out_dir::PrepDir;
pub(crate) use plan::Plan;
use plan::Work;
pub(crate) use verify::verify;
use writer::OrderedWriter;

/// Settings of one `dfer prep` run.
#[derive(Debug, Clone)]
pub(crate) struct PrepOptions {
    pub manifest: PathBuf,
    pub out: PathBuf,
    pub config: PrepConfig,
    pub threads: usize,
    /// Decoded frames all workers may hold at once, in bytes (`--frame-memory-mb`).
    pub frame_memory: u64,
    pub shard_index: usize,
    pub num_shards: usize,
    /// Dataset root, when it moved since the manifest was built.
    pub root: Option<PathBuf>,
    pub export_frames: Option<PathBuf>,
    /// Added to 0-based labels in the exported lists (0 or 1).
    pub export_label_base: u8,
}

/// What a run did, printed at the end and returned for tests.
#[derive(Debug, Serialize)]
pub(crate) struct PrepSummary {
    pub shards_total: usize,
    pub shards_owned: usize,
    pub shards_skipped: usize,
    pub shards_written: usize,
    pub clips_processed: usize,
    /// Status counts over every clip of this worker's complete shards.
    pub statuses: BTreeMap<ClipStatus, usize>,
    pub mean_detection_rate: Option<f64>,
    pub seconds: f64,
    pub clips_per_second: f64,
    /// Written when every shard of the output is complete.
    pub prep_parquet: Option<PathBuf>,
}

impl PrepSummary {
    pub(crate) fn failed(&self) -> usize {
        self.statuses.iter().filter(|(k, _)| !k.is_ok()).map(|(_, v)| v).sum()
    }
}

/// Number of shards for `rows` manifest rows.
pub(crate) fn shard_count(rows: usize, per_shard: usize) -> usize {
    rows.div_ceil(per_shard)
}

/// Checks the options and reads the manifest; returns it with the dataset root to read.
fn open_inputs(opts: &PrepOptions) -> Result<(Manifest, PathBuf)> {
    opts.config.validate().map_err(UsageError::new)?;
    if opts.num_shards == 0 || opts.shard_index >= opts.num_shards {
        return Err(UsageError::new(format!(
            "--shard-index {} must be below --num-shards {}",
            opts.shard_index, opts.num_shards
        ))
        .into());
    }
    let manifest = Manifest::read(&opts.manifest)?;
    check_sources(&manifest, &opts.config).map_err(|m| UsageError::new(format!("{}: {m}", opts.manifest.display())))?;
    let root = opts.root.clone().unwrap_or_else(|| manifest.root.clone());
    if !root.is_dir() {
        return Err(UsageError::new(format!(
            "{}: dataset root of {} not found (pass --root if it moved)",
            root.display(),
            opts.manifest.display()
        ))
        .into());
    }
    Ok((manifest, root))
}

/// `face_crops = "dataset"` reads each clip's crop folder (and, with a scene stream, its video)
/// by the dataset description's patterns: both must be there.
fn check_sources(manifest: &Manifest, cfg: &PrepConfig) -> Result<(), String> {
    if cfg.face_crops != FaceCrops::Dataset {
        return Ok(());
    }
    let src = manifest.desc.sources.as_ref();
    let name = &manifest.desc.name;
    if src.and_then(|s| s.frames.as_ref()).is_none() {
        return Err(format!(
            "face_crops = \"dataset\" needs the face-crop folders, but dataset {name} has no sources.frames"
        ));
    }
    if cfg.scene_size > 0 && src.and_then(|s| s.video.as_ref()).is_none() {
        return Err(format!(
            "face_crops = \"dataset\" with a scene stream needs the videos, but dataset {name} has no sources.video \
             (scene_size = 0 stores faces only)"
        ));
    }
    Ok(())
}

/// Runs prep.
pub(crate) fn run(opts: &PrepOptions) -> Result<PrepSummary> {
    let started = Instant::now();
    let cfg = &opts.config;
    let (manifest, root) = open_inputs(opts)?;
    let detector_hash = centerface::installed_model_hash()?;
    let config_hash = cfg.hash(&detector_hash);
    let out = PrepDir::new(&opts.out);
    plan::claim_output(&out, cfg, &config_hash)?;
    let dir = out.shards();
    let n_rows = manifest.rows.len();
    let plan = Plan {
        manifest_rows: n_rows,
        clips_per_shard: cfg.clips_per_shard,
        shards: shard_count(n_rows, cfg.clips_per_shard),
    };
    let work = Work::claim(&out, plan, opts.shard_index, opts.num_shards)?;
    let common = plan::common_attrs(&manifest, cfg, &detector_hash, &config_hash);
    let ctx = pool::Context {
        manifest: &manifest,
        root: &root,
        cfg,
        export_frames: opts.export_frames.as_deref(),
        jobs: &work.jobs,
    };
    let progress = Progress::new(work.jobs.len() as u64, "preparing clips");
    let mut writer = OrderedWriter::new(&dir, &work.plan, &work.jobs, &common, &progress);
    process_all(&ctx, &work, opts, &mut writer)?;
    let (statuses, mean_rate) = tables::tally(&dir, &work.owned)?;
    let prep_parquet = tables::write_prep_parquet(&out, work.plan.shards)?;
    if let (Some(d), Some(_)) = (&opts.export_frames, &prep_parquet) {
        export::write_annotations(d, &manifest, &out.table(), cfg, opts.export_label_base)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(PrepSummary {
        shards_total: work.plan.shards,
        shards_owned: work.owned.len(),
        shards_skipped: work.skipped(),
        shards_written: writer.shards_written,
        clips_processed: work.jobs.len(),
        statuses,
        mean_detection_rate: mean_rate,
        seconds,
        clips_per_second: work.jobs.len() as f64 / seconds.max(1e-9),
        prep_parquet,
    })
}

/// Runs `opts.threads` workers and the ordered writer until every job is written or one side
/// fails; returns the first error of either.
fn process_all(ctx: &pool::Context, work: &Work, opts: &PrepOptions, writer: &mut OrderedWriter) -> Result<()> {
    let threads = opts.threads.max(1);
    let shared = pool::Shared::new(threads + 2, opts.frame_memory, threads);
    let (tx, rx) = crossbeam_channel::bounded::<pool::Done>(shared.window);
    let workers_pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    std::thread::scope(|scope| -> Result<()> {
        let tx_workers = tx.clone();
        let workers = scope.spawn(|| {
            let tx = tx_workers;
            workers_pool.broadcast(|_| pool::work(ctx, &shared, &tx));
        });
        drop(tx);
        let written = writer.write_all(&rx, &shared);
        if written.is_err() {
            shared.stop();
            // The shard being written when it failed (a full disk, say) leaves no temporary file.
            remove_unfinished(writer.dir, |name| work.todo.iter().any(|&k| name == shard_name(k)))?;
        }
        workers.join().map_err(|_| anyhow!("a prep worker panicked"))?;
        written
    })?;
    writer.progress.finish();
    let (waits, waited_s, peak) = shared.frame_budget_use();
    tracing::info!(
        "prep: decoded frames held at most {} MB at once (--frame-memory-mb {}); clips waited for it {waits} times, \
         {waited_s:.1} s in all",
        peak >> 20,
        opts.frame_memory >> 20
    );
    match shared.take_error() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
