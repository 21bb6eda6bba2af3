//! Prep tables as files (`prep.parquet`, `shards/NNNNN.parquet`): written with the metadata
//! key that marks them, and `dfer manifest merge`, which joins several into one in manifest
//! order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use polars::prelude::*;

use super::{read_parquet, write_parquet, PREP_TABLE_KEY};
use crate::error::UsageError;

/// A prep table (`prep.parquet` or a shard's own), marked as such in its metadata.
pub fn write_prep_table(df: &mut DataFrame, path: &Path) -> Result<()> {
    write_parquet(df, vec![(PREP_TABLE_KEY.to_string(), "1".to_string())], path)
}

/// `dfer manifest merge`: joins prep tables (at least one) into `output`, sorted by manifest
/// row. A manifest row present in two inputs is an error naming both files. Returns the row
/// count.
pub fn merge_tables(inputs: &[PathBuf], output: &Path) -> Result<usize> {
    let mut seen: BTreeMap<i64, PathBuf> = BTreeMap::new();
    let mut all: Option<DataFrame> = None;
    for path in inputs {
        let df = read_prep_table(path)?;
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
    let all = all.ok_or_else(|| UsageError::new("no prep tables to merge"))?;
    let mut all = all.sort(["manifest_row"], Default::default())?;
    write_prep_table(&mut all, output)?;
    Ok(all.height())
}

fn read_prep_table(path: &Path) -> Result<DataFrame> {
    let (df, meta) = read_parquet(path)?;
    if !meta.iter().any(|(k, _)| k == PREP_TABLE_KEY) {
        return Err(UsageError::new(format!("{}: not a prep table (prep.parquet)", path.display())).into());
    }
    Ok(df)
}
