//! The feature cache file (`features.h5`, written by `dfer embed`): per clip and view, the frozen
//! image tower's per-frame face and scene features and the polarity encoder's early-block
//! features. Fixed-size float32 datasets, one chunk per clip and view, written under a
//! temporary name and renamed when complete.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{ensure, Context, Result};
use hdf5::types::VarLenUnicode;
use hdf5::File;
use ndarray::{s, ArrayView2};

use crate::atomic::tmp_path;
use crate::error::UsageError;

pub(crate) const FEATURES_SCHEMA: u32 = 1;

/// What the cached features depend on and how big they are.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FeatureAttrs {
    /// Hash of the shards the features were computed from.
    pub data_hash: String,
    /// Hash of the image tower (arch, weights, options).
    pub model_hash: String,
    pub clips: usize,
    /// View 0 is the test transform; views 1.. are augmented.
    pub views: usize,
    pub frames: usize,
    pub embed: usize,
    /// Early blocks × image-tower width (0 × 0 when the polarity encoder is off).
    pub early: [usize; 2],
    /// Whether scene features are present.
    pub scene: bool,
}

/// Features of one clip in one view.
pub(crate) struct FeatureRow {
    pub face: Vec<f32>,
    pub scene: Vec<f32>,
    pub early: Vec<f32>,
}

pub(crate) struct FeatureWriter {
    tmp: PathBuf,
    path: PathBuf,
    file: File,
    attrs: FeatureAttrs,
}

