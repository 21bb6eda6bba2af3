//! Clip manifests (`clips.parquet`, docs/architecture.md §3.2): building one from a dataset description and
//! its split files (probing every source in parallel), and reading / writing it with polars.

#[cfg(feature = "media")]
mod build;
pub(crate) mod inspect;
pub(crate) mod prep_table;

#[cfg(feature = "media")]
pub(crate) use build::build;

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use polars::prelude::*;

use crate::clip_status::ClipStatus;
use crate::dataset::splits::{Diagnostic, Role};
use crate::dataset::{DatasetDesc, SourceKind};
use crate::error::UsageError;
use crate::video::ProbeInfo;

/// Manifest format version, stored in the file's key-value metadata.
pub(crate) const SCHEMA_VERSION: &str = "1";

/// Key-value metadata key that marks a prep table (`prep.parquet`, `shards/NNNNN.parquet`).
pub(crate) const PREP_TABLE_KEY: &str = "dfer.prep_table";

/// One clip of the manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipRow {
    pub clip_id: String,
    pub label: usize,
    /// Role per fold (fold k at index k-1), or one element for single-split datasets.
    pub roles: Vec<Option<Role>>,
    pub source_kind: SourceKind,
    /// Relative to the dataset root.
    pub source_path: String,
    pub probe: Option<ProbeInfo>,
    /// `Ok`, or why the clip cannot be used.
    pub status: ClipStatus,
    pub error: Option<String>,
}

/// A clip manifest: the dataset it describes, where its root was, and one row per clip.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub desc: DatasetDesc,
    pub root: PathBuf,
    /// Number of folds; 0 when there is a single `split` column.
    pub folds: u32,
    pub rows: Vec<ClipRow>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Column names of the fold roles (`fold_1_role`, ...) or `split`.
pub(crate) fn role_columns(folds: u32) -> Vec<String> {
    if folds == 0 {
        vec!["split".to_string()]
    } else {
        (1..=folds).map(|k| format!("fold_{k}_role")).collect()
    }
}

impl Manifest {
    /// Rows whose status is not `ok`.
    pub fn problem_count(&self) -> usize {
        self.rows.iter().filter(|r| !r.status.is_ok()).count()
    }

    /// The manifest as a polars DataFrame with the columns of docs/architecture.md §3.2.
    pub(crate) fn to_frame(&self) -> PolarsResult<DataFrame> {
        let r = &self.rows;
        let s = |f: &dyn Fn(&ClipRow) -> String| r.iter().map(f).collect::<Vec<String>>();
        let p =
            |f: &dyn Fn(&ProbeInfo) -> Option<f64>| r.iter().map(|x| x.probe.as_ref().and_then(f)).collect::<Vec<_>>();
        let u = |f: &dyn Fn(&ProbeInfo) -> u32| r.iter().map(|x| x.probe.as_ref().map(f)).collect::<Vec<_>>();
        let mut cols = vec![
            Column::new("clip_id".into(), s(&|x| x.clip_id.clone())),
            Column::new("dataset".into(), s(&|_| self.desc.name.clone())),
            Column::new("label".into(), r.iter().map(|x| x.label as i64).collect::<Vec<_>>()),
            Column::new("label_name".into(), s(&|x| self.desc.labels[x.label].clone())),
        ];
        for (k, name) in role_columns(self.folds).into_iter().enumerate() {
            let v: Vec<Option<&str>> = r.iter().map(|x| x.roles.get(k).copied().flatten().map(Role::as_str)).collect();
            cols.push(Column::new(name.into(), v));
        }
        cols.extend([
            Column::new("source_kind".into(), s(&|x| x.source_kind.as_str().to_string())),
            Column::new("source_path".into(), s(&|x| x.source_path.clone())),
            Column::new("n_frames".into(), u(&|p| p.n_frames)),
            Column::new("fps".into(), p(&|p| p.fps)),
            Column::new("width".into(), u(&|p| p.width)),
            Column::new("height".into(), u(&|p| p.height)),
            Column::new("duration_s".into(), p(&|p| p.duration_s)),
            Column::new("rotation".into(), r.iter().map(|x| x.probe.as_ref().map(|p| p.rotation)).collect::<Vec<_>>()),
            Column::new("status".into(), s(&|x| x.status.as_str().to_string())),
            Column::new("error".into(), r.iter().map(|x| x.error.clone()).collect::<Vec<_>>()),
        ]);
        DataFrame::new_infer_height(cols)
    }

