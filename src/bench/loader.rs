//! `dfer bench loader`: the training loader's throughput on real shards, one thread.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;

use crate::train::config::Augment;
use crate::train::data::{pixel_batch, ClipRef, InputShape, ShardSet, View};

/// What `dfer bench loader` measured.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct LoaderTiming {
    pub encoding: String,
    pub clips: usize,
    pub frames: usize,
    pub seconds: f64,
    /// Face and scene frames read, decoded and augmented (crop, resize, flip) per second on one
    /// thread; jitter and normalisation run on the device.
    pub frames_per_s_per_core: f64,
}

/// Reads every clip of the shards in `dir` through the training view (random frame per segment,
/// crop, resize to `size`, flip) on one thread.
pub(crate) fn time_loader(dir: &Path, frames: usize, size: u32) -> Result<LoaderTiming> {
    let set = ShardSet::open(dir)?;
    let clips: Vec<ClipRef> = set
        .readers
        .iter()
        .enumerate()
        .flat_map(|(shard, r)| {
            let labels = r.labels().unwrap_or_default();
            (0..r.len).map(move |row| ClipRef {
                shard,
                row,
                label: labels.get(row).copied().unwrap_or(0) as usize,
                polarity: 0,
                clip_id: String::new(),
                manifest_row: row,
                fallback: false,
            })
        })
        .collect();
    let shape = InputShape { frames, size, scene: set.attrs().has_scene(), points: false };
    let view = View::Train { aug: Augment::default(), seed: 0, epoch: 0 };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let started = Instant::now();
    for chunk in (0..clips.len()).collect::<Vec<_>>().chunks(8) {
        pixel_batch(&set, &clips, chunk, shape, &view, &pool)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let n = clips.len() * frames * 2;
    Ok(LoaderTiming {
        encoding: set.attrs().pixels.encoding.as_str().into(),
        clips: clips.len(),
        frames: n,
        seconds,
        frames_per_s_per_core: n as f64 / seconds,
    })
}
