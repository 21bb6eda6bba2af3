//! `dfer bench jpeg-layout`: the two ways a shard can hold one JPEG file per frame, measured on
//! the frames of real JPEG shards. `vlen` is what shards use (a variable-length uint8 dataset
//! `[N, T]` per stream); `flat` is the alternative (all of a stream's files end to end in one
//! uint8 dataset, one chunk per clip, and an int64 `[N, T + 1]` offsets dataset). Both are plain
//! HDF5 that h5py reads without plugins; this measures the bytes each takes and how fast one
//! clip's files come back, the way the loader reads them (one row at a time).

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use hdf5::types::VarLenArray;
use hdf5::File;

use super::{Encoding, ShardReader};
use crate::error::UsageError;

/// What `dfer bench jpeg-layout` measured over every row of the shards.
#[derive(Debug, serde::Serialize)]
pub(crate) struct LayoutTiming {
    pub clips: usize,
    pub frames: usize,
    /// Bytes of the JPEG files themselves.
    pub jpeg_bytes: u64,
    /// File sizes of the face + scene datasets written each way (nothing else in the files).
    pub vlen_file_bytes: u64,
    pub flat_file_bytes: u64,
    /// Reading one clip's face and scene files, best of `repeats` passes over every clip.
    pub vlen_us_per_clip: f64,
    pub flat_us_per_clip: f64,
}

/// The files of every row of the JPEG shards in `dir`: `[clip][stream][frame]`.
type Rows = Vec<[Vec<Vec<u8>>; 2]>;

fn read_shards(dir: &Path) -> Result<Rows> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot read shard folder", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "h5"))
        .collect();
    paths.sort();
    let mut rows = Rows::new();
    for p in paths {
        let r = ShardReader::open(&p)?;
        if r.attrs.pixels.encoding != Encoding::Jpeg {
            return Err(UsageError::new(format!("{}: not a JPEG shard", p.display())).into());
        }
        for i in 0..r.len {
            let (face, scene) = r.jpeg_frames(i)?;
            rows.push([face, scene]);
        }
    }
    if rows.is_empty() {
        return Err(UsageError::new(format!("{}: no JPEG shard rows", dir.display())).into());
    }
    Ok(rows)
}

const STREAMS: [&str; 2] = ["face", "scene"];

fn write_vlen(path: &Path, rows: &Rows) -> Result<()> {
    let f = File::create(path)?;
    let t = rows[0][0].len();
    for (s, name) in STREAMS.iter().enumerate() {
        let ds = f.new_dataset::<VarLenArray<u8>>().shape([rows.len(), t]).chunk([1, t]).create(*name)?;
        let data: Vec<VarLenArray<u8>> =
            rows.iter().flat_map(|r| r[s].iter().map(|b| VarLenArray::from_slice(b))).collect();
        ds.write_raw(&data)?;
    }
    Ok(())
}

fn write_flat(path: &Path, rows: &Rows) -> Result<()> {
    let f = File::create(path)?;
    let t = rows[0][0].len();
    for (s, name) in STREAMS.iter().enumerate() {
        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(rows.len() * (t + 1));
        for r in rows {
            offsets.push(bytes.len() as i64);
            for b in &r[s] {
                bytes.extend_from_slice(b);
                offsets.push(bytes.len() as i64);
            }
        }
        let per_clip = (bytes.len() / rows.len()).max(1);
        let ds =
            f.new_dataset::<u8>().shape([bytes.len()]).chunk([per_clip]).create(format!("{name}_bytes").as_str())?;
        ds.write_raw(&bytes)?;
        let off = f
            .new_dataset::<i64>()
            .shape([rows.len(), t + 1])
            .chunk([1, t + 1])
            .create(format!("{name}_offsets").as_str())?;
        off.write_raw(&offsets)?;
    }
    Ok(())
}

/// Reads row `i` of both streams from a vlen file; returns the bytes read.
fn read_vlen(f: &File, i: usize) -> Result<usize> {
    let mut n = 0;
    for name in STREAMS {
        let row: ndarray::Array2<VarLenArray<u8>> = f.dataset(name)?.read_slice(ndarray::s![i..i + 1, ..])?;
        n += row.iter().map(|b| b.as_slice().to_vec().len()).sum::<usize>();
    }
    Ok(n)
}

/// Reads row `i` of both streams from a flat file (offsets row, then one slice of bytes).
fn read_flat(f: &File, i: usize) -> Result<usize> {
    let mut n = 0;
    for name in STREAMS {
        let off: ndarray::Array2<i64> = f.dataset(&format!("{name}_offsets"))?.read_slice(ndarray::s![i..i + 1, ..])?;
        let (a, b) = (off[[0, 0]] as usize, off[[0, off.ncols() - 1]] as usize);
        let bytes: ndarray::Array1<u8> = f.dataset(&format!("{name}_bytes"))?.read_slice(ndarray::s![a..b])?;
        let all = bytes.as_slice().expect("a contiguous array");
        let ends: Vec<usize> = off.row(0).iter().map(|&o| o as usize - a).collect();
        let frames: Vec<&[u8]> = ends.windows(2).map(|w| &all[w[0]..w[1]]).collect();
        n += frames.iter().map(|f| f.len()).sum::<usize>();
    }
    Ok(n)
}

/// Best time of `repeats` passes of `read` over every row, in µs per row; checks every pass
/// reads `expected` bytes.
fn time_reads(
    path: &Path,
    rows: usize,
    repeats: usize,
    expected: u64,
    read: fn(&File, usize) -> Result<usize>,
) -> Result<f64> {
    let f = File::open(path)?;
    let mut best = f64::INFINITY;
    for _ in 0..repeats {
        let started = Instant::now();
        let mut n = 0u64;
        for i in 0..rows {
            n += read(&f, i)? as u64;
        }
        best = best.min(started.elapsed().as_secs_f64());
        anyhow::ensure!(n == expected, "{}: read {n} bytes, wrote {expected}", path.display());
    }
    Ok(best / rows as f64 * 1e6)
}

/// Writes the frames of the JPEG shards in `shards` both ways into `work` and times reading them.
pub(crate) fn time_layouts(shards: &Path, work: &Path, repeats: usize) -> Result<LayoutTiming> {
    let rows = read_shards(shards)?;
    std::fs::create_dir_all(work).with_context(|| format!("{}: cannot create", work.display()))?;
    let (vlen, flat) = (work.join("vlen.h5"), work.join("flat.h5"));
    write_vlen(&vlen, &rows)?;
    write_flat(&flat, &rows)?;
    let jpeg_bytes: u64 = rows.iter().flat_map(|r| r.iter().flatten()).map(|b| b.len() as u64).sum();
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).with_context(|| format!("{}", p.display()));
    Ok(LayoutTiming {
        clips: rows.len(),
        frames: rows.iter().map(|r| r[0].len() + r[1].len()).sum(),
        jpeg_bytes,
        vlen_file_bytes: size(&vlen)?,
        flat_file_bytes: size(&flat)?,
        vlen_us_per_clip: time_reads(&vlen, rows.len(), repeats, jpeg_bytes, read_vlen)?,
        flat_us_per_clip: time_reads(&flat, rows.len(), repeats, jpeg_bytes, read_flat)?,
    })
}
