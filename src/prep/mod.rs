//! `dfer prep`: the parallel per-clip pipeline from a clip manifest to HDF5 shards plus
//! `prep.parquet`. Workers (rayon threads, one detector session each) process clips in
//! manifest order within a bounded window; one writer thread appends them to shards in that
//! order, so output is identical whatever the thread count. Complete shards are skipped on a
//! rerun; `--shard-index i --num-shards n` takes every n-th shard.

pub mod clip;
pub mod config;
pub mod export;
pub mod inspect;
pub mod sample;
pub mod shots;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use polars::prelude::*;
use serde::Serialize;

use crate::atomic::{remove_unfinished, write_atomic};
use crate::error::UsageError;
use crate::face::centerface::{self, CenterFace, CenterFaceSettings};
use crate::face::Detector;
use crate::logging::Progress;
use crate::manifest::{write_parquet, Manifest, PREP_TABLE_KEY};
use crate::shard::{encode_pixels, shard_name, ShardAttrs, ShardReader, ShardRow, ShardWriter, StoredPixels};
use clip::ClipResult;
use config::PrepConfig;

/// Settings of one `dfer prep` run.
#[derive(Debug, Clone)]
pub struct PrepOptions {
    pub manifest: PathBuf,
    pub out: PathBuf,
    pub config: PrepConfig,
    pub threads: usize,
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
pub struct PrepSummary {
    pub shards_total: usize,
    pub shards_owned: usize,
    pub shards_skipped: usize,
    pub shards_written: usize,
    pub clips_processed: usize,
    /// Status counts over every clip of this worker's complete shards.
    pub statuses: BTreeMap<String, usize>,
    pub mean_detection_rate: Option<f64>,
    pub seconds: f64,
    pub clips_per_second: f64,
    /// Written when every shard of the output is complete.
    pub prep_parquet: Option<PathBuf>,
}

impl PrepSummary {
    pub fn failed(&self) -> usize {
        self.statuses.iter().filter(|(k, _)| k.as_str() != "ok").map(|(_, v)| v).sum()
    }
}

/// One row of `prep.parquet`.
#[derive(Debug, Clone)]
struct PrepRow {
    result: ClipResult,
    shard: usize,
    row: Option<usize>,
    write_ms: f64,
}

fn shard_paths(dir: &Path, k: usize) -> (PathBuf, PathBuf) {
    let h5 = dir.join(shard_name(k));
    (h5.clone(), h5.with_extension("parquet"))
}

/// Number of shards for `rows` manifest rows.
pub fn shard_count(rows: usize, per_shard: usize) -> usize {
    rows.div_ceil(per_shard)
}

/// Checks or records the resolved config of an output folder, so reruns never mix settings.
fn claim_output(out: &Path, cfg: &PrepConfig, hash: &str) -> Result<()> {
    std::fs::create_dir_all(out.join("shards")).with_context(|| format!("{}: cannot create", out.display()))?;
    let path = out.join("prep_config.toml");
    let text = format!("# config_hash = \"{hash}\"\n{}", cfg.to_toml());
    match std::fs::read_to_string(&path) {
        Ok(existing) if existing == text => Ok(()),
        Ok(existing) => {
            let old = existing.lines().next().unwrap_or("").to_string();
            Err(UsageError::new(format!(
                "{}: this output was prepared with other settings ({old}); use a new --out or the same config",
                path.display()
            ))
            .into())
        }
        Err(_) => write_atomic(&path, text.as_bytes()),
    }
}

/// What an output folder is meant to hold (`prep_plan.json`): `dfer verify` checks against it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Plan {
    pub manifest_rows: usize,
    pub clips_per_shard: usize,
    pub shards: usize,
}

fn claim_plan(out: &Path, plan: &Plan) -> Result<()> {
    let path = out.join("prep_plan.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
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
        Err(_) => write_atomic(&path, serde_json::to_string_pretty(plan)?.as_bytes()),
    }
}

/// One shard's problem found by [`verify`].
#[derive(Debug, Clone, Serialize)]
pub struct ShardProblem {
    pub shard: usize,
    pub problem: String,
}

/// What `dfer verify` found in a prep output folder.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// False when prep was stopped before it wrote `prep_plan.json` (nothing to check yet).
    pub planned: bool,
    pub shards: usize,
    pub complete: usize,
    pub clips_written: usize,
    pub problems: Vec<ShardProblem>,
    /// Temporary files left by killed runs (removed when their shard is redone).
    pub unfinished_files: Vec<String>,
    pub prep_parquet: bool,
}

