//! The workers of `dfer prep`: rayon threads, one detector session each, take clips in job
//! order, no more than a window ahead of the writer; each is decoded, cropped, encoded (JPEG
//! runs here, in parallel) and exported, then sent to the writer. The first error stops
//! every worker.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use anyhow::Result;
use crossbeam_channel::Sender;

use super::clip::{self, ClipResult};
use super::config::PrepConfig;
use super::export;
use crate::face::centerface::{CenterFace, CenterFaceSettings};
use crate::face::Detector;
use crate::manifest::Manifest;
use crate::shard::{encode_pixels, StoredPixels};

/// A processed clip on its way to the writer: its job index, result and encoded pixels.
pub(super) type Done = (usize, ClipResult, Option<StoredPixels>);

/// What the workers and the writer share.
pub(super) struct Shared {
    next_job: AtomicUsize,
    /// Jobs written so far; workers wait on it to stay within `window` of the writer.
    gate: (Mutex<usize>, Condvar),
    /// Clips may finish out of order: a job starts only when it is fewer than `window` jobs
    /// ahead of the writer, which bounds the results held in memory.
    pub window: usize,
    abort: AtomicBool,
    error: Mutex<Option<anyhow::Error>>,
}

impl Shared {
    pub(crate) fn new(window: usize) -> Shared {
        Shared {
            next_job: AtomicUsize::new(0),
            gate: (Mutex::new(0), Condvar::new()),
            window,
            abort: AtomicBool::new(false),
            error: Mutex::new(None),
        }
    }

    fn aborted(&self) -> bool {
        self.abort.load(Ordering::SeqCst)
    }

    /// Stops every worker, keeping the first error.
    fn fail(&self, e: anyhow::Error) {
        self.abort.store(true, Ordering::SeqCst);
        self.error.lock().expect("lock").get_or_insert(e);
    }

    /// Stops every worker, waking those waiting for the writer (which failed).
    pub(crate) fn stop(&self) {
        self.abort.store(true, Ordering::SeqCst);
        self.gate.1.notify_all();
    }

    /// The writer has written the first `n` jobs.
    pub(crate) fn written(&self, n: usize) {
        let (lock, cv) = &self.gate;
        *lock.lock().expect("gate") = n;
        cv.notify_all();
    }

    /// Blocks while job `j` is `window` or more jobs ahead of the writer.
    fn wait_for_window(&self, j: usize) {
        let (lock, cv) = &self.gate;
        let mut written = lock.lock().expect("gate");
        while j >= *written + self.window && !self.aborted() {
            written = cv.wait(written).expect("gate");
        }
    }

    /// The first error of a worker.
    pub(crate) fn take_error(&self) -> Option<anyhow::Error> {
        self.error.lock().expect("lock").take()
    }
}

/// What every worker reads.
pub(super) struct Context<'a> {
    pub manifest: &'a Manifest,
    pub root: &'a Path,
    pub cfg: &'a PrepConfig,
    pub export_frames: Option<&'a Path>,
    /// (shard, manifest row) of every job.
    pub jobs: &'a [(usize, usize)],
}

/// One worker thread: takes jobs until none is left, one fails or the receiver is gone.
pub(super) fn work(ctx: &Context, shared: &Shared, tx: &Sender<Done>) {
    let cfg = ctx.cfg;
    let settings = CenterFaceSettings { threshold: cfg.det_threshold, nms_iou: cfg.nms_iou };
    let mut det: Box<dyn Detector> = match CenterFace::new(settings) {
        Ok(d) => Box::new(d),
        Err(e) => return shared.fail(e),
    };
    loop {
        let j = shared.next_job.fetch_add(1, Ordering::SeqCst);
        if j >= ctx.jobs.len() || shared.aborted() {
            break;
        }
        shared.wait_for_window(j);
        let Some((res, stored)) = process(ctx, shared, ctx.jobs[j].1, det.as_mut()) else { break };
        if tx.send((j, res, stored)).is_err() {
            break;
        }
    }
}

/// Processes manifest row `r`, encodes its pixels and exports its frames. `None` when the
/// encoding failed (recorded in `shared`); a failed export is recorded too, but the clip is
/// still sent.
fn process(
    ctx: &Context,
    shared: &Shared,
    r: usize,
    det: &mut dyn Detector,
) -> Option<(ClipResult, Option<StoredPixels>)> {
    let cfg = ctx.cfg;
    let inputs = clip::Inputs { root: ctx.root, sources: ctx.manifest.desc.sources.as_ref() };
    let mut res = clip::process(&ctx.manifest.rows[r], r, &inputs, cfg, det);
    // Pixel encoding (JPEG) runs here, in parallel, not on the writer thread; its time counts
    // as crop time.
    let t0 = Instant::now();
    let stored = match encode(&res, cfg) {
        Err(e) => {
            shared.fail(e.context(format!("encoding clip {}", res.clip_id)));
            return None;
        }
        Ok(s) => s,
    };
    res.crop_ms += t0.elapsed().as_secs_f64() * 1000.0;
    if let (Some(dir), Some(t), Some(stored)) = (ctx.export_frames, &res.tensors, &stored) {
        if let Err(e) = export::write_clip(dir, &res.clip_id, t, stored, cfg) {
            shared.fail(e);
        }
    }
    // JPEG frames travel to the writer encoded: the raw ones are not kept while the clip waits.
    if let (Some(t), Some(StoredPixels::Jpeg { .. })) = (&mut res.tensors, &stored) {
        t.face = Vec::new();
        t.scene = Vec::new();
    }
    Some((res, stored))
}

/// A processed clip's frames in the shard's pixel format (none for a failed clip).
fn encode(res: &ClipResult, cfg: &PrepConfig) -> Result<Option<StoredPixels>> {
    res.tensors.as_ref().map(|t| encode_pixels(t, cfg.pixel_format(), cfg.face_size, cfg.scene_size)).transpose()
}
