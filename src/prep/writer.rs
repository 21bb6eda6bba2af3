//! The writer of `dfer prep`: one thread takes the workers' clips, puts them back in job
//! order and appends them to their shards in that order (so output is identical whatever the
//! thread count), finishing each shard with its own prep table.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use crossbeam_channel::Receiver;

use super::clip::ClipResult;
use super::out_dir::shard_files;
use super::plan::{shard_attrs, Plan};
use super::pool::{Done, Shared};
use super::tables::{rows_frame, PrepRow};
use crate::logging::Progress;
use crate::manifest::prep_table::PrepTable;
use crate::shard::{ShardAttrs, ShardRow, ShardWriter, StoredPixels};

pub(super) struct OrderedWriter<'a> {
    pub dir: &'a Path,
    pub plan: &'a Plan,
    pub jobs: &'a [(usize, usize)],
    pub common: &'a ShardAttrs,
    pub progress: &'a Progress,
    pending: BTreeMap<usize, (ClipResult, Option<StoredPixels>)>,
    /// The next job to write.
    next: usize,
    writer: Option<ShardWriter>,
    /// The rows of the shard being written.
    rows: Vec<PrepRow>,
    pub shards_written: usize,
}

impl<'a> OrderedWriter<'a> {
    pub(crate) fn new(
        dir: &'a Path,
        plan: &'a Plan,
        jobs: &'a [(usize, usize)],
        common: &'a ShardAttrs,
        progress: &'a Progress,
    ) -> OrderedWriter<'a> {
        let (pending, writer, rows) = (BTreeMap::new(), None, Vec::new());
        OrderedWriter { dir, plan, jobs, common, progress, pending, next: 0, writer, rows, shards_written: 0 }
    }

    /// Writes the clips from `rx` in job order until the workers are done, telling them
    /// through `shared` how far it got.
    pub(crate) fn write_all(&mut self, rx: &Receiver<Done>, shared: &Shared) -> Result<()> {
        for (j, res, stored) in rx.iter() {
            self.pending.insert(j, (res, stored));
            while let Some((res, stored)) = self.pending.remove(&self.next) {
                self.write(res, stored)?;
                self.next += 1;
                shared.written(self.next);
            }
        }
        Ok(())
    }

    /// Writes the next job's clip: opens its shard at its first row, closes it with its table
    /// at its last.
    fn write(&mut self, res: ClipResult, stored: Option<StoredPixels>) -> Result<()> {
        let (k, r) = self.jobs[self.next];
        let (start, end) = self.plan.range(k);
        if r == start {
            self.writer = Some(ShardWriter::create(self.dir, &shard_attrs(self.common, self.plan, k))?);
            self.rows.clear();
        }
        let w = self.writer.as_mut().expect("shard open");
        let t0 = Instant::now();
        let row = match (&res.tensors, &stored) {
            (Some(t), Some(stored)) => {
                let idx = self.rows.iter().filter(|x| x.row.is_some()).count();
                w.append(&ShardRow { clip_id: &res.clip_id, label: res.label, manifest_row: r, tensors: t, stored })?;
                Some(idx)
            }
            _ => None,
        };
        let write_ms = t0.elapsed().as_secs_f64() * 1000.0;
        self.rows.push(PrepRow { result: ClipResult { tensors: None, ..res }, shard: k, row, write_ms });
        self.progress.inc();
        if r + 1 == end {
            let (_, pq) = shard_files(self.dir, k);
            PrepTable::write(&mut rows_frame(&self.rows)?, &pq)?;
            self.writer.take().expect("shard open").finish()?;
            self.shards_written += 1;
        }
        Ok(())
    }
}