    /// Writes the manifest atomically (temporary file, then rename).
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut df = self.to_frame()?;
        let meta = vec![
            kv("dfer.schema", SCHEMA_VERSION),
            kv("dfer.dataset_toml", &self.desc.to_toml()),
            kv("dfer.root", &self.root.to_string_lossy()),
            kv("dfer.folds", &self.folds.to_string()),
            kv("dfer.diagnostics", &serde_json::to_string(&self.diagnostics)?),
        ];
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create folder", dir.display()))?;
        }
        write_parquet(&mut df, meta, path)?;
        Ok(())
    }

    /// Reads a manifest written by [`Manifest::write`].
    pub fn read(path: &Path) -> Result<Manifest> {
        let (df, meta) = read_parquet(path)?;
        let get = |k: &str| -> Result<String> {
            meta.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).ok_or_else(|| {
                UsageError::new(format!("{}: not a dfer clip manifest (no '{k}' metadata)", path.display())).into()
            })
        };
        let schema = get("dfer.schema")?;
        if schema != SCHEMA_VERSION {
            return Err(UsageError::new(format!(
                "{}: manifest schema {schema}, this dfer reads {SCHEMA_VERSION}",
                path.display()
            ))
            .into());
        }
        let desc = DatasetDesc::parse(&get("dfer.dataset_toml")?, path)?;
        let folds: u32 = get("dfer.folds")?
            .parse()
            .map_err(|_| UsageError::new(format!("{}: bad dfer.folds metadata", path.display())))?;
        let diagnostics: Vec<Diagnostic> = serde_json::from_str(&get("dfer.diagnostics")?)?;
        let root = PathBuf::from(get("dfer.root")?);
        let rows = rows_from_frame(&df, folds).with_context(|| format!("{}: malformed manifest", path.display()))?;
        Ok(Manifest { desc, root, folds, rows, diagnostics })
    }
}

