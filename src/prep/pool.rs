//! The workers of `dfer prep`: rayon threads, one detector session each, take clips in job
//! order, no more than a window ahead of the writer and within the frame-memory budget; each is
//! decoded, cropped, encoded (JPEG runs here, in parallel) and exported, then sent to the
//! writer. The first error stops every worker.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use crossbeam_channel::Sender;

use super::clip::{self, ClipResult};
use super::config::PrepConfig;
use super::export;
use crate::face::centerface::{CenterFace, CenterFaceSettings};
use crate::face::Detector;
use crate::manifest::Manifest;
use crate::shard::StoredPixels;

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
    frames: FrameBudget,
    /// A worker's share of the frame budget: after a clip whose frames took more, the worker
    /// hands freed memory back ([`return_freed_memory`]).
    trim_above: u64,
}

impl Shared {
    /// `frame_bytes`: the decoded frames all `threads` workers may hold at once ([`FrameBudget`]).
    pub(crate) fn new(window: usize, frame_bytes: u64, threads: usize) -> Shared {
        Shared {
            next_job: AtomicUsize::new(0),
            gate: (Mutex::new(0), Condvar::new()),
            window,
            abort: AtomicBool::new(false),
            error: Mutex::new(None),
            frames: FrameBudget::new(frame_bytes),
            trim_above: frame_bytes / threads.max(1) as u64,
        }
    }

    /// How often workers waited for the frame budget, for how many seconds in all, and the most
    /// bytes it saw held at once.
    pub(crate) fn frame_budget_use(&self) -> (usize, f64, u64) {
        let f = &self.frames;
        (
            f.waits.load(Ordering::SeqCst),
            f.waited_ns.load(Ordering::SeqCst) as f64 * 1e-9,
            f.peak.load(Ordering::SeqCst),
        )
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

/// Bytes of decoded frames the workers may hold at once (`dfer prep --frame-memory-mb`): a clip
/// starts when its estimate fits beside the clips in progress, and a clip larger than the whole
/// budget starts when no other is in progress, so peak memory does not grow with the threads.
struct FrameBudget {
    capacity: u64,
    held: Mutex<u64>,
    freed: Condvar,
    waits: AtomicUsize,
    waited_ns: AtomicU64,
    peak: AtomicU64,
}

impl FrameBudget {
    fn new(capacity: u64) -> FrameBudget {
        FrameBudget {
            capacity,
            held: Mutex::new(0),
            freed: Condvar::new(),
            waits: AtomicUsize::new(0),
            waited_ns: AtomicU64::new(0),
            peak: AtomicU64::new(0),
        }
    }

    /// Blocks until `bytes` fit (or nothing else is held), then holds them until the lease drops.
    /// Every holder finishes its clip and drops its lease, aborted or not, so no wait is endless.
    fn take(&self, bytes: u64) -> FrameLease<'_> {
        let mut held = self.held.lock().expect("budget");
        if *held > 0 && *held + bytes > self.capacity {
            self.waits.fetch_add(1, Ordering::SeqCst);
            let started = Instant::now();
            while *held > 0 && *held + bytes > self.capacity {
                held = self.freed.wait(held).expect("budget");
            }
            self.waited_ns.fetch_add(started.elapsed().as_nanos() as u64, Ordering::SeqCst);
        }
        *held += bytes;
        self.peak.fetch_max(*held, Ordering::SeqCst);
        FrameLease { budget: self, bytes }
    }
}

/// Frame bytes held by a clip in progress; given back when dropped.
struct FrameLease<'a> {
    budget: &'a FrameBudget,
    bytes: u64,
}

impl Drop for FrameLease<'_> {
    fn drop(&mut self) {
        *self.budget.held.lock().expect("budget") -= self.bytes;
        self.budget.freed.notify_all();
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

/// Processes manifest row `r` and exports its frames. `None` when the run must stop (a frame
/// the JPEG encoder refused; recorded in `shared`); a failed export is recorded too, but the
/// clip is still sent.
fn process(
    ctx: &Context,
    shared: &Shared,
    r: usize,
    det: &mut dyn Detector,
) -> Option<(ClipResult, Option<StoredPixels>)> {
    let cfg = ctx.cfg;
    let inputs = clip::Inputs { root: ctx.root, sources: ctx.manifest.desc.sources.as_ref() };
    let row = &ctx.manifest.rows[r];
    let frame_bytes = clip::frame_bytes(row, cfg);
    let lease = shared.frames.take(frame_bytes);
    let res = clip::process(row, r, &inputs, cfg, det);
    // The clip's decoded frames are gone: what remains is its crops at the output sizes. The
    // thread's allocator keeps their pages for the next clip, at most about a worker's share of
    // the budget; a larger clip's go back, which costs the next clip its page faults.
    drop(lease);
    if frame_bytes > shared.trim_above {
        return_freed_memory();
    }
    let mut res = match res {
        Ok(res) => res,
        Err(e) => {
            shared.fail(e);
            return None;
        }
    };
    // JPEG frames were encoded as the worker made them (crop time), not on the writer thread.
    let stored = res.pixels.take();
    if let (Some(dir), Some(t), Some(stored)) = (ctx.export_frames, &res.tensors, &stored) {
        if let Err(e) = export::write_clip(dir, &res.clip_id, t, stored, cfg) {
            shared.fail(e);
        }
    }
    Some((res, stored))
}

/// Hands the memory freed by the clip just done back to the system. glibc keeps freed blocks in
/// the arena of the thread that freed them, and frame-sized blocks stop being mapped separately
/// once one has been freed, so without this every worker keeps its largest clip's frames and
/// memory grows with the threads whatever the frame budget (1.2 GB at 8 threads, docs/prep.md
/// "Memory"). Called after every clip it cost 2 threads 11–13 % of their time in page faults, so
/// it runs only after clips larger than a worker's share.
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer and only returns free pages of glibc's own arenas.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Leases never hold more than the budget together, and a lease larger than the whole budget
    /// still runs, alone.
    #[test]
    fn the_frame_budget_bounds_what_workers_hold_together() {
        let budget = FrameBudget::new(100);
        let holding = AtomicU64::new(0);
        let most = AtomicU64::new(0);
        std::thread::scope(|s| {
            for bytes in [60, 50, 40, 150, 30, 70] {
                let (budget, holding, most) = (&budget, &holding, &most);
                s.spawn(move || {
                    let _lease = budget.take(bytes);
                    let now = holding.fetch_add(bytes, Ordering::SeqCst) + bytes;
                    most.fetch_max(now, Ordering::SeqCst);
                    assert!(now <= 100 || now == bytes, "{now} bytes held beside a lease of {bytes}");
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    holding.fetch_sub(bytes, Ordering::SeqCst);
                });
            }
        });
        assert_eq!(*budget.held.lock().unwrap(), 0, "every lease given back");
        assert_eq!(budget.peak.load(Ordering::SeqCst), 150, "the large lease alone is the most ever held");
        assert!(most.load(Ordering::SeqCst) <= 150);
    }

    /// A lease that does not fit waits (and is counted) until one held is given back.
    #[test]
    fn a_clip_that_does_not_fit_waits_for_the_budget() {
        let budget = FrameBudget::new(100);
        let first = budget.take(60);
        std::thread::scope(|s| {
            let second = s.spawn(|| drop(budget.take(50)));
            while budget.waits.load(Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            assert!(!second.is_finished(), "50 bytes do not fit beside 60 in 100");
            drop(first);
        });
        assert_eq!((*budget.held.lock().unwrap(), budget.waits.load(Ordering::SeqCst)), (0, 1));
    }
}