impl Verification {
    /// Shard indices to prepare again.
    pub fn to_redo(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.problems.iter().map(|p| p.shard).collect();
        v.dedup();
        v
    }
}

/// `dfer verify`: every expected shard present, readable, made with the folder's settings, its
/// clip count equal to its table's and its manifest range the planned one.
pub fn verify(out: &Path) -> Result<Verification> {
    let plan_path = out.join("prep_plan.json");
    let prep_parquet = out.join("prep.parquet").exists();
    let text = match std::fs::read_to_string(&plan_path) {
        Ok(text) => text,
        // prep makes shards/ and prep_config.toml first: a run killed then left no plan yet.
        Err(_) if out.join("shards").is_dir() || out.join("prep_config.toml").exists() => {
            return Ok(Verification {
                planned: false,
                shards: 0,
                complete: 0,
                clips_written: 0,
                problems: vec![],
                unfinished_files: vec![],
                prep_parquet,
            });
        }
        Err(_) => bail!(UsageError::new(format!(
            "{}: missing; is {} a dfer prep output?",
            plan_path.display(),
            out.display()
        ))),
    };
    let plan: Plan = serde_json::from_str(&text).with_context(|| format!("{}: unreadable", plan_path.display()))?;
    let cfg_text = std::fs::read_to_string(out.join("prep_config.toml"))
        .map_err(|e| UsageError::new(format!("{}: {e}", out.join("prep_config.toml").display())))?;
    let hash = cfg_text.lines().next().and_then(|l| l.split('"').nth(1)).unwrap_or_default().to_string();
    let dir = out.join("shards");
    let mut v = Verification {
        planned: true,
        shards: plan.shards,
        complete: 0,
        clips_written: 0,
        problems: vec![],
        unfinished_files: vec![],
        prep_parquet,
    };
    for k in 0..plan.shards {
        let (h5, pq) = shard_paths(&dir, k);
        let expect = [k * plan.clips_per_shard, ((k + 1) * plan.clips_per_shard).min(plan.manifest_rows)];
        match check_shard(&h5, &pq, &hash, expect) {
            Ok(n) => {
                v.complete += 1;
                v.clips_written += n;
            }
            Err(problem) => v.problems.push(ShardProblem { shard: k, problem }),
        }
    }
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut tmp: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        tmp.sort();
        v.unfinished_files = tmp;
    }
    Ok(v)
}

fn check_shard(h5: &Path, pq: &Path, hash: &str, expect: [usize; 2]) -> Result<usize, String> {
    if !h5.exists() {
        return Err(format!("{} is missing", h5.display()));
    }
    if !pq.exists() {
        return Err(format!("{} is missing", pq.display()));
    }
    let r = ShardReader::open(h5).map_err(|e| format!("{e:#}"))?;
    if r.attrs.config_hash != hash {
        return Err(format!("{}: made with other settings (config hash {})", h5.display(), r.attrs.config_hash));
    }
    if r.attrs.manifest_rows != expect {
        return Err(format!("{}: covers manifest rows {:?}, expected {expect:?}", h5.display(), r.attrs.manifest_rows));
    }
    let (df, _) = crate::manifest::read_parquet(pq).map_err(|e| format!("{e:#}"))?;
    if df.height() != expect[1] - expect[0] {
        return Err(format!("{}: {} rows, expected {}", pq.display(), df.height(), expect[1] - expect[0]));
    }
    let written = df.column("row").map(|c| c.len() - c.null_count()).map_err(|e| format!("{}: {e}", pq.display()))?;
    if written != r.len {
        return Err(format!("{}: {} clips, its table says {written}", h5.display(), r.len));
    }
    // Every frame must read back (and decode, in a JPEG shard).
    for i in 0..r.len {
        r.pixels(i).map_err(|e| format!("{e:#}"))?;
    }
    Ok(r.len)
}