fn kv(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

/// Writes `df` with key-value metadata to `path`, whole or not at all.
pub(crate) fn write_parquet(df: &mut DataFrame, meta: Vec<(String, String)>, path: &Path) -> Result<()> {
    crate::atomic::write_via_tmp(path, |tmp| {
        let file = File::create(tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
        ParquetWriter::new(file)
            .with_key_value_metadata(Some(KeyValueMetadata::from_static(meta)))
            .finish(df)
            .map_err(|e| anyhow::anyhow!("{}: cannot write parquet: {e}", tmp.display()))?;
        Ok(())
    })
}

/// Reads a parquet file and its key-value metadata.
pub fn read_parquet(path: &Path) -> Result<(DataFrame, Vec<(String, String)>)> {
    let file = File::open(path).map_err(|e| UsageError::new(format!("{}: cannot open: {e}", path.display())))?;
    let mut reader = ParquetReader::new(file);
    let meta = reader
        .get_metadata()
        .map_err(|e| UsageError::new(format!("{}: not a parquet file: {e}", path.display())))?
        .key_value_metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|kv| (kv.key, kv.value.unwrap_or_default()))
        .collect();
    let df = reader.finish().map_err(|e| UsageError::new(format!("{}: cannot read parquet: {e}", path.display())))?;
    Ok((df, meta))
}

fn rows_from_frame(df: &DataFrame, folds: u32) -> Result<Vec<ClipRow>> {
    let strs = |n: &str| -> Result<Vec<Option<String>>> {
        Ok(df.column(n)?.str()?.iter().map(|v| v.map(str::to_string)).collect())
    };
    let u32s = |n: &str| -> Result<Vec<Option<u32>>> { Ok(df.column(n)?.u32()?.iter().collect()) };
    let f64s = |n: &str| -> Result<Vec<Option<f64>>> { Ok(df.column(n)?.f64()?.iter().collect()) };
    let ids = strs("clip_id")?;
    let labels: Vec<Option<i64>> = df.column("label")?.i64()?.iter().collect();
    let roles: Vec<Vec<Option<String>>> = role_columns(folds).iter().map(|c| strs(c)).collect::<Result<_>>()?;
    let kinds = strs("source_kind")?;
    let paths = strs("source_path")?;
    let (n_frames, fps, width, height, dur) =
        (u32s("n_frames")?, f64s("fps")?, u32s("width")?, u32s("height")?, f64s("duration_s")?);
    let rotation: Vec<Option<i32>> = df.column("rotation")?.i32()?.iter().collect();
    let status = strs("status")?;
    let error = strs("error")?;
    (0..df.height())
        .map(|i| {
            let kind: SourceKind =
                kinds[i].as_deref().context("null source_kind")?.parse().map_err(anyhow::Error::msg)?;
            let probe = match (n_frames[i], width[i], height[i]) {
                (Some(n), Some(w), Some(h)) => Some(ProbeInfo {
                    n_frames: n,
                    fps: fps[i],
                    width: w,
                    height: h,
                    duration_s: dur[i],
                    rotation: rotation[i].unwrap_or(0),
                }),
                _ => None,
            };
            let role = |c: &Vec<Option<String>>| c[i].as_deref().and_then(|r| r.parse::<Role>().ok());
            Ok(ClipRow {
                clip_id: ids[i].clone().context("null clip_id")?,
                label: labels[i].context("null label")? as usize,
                roles: roles.iter().map(role).collect(),
                source_kind: kind,
                source_path: paths[i].clone().context("null source_path")?,
                probe,
                status: status[i].as_deref().context("null status")?.parse().map_err(anyhow::Error::msg)?,
                error: error[i].clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parquet_round_trip_keeps_rows_and_metadata() {
        let desc = DatasetDesc::load("ferv39k").unwrap();
        let rows = vec![
            ClipRow {
                clip_id: "Action/Happy/0001".into(),
                label: 3,
                roles: vec![Some(Role::Train)],
                source_kind: SourceKind::Video,
                source_path: "0_7_LabelClips/Action/Happy/0001.mp4".into(),
                probe: Some(ProbeInfo {
                    n_frames: 40,
                    fps: Some(25.0),
                    width: 640,
                    height: 360,
                    duration_s: Some(1.6),
                    rotation: 90,
                }),
                status: ClipStatus::Ok,
                error: None,
            },
            ClipRow {
                clip_id: "War/Fear/0002".into(),
                label: 2,
                roles: vec![Some(Role::Test)],
                source_kind: SourceKind::Video,
                source_path: "0_7_LabelClips/War/Fear/0002.mp4".into(),
                probe: None,
                status: ClipStatus::Missing,
                error: Some("no such file".into()),
            },
        ];
        let diagnostics = vec![Diagnostic {
            file: "a.csv".into(),
            line: Some(3),
            severity: crate::dataset::splits::Severity::Error,
            message: "bad".into(),
        }];
        let m = Manifest {
            desc,
            root: PathBuf::from("/data/ferv"),
            folds: 0,
            rows: rows.clone(),
            diagnostics: diagnostics.clone(),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clips.parquet");
        m.write(&path).unwrap();
        let back = Manifest::read(&path).unwrap();
        assert_eq!(back.rows, rows);
        assert_eq!(back.diagnostics, diagnostics);
        assert_eq!(back.root, PathBuf::from("/data/ferv"));
        assert_eq!(back.desc.labels, m.desc.labels);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }

    #[test]
    fn reading_a_foreign_parquet_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.parquet");
        let mut df = df!("a" => [1i64, 2]).unwrap();
        ParquetWriter::new(File::create(&path).unwrap()).finish(&mut df).unwrap();
        let e = Manifest::read(&path).unwrap_err().to_string();
        assert!(e.contains("other.parquet") && e.contains("not a dfer clip manifest"), "{e}");
        std::fs::write(&path, b"not parquet at all").unwrap();
        let e = Manifest::read(&path).unwrap_err().to_string();
        assert!(e.contains("other.parquet") && e.contains("not a parquet file"), "{e}");
    }
}
