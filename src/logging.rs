//! Logging (`tracing`, `-v`/`-q`, `RUST_LOG`) and progress reporting: a bar on a terminal,
//! plain periodic log lines otherwise.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tracing_subscriber::EnvFilter;

/// Sets up logging to stderr; `RUST_LOG` overrides the level chosen by `-v`/`-q`.
pub fn init(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(format!("dfer={level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .without_time()
        .try_init();
}

/// Progress over a known number of items.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    what: String,
    total: u64,
    done: AtomicU64,
    start: Instant,
    last_line: Mutex<Instant>,
}

impl Progress {
    pub(crate) fn new(total: u64, what: impl Into<String>) -> Self {
        let what = what.into();
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} ETA {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            b.set_message(what.clone());
            b
        });
        let now = Instant::now();
        Progress { bar, what, total, done: AtomicU64::new(0), start: now, last_line: Mutex::new(now) }
    }

    /// Counts one finished item.
    pub(crate) fn inc(&self) {
        self.advance(1, "");
    }

    /// Counts `n` finished items; `note` (e.g. the current loss) follows the label.
    pub(crate) fn advance(&self, n: u64, note: &str) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(b) = &self.bar {
            b.inc(n);
            if !note.is_empty() {
                b.set_message(format!("{} {note}", self.what));
            }
            return;
        }
        let mut last = self.last_line.lock().expect("progress lock");
        if last.elapsed() >= Duration::from_secs(10) || done == self.total {
            *last = Instant::now();
            let secs = self.start.elapsed().as_secs_f64().max(1e-9);
            tracing::info!("{}: {done}/{} ({:.1}/s) {note}", self.what, self.total, done as f64 / secs);
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