fn rows_frame(rows: &[PrepRow]) -> PolarsResult<DataFrame> {
    let r = |f: &dyn Fn(&PrepRow) -> f64| rows.iter().map(f).collect::<Vec<f64>>();
    let count = |f: &dyn Fn(&clip::FrameCounts) -> usize| {
        rows.iter().map(|x| x.result.frames.as_ref().map(|c| f(c) as i64)).collect::<Vec<_>>()
    };
    DataFrame::new_infer_height(vec![
        Column::new("clip_id".into(), rows.iter().map(|x| x.result.clip_id.clone()).collect::<Vec<_>>()),
        Column::new("manifest_row".into(), rows.iter().map(|x| x.result.manifest_row as i64).collect::<Vec<_>>()),
        Column::new("label".into(), rows.iter().map(|x| x.result.label as i64).collect::<Vec<_>>()),
        Column::new("shard".into(), rows.iter().map(|x| x.shard as i64).collect::<Vec<_>>()),
        Column::new("row".into(), rows.iter().map(|x| x.row.map(|v| v as i64)).collect::<Vec<_>>()),
        Column::new("status".into(), rows.iter().map(|x| x.result.status.clone()).collect::<Vec<_>>()),
        Column::new("error".into(), rows.iter().map(|x| x.result.error.clone()).collect::<Vec<_>>()),
        Column::new("detection_rate".into(), rows.iter().map(|x| x.result.detection_rate).collect::<Vec<_>>()),
        Column::new("mean_score".into(), rows.iter().map(|x| x.result.mean_score).collect::<Vec<_>>()),
        Column::new("detector_frames".into(), count(&|c| c.detector_frames)),
        Column::new("lost_frames".into(), count(&|c| c.lost)),
        Column::new("shots".into(), count(&|c| c.shots)),
        Column::new("decode_ms".into(), r(&|x| x.result.decode_ms)),
        Column::new("detect_ms".into(), r(&|x| x.result.detect_ms)),
        Column::new("crop_ms".into(), r(&|x| x.result.crop_ms)),
        Column::new("write_ms".into(), r(&|x| x.write_ms)),
    ])
}

/// A prep table (`prep.parquet` or a shard's own), marked as such in its metadata.
fn write_prep_table(df: &mut DataFrame, path: &Path) -> Result<()> {
    write_parquet(df, vec![(PREP_TABLE_KEY.to_string(), "1".to_string())], path)
}

/// `dfer manifest merge`: joins prep tables into `output`, sorted by manifest row. A manifest row
/// present in two inputs is an error naming both files. Returns the row count.
pub fn merge_tables(inputs: &[PathBuf], output: &Path) -> Result<usize> {
    let mut seen: BTreeMap<i64, PathBuf> = BTreeMap::new();
    let mut all: Option<DataFrame> = None;
    for path in inputs {
        let (df, meta) = crate::manifest::read_parquet(path)?;
        if !meta.iter().any(|(k, _)| k == PREP_TABLE_KEY) {
            return Err(UsageError::new(format!("{}: not a prep table (prep.parquet)", path.display())).into());
        }
        let rows = df
            .column("manifest_row")
            .and_then(|c| c.i64().cloned())
            .map_err(|e| UsageError::new(format!("{}: no manifest_row column: {e}", path.display())))?;
        for r in rows.iter().flatten() {
            if let Some(first) = seen.insert(r, path.clone()) {
                return Err(UsageError::new(format!(
                    "manifest row {r} is in both {} and {}",
                    first.display(),
                    path.display()
                ))
                .into());
            }
        }
        match &mut all {
            None => all = Some(df),
            Some(acc) => {
                acc.vstack_mut(&df).map_err(|e| UsageError::new(format!("{}: other columns: {e}", path.display())))?;
            }
        }
    }
    let mut all = all.map_or_else(|| rows_frame(&[]), Ok)?.sort(["manifest_row"], Default::default())?;
    write_prep_table(&mut all, output)?;
    Ok(all.height())
}

/// Joins the per-shard tables into `prep.parquet` once every shard is complete.
fn write_prep_parquet(out: &Path, shards: usize) -> Result<Option<PathBuf>> {
    let dir = out.join("shards");
    let mut tables = Vec::with_capacity(shards);
    for k in 0..shards {
        let (h5, pq) = shard_paths(&dir, k);
        if !h5.exists() || !pq.exists() {
            return Ok(None);
        }
        tables.push(pq);
    }
    let path = out.join("prep.parquet");
    merge_tables(&tables, &path)?;
    Ok(Some(path))
}

/// Status counts and mean detection rate of the complete shards in `owned`.
fn tally(dir: &Path, owned: &[usize]) -> Result<(BTreeMap<String, usize>, Option<f64>)> {
    let mut statuses = BTreeMap::new();
    let (mut rate_sum, mut rate_n) = (0.0, 0usize);
    for &k in owned {
        let (df, _) = crate::manifest::read_parquet(&shard_paths(dir, k).1)?;
        for s in df.column("status")?.str()?.iter().flatten() {
            *statuses.entry(s.to_string()).or_insert(0) += 1;
        }
        for r in df.column("detection_rate")?.f32()?.iter().flatten() {
            rate_sum += r as f64;
            rate_n += 1;
        }
    }
    Ok((statuses, (rate_n > 0).then(|| rate_sum / rate_n as f64)))
}