fn shapes(a: &FeatureAttrs) -> [(&'static str, [usize; 4]); 3] {
    let scene_t = if a.scene { a.frames } else { 0 };
    [
        ("face", [a.clips, a.views, a.frames, a.embed]),
        ("scene", [a.clips, a.views, scene_t, a.embed]),
        ("early", [a.clips, a.views, a.early[0], a.early[1]]),
    ]
}

impl FeatureWriter {
    pub(crate) fn create(path: &Path, attrs: &FeatureAttrs, manifest_rows: &[i64]) -> Result<FeatureWriter> {
        ensure!(manifest_rows.len() == attrs.clips, "one manifest row per clip");
        let tmp = tmp_path(path);
        let file = File::with_options()
            .with_fcpl(|p| p.obj_track_times(false))
            .create(&tmp)
            .with_context(|| format!("{}: cannot create", tmp.display()))?;
        for (name, shape) in shapes(attrs) {
            let mut chunk = shape;
            chunk[0] = 1;
            chunk[1] = 1;
            let b = file.new_dataset::<f32>().shape(shape.to_vec()).obj_track_times(false);
            let b = if shape.iter().all(|&d| d > 0) { b.chunk(chunk.to_vec()) } else { b };
            b.create(name).with_context(|| format!("{}: creating {name}", tmp.display()))?;
        }
        file.new_dataset_builder().obj_track_times(false).with_data(manifest_rows).create("manifest_row")?;
        let put_u = |n: &str, v: u64| file.new_attr::<u64>().create(n).and_then(|a| a.write_scalar(&v));
        let put_s = |n: &str, v: &str| -> Result<()> {
            let v = VarLenUnicode::from_str(v).map_err(|e| anyhow::anyhow!("{e}"))?;
            file.new_attr::<VarLenUnicode>().create(n)?.write_scalar(&v)?;
            Ok(())
        };
        put_u("schema_version", u64::from(FEATURES_SCHEMA))?;
        put_u("views", attrs.views as u64)?;
        put_u("scene", attrs.scene as u64)?;
        put_s("data_hash", &attrs.data_hash)?;
        put_s("model_hash", &attrs.model_hash)?;
        Ok(FeatureWriter { tmp, path: path.to_path_buf(), file, attrs: attrs.clone() })
    }

    /// Writes clip `i`, view `v`.
    pub(crate) fn write(&self, i: usize, v: usize, row: &FeatureRow) -> Result<()> {
        for ((name, shape), data) in shapes(&self.attrs).into_iter().zip([&row.face, &row.scene, &row.early]) {
            if shape[2] * shape[3] == 0 {
                continue;
            }
            let a = ArrayView2::from_shape((shape[2], shape[3]), data)
                .with_context(|| format!("{name} features of clip {i} have {} values", data.len()))?;
            self.file.dataset(name)?.write_slice(&a, s![i, v, .., ..])?;
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> Result<PathBuf> {
        self.file.close().with_context(|| format!("{}: cannot write", self.tmp.display()))?;
        std::fs::rename(&self.tmp, &self.path)
            .with_context(|| format!("{}: cannot rename into place", self.path.display()))?;
        Ok(self.path)
    }
}

pub(crate) struct FeatureReader {
    pub path: PathBuf,
    file: File,
    pub attrs: FeatureAttrs,
    pub manifest_rows: Vec<i64>,
}

impl FeatureReader {
    pub(crate) fn open(path: &Path) -> Result<FeatureReader> {
        let bad = |m: String| UsageError::new(format!("{}: {m}", path.display()));
        let file = File::open(path).map_err(|e| bad(format!("not a readable feature cache: {e}")))?;
        let get_u = |n: &str| super::attr_u64(&file, n, path);
        let get_s = |n: &str| super::attr_string(&file, n, path);
        let version = get_u("schema_version")?;
        ensure!(
            version == u64::from(FEATURES_SCHEMA),
            bad(format!("feature cache schema {version}, this dfer reads {FEATURES_SCHEMA}"))
        );
        let dims = |n: &str| -> Result<Vec<usize>> {
            Ok(file.dataset(n).map_err(|_| bad(format!("dataset {n} is missing")))?.shape())
        };
        let (face, early) = (dims("face")?, dims("early")?);
        ensure!(face.len() == 4 && early.len() == 4, bad("face / early datasets are not 4-dimensional".into()));
        let manifest_rows = file
            .dataset("manifest_row")
            .and_then(|d| d.read_raw::<i64>())
            .map_err(|e| bad(format!("dataset manifest_row: {e}")))?;
        ensure!(manifest_rows.len() == face[0], bad("manifest_row and face disagree on the clip count".into()));
        let attrs = FeatureAttrs {
            data_hash: get_s("data_hash")?,
            model_hash: get_s("model_hash")?,
            clips: face[0],
            views: get_u("views")? as usize,
            frames: face[2],
            embed: face[3],
            early: [early[2], early[3]],
            scene: get_u("scene")? != 0,
        };
        Ok(FeatureReader { path: path.to_path_buf(), file, attrs, manifest_rows })
    }

    pub(crate) fn read(&self, i: usize, v: usize) -> Result<FeatureRow> {
        let get = |name: &str| -> Result<Vec<f32>> {
            let ds = self.file.dataset(name)?;
            let shape = ds.shape();
            if shape[2] * shape[3] == 0 {
                return Ok(vec![]);
            }
            let a: ndarray::Array2<f32> = ds
                .read_slice(s![i, v, .., ..])
                .with_context(|| format!("{}: reading {name} of clip {i} view {v}", self.path.display()))?;
            Ok(a.into_raw_vec_and_offset().0)
        };
        Ok(FeatureRow { face: get("face")?, scene: get("scene")?, early: get("early")? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_half_written_file_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("features.h5");
        let attrs = FeatureAttrs {
            data_hash: "d".into(),
            model_hash: "m".into(),
            clips: 2,
            views: 2,
            frames: 3,
            embed: 4,
            early: [2, 5],
            scene: true,
        };
        let w = FeatureWriter::create(&path, &attrs, &[7, 9]).unwrap();
        let row = |k: f32| FeatureRow {
            face: (0..12).map(|x| x as f32 + k).collect(),
            scene: (0..12).map(|x| -(x as f32) - k).collect(),
            early: (0..10).map(|x| x as f32 * k).collect(),
        };
        for i in 0..2 {
            for v in 0..2 {
                w.write(i, v, &row((i * 10 + v) as f32)).unwrap();
            }
        }
        assert!(FeatureReader::open(&path).is_err(), "not visible before finish");
        w.finish().unwrap();
        let r = FeatureReader::open(&path).unwrap();
        assert_eq!(r.attrs, attrs);
        assert_eq!(r.manifest_rows, vec![7, 9]);
        let got = r.read(1, 1).unwrap();
        let want = row(11.0);
        assert_eq!((got.face, got.scene, got.early), (want.face, want.scene, want.early));
    }
}