/// Runs prep.
pub fn run(opts: &PrepOptions) -> Result<PrepSummary> {
    let started = Instant::now();
    let cfg = &opts.config;
    cfg.validate().map_err(UsageError::new)?;
    if opts.num_shards == 0 || opts.shard_index >= opts.num_shards {
        return Err(UsageError::new(format!(
            "--shard-index {} must be below --num-shards {}",
            opts.shard_index, opts.num_shards
        ))
        .into());
    }
    let manifest = Manifest::read(&opts.manifest)?;
    let root = opts.root.clone().unwrap_or_else(|| manifest.root.clone());
    if !root.is_dir() {
        return Err(UsageError::new(format!(
            "{}: dataset root of {} not found (pass --root if it moved)",
            root.display(),
            opts.manifest.display()
        ))
        .into());
    }
    let det_settings = CenterFaceSettings { threshold: cfg.det_threshold, nms_iou: cfg.nms_iou };
    let detector_hash = centerface::installed_model_hash()?;
    let config_hash = cfg.hash(&detector_hash);
    claim_output(&opts.out, cfg, &config_hash)?;
    let dir = opts.out.join("shards");

    let n_rows = manifest.rows.len();
    let shards_total = shard_count(n_rows, cfg.clips_per_shard);
    claim_plan(&opts.out, &Plan { manifest_rows: n_rows, clips_per_shard: cfg.clips_per_shard, shards: shards_total })?;
    let owned: Vec<usize> = (0..shards_total).filter(|k| k % opts.num_shards == opts.shard_index).collect();
    let mut todo = Vec::new();
    for &k in &owned {
        let (h5, pq) = shard_paths(&dir, k);
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
    let range = |k: usize| (k * cfg.clips_per_shard, ((k + 1) * cfg.clips_per_shard).min(n_rows));
    // Jobs: (shard, manifest row), in shard then manifest order.
    let jobs: Vec<(usize, usize)> = todo.iter().flat_map(|&k| (range(k).0..range(k).1).map(move |r| (k, r))).collect();
    let pixels = cfg.pixel_format();
    let attrs_for = |k: usize| ShardAttrs {
        dataset: manifest.desc.name.clone(),
        label_names: manifest.desc.labels.clone(),
        label_polarity: (0..manifest.desc.labels.len())
            .map(|i| manifest.desc.polarity_of(i).as_str().to_string())
            .collect(),
        frames: cfg.frames,
        store_frames: cfg.store_frames,
        face_size: cfg.face_size,
        scene_size: cfg.scene_size,
        sampling: "segment_centres_by_time".into(),
        detector: centerface::NAME.into(),
        detector_hash: detector_hash.clone(),
        mask_mode: format!("{:?}", cfg.mask_mode).to_lowercase(),
        mask_scale: cfg.mask_scale,
        margin: cfg.margin,
        scene_fit: format!("{:?}", cfg.scene_fit).to_lowercase(),
        config_hash: config_hash.clone(),
        config_toml: cfg.to_toml(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        shard_index: k,
        manifest_rows: [range(k).0, range(k).1],
        pixels,
    };

    let threads = opts.threads.max(1);
    // Clips may finish out of order: a job starts only when it is fewer than `window` jobs
    // ahead of the writer, which bounds the results held in memory.
    let window = threads + 2;
    let next_job = AtomicUsize::new(0);
    let gate = (Mutex::new(0usize), Condvar::new());
    let abort = AtomicBool::new(false);
    let worker_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let (tx, rx) = crossbeam_channel::bounded::<(usize, ClipResult, Option<StoredPixels>)>(window);
    let progress = Progress::new(jobs.len() as u64, "preparing clips");
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    let mut shards_written = 0;

    std::thread::scope(|scope| -> Result<()> {
        let tx_workers = tx.clone();
        let workers = scope.spawn(|| {
            let tx = tx_workers;
            pool.broadcast(|_| {
                let mut det: Box<dyn Detector> = match CenterFace::new(det_settings) {
                    Ok(d) => Box::new(d),
                    Err(e) => {
                        abort.store(true, Ordering::SeqCst);
                        worker_error.lock().expect("lock").get_or_insert(e);
                        return;
                    }
                };
                loop {
                    let j = next_job.fetch_add(1, Ordering::SeqCst);
                    if j >= jobs.len() || abort.load(Ordering::SeqCst) {
                        break;
                    }
                    {
                        let (lock, cv) = &gate;
                        let mut written = lock.lock().expect("gate");
                        while j >= *written + window && !abort.load(Ordering::SeqCst) {
                            written = cv.wait(written).expect("gate");
                        }
                    }
                    let r = jobs[j].1;
                    let mut res = clip::process(&manifest.rows[r], r, &root, cfg, det.as_mut());
                    // Pixel encoding (JPEG) runs here, in parallel, not on the writer thread;
                    // its time counts as crop time.
                    let t0 = Instant::now();
                    let stored =
                        match res.tensors.as_ref().map(|t| encode_pixels(t, pixels, cfg.face_size, cfg.scene_size)) {
                            Some(Err(e)) => {
                                abort.store(true, Ordering::SeqCst);
                                worker_error
                                    .lock()
                                    .expect("lock")
                                    .get_or_insert(e.context(format!("encoding clip {}", res.clip_id)));
                                break;
                            }
                            Some(Ok(s)) => Some(s),
                            None => None,
                        };
                    res.crop_ms += t0.elapsed().as_secs_f64() * 1000.0;
                    if let (Some(dir), Some(t), Some(stored)) = (&opts.export_frames, &res.tensors, &stored) {
                        if let Err(e) = export::write_clip(dir, &res.clip_id, t, stored, cfg) {
                            abort.store(true, Ordering::SeqCst);
                            worker_error.lock().expect("lock").get_or_insert(e);
                        }
                    }
                    if tx.send((j, res, stored)).is_err() {
                        break;
                    }
                }
            });
        });
        drop(tx);
        let written_result = (|| -> Result<()> {
            let mut pending: BTreeMap<usize, (ClipResult, Option<StoredPixels>)> = BTreeMap::new();
            let mut next = 0usize;
            let mut writer: Option<ShardWriter> = None;
            let mut rows: Vec<PrepRow> = Vec::new();
            for (j, res, stored) in rx.iter() {
                pending.insert(j, (res, stored));
                while let Some((res, stored)) = pending.remove(&next) {
                    let (k, r) = jobs[next];
                    if r == range(k).0 {
                        writer = Some(ShardWriter::create(&dir, &attrs_for(k))?);
                        rows.clear();
                    }
                    let w = writer.as_mut().expect("shard open");
                    let t0 = Instant::now();
                    let row = match (&res.tensors, &stored) {
                        (Some(t), Some(stored)) => {
                            let idx = rows.iter().filter(|x| x.row.is_some()).count();
                            w.append(&ShardRow {
                                clip_id: &res.clip_id,
                                label: res.label,
                                manifest_row: r,
                                tensors: t,
                                stored,
                            })?;
                            Some(idx)
                        }
                        _ => None,
                    };
                    let write_ms = t0.elapsed().as_secs_f64() * 1000.0;
                    rows.push(PrepRow { result: ClipResult { tensors: None, ..res }, shard: k, row, write_ms });
                    progress.inc();
                    if r + 1 == range(k).1 {
                        let (_, pq) = shard_paths(&dir, k);
                        write_prep_table(&mut rows_frame(&rows)?, &pq)?;
                        writer.take().expect("shard open").finish()?;
                        shards_written += 1;
                    }
                    next += 1;
                    let (lock, cv) = &gate;
                    *lock.lock().expect("gate") = next;
                    cv.notify_all();
                }
            }
            Ok(())
        })();
        if written_result.is_err() {
            abort.store(true, Ordering::SeqCst);
            gate.1.notify_all();
            // The shard being written when it failed (a full disk, say) leaves no temporary file.
            remove_unfinished(&dir, |name| todo.iter().any(|&k| name == shard_name(k)))?;
        }
        workers.join().map_err(|_| anyhow!("a prep worker panicked"))?;
        written_result
    })?;
    progress.finish();
    if let Some(e) = worker_error.lock().expect("lock").take() {
        return Err(e);
    }
    let (statuses, mean_rate) = tally(&dir, &owned)?;
    let prep_parquet = write_prep_parquet(&opts.out, shards_total)?;
    if let (Some(d), Some(_)) = (&opts.export_frames, &prep_parquet) {
        export::write_annotations(d, &manifest, &opts.out.join("prep.parquet"), cfg, opts.export_label_base)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(PrepSummary {
        shards_total,
        shards_owned: owned.len(),
        shards_skipped: skipped,
        shards_written,
        clips_processed: jobs.len(),
        statuses,
        mean_detection_rate: mean_rate,
        seconds,
        clips_per_second: jobs.len() as f64 / seconds.max(1e-9),
        prep_parquet,
    })
}
