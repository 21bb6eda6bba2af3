//! A prep output folder and the name of every file in it: `prep_config.toml` (the resolved
//! settings, its first line a `# config_hash = "…"` comment), `prep_plan.json` (what the
//! folder is meant to hold), `shards/NNNNN.h5` with its table `shards/NNNNN.parquet`, and
//! `prep.parquet` (every shard's table, written when all are complete).

use std::path::{Path, PathBuf};

use crate::shard::shard_name;

/// A prep output folder; only paths, nothing is read or written by making one.
#[derive(Debug, Clone)]
pub(crate) struct PrepDir {
    root: PathBuf,
}

impl PrepDir {
    pub(crate) fn new(root: &Path) -> Self {
        Self { root: root.to_path_buf() }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.root
    }

    /// `shards/`: the HDF5 shards and their tables.
    pub(crate) fn shards(&self) -> PathBuf {
        self.root.join("shards")
    }

    /// `prep_config.toml`: the settings the folder was made with ([`config_record`]).
    pub(crate) fn config_record(&self) -> PathBuf {
        self.root.join("prep_config.toml")
    }

    /// `prep_plan.json`: manifest rows, clips per shard, shard count.
    pub(crate) fn plan(&self) -> PathBuf {
        self.root.join("prep_plan.json")
    }

    /// `prep.parquet`: the merged prep table.
    pub(crate) fn table(&self) -> PathBuf {
        self.root.join("prep.parquet")
    }
}

/// Shard `k` in the shards folder `shards`: its HDF5 file and its prep table.
pub(crate) fn shard_files(shards: &Path, k: usize) -> (PathBuf, PathBuf) {
    let h5 = shards.join(shard_name(k));
    (h5.clone(), h5.with_extension("parquet"))
}

/// The text of `prep_config.toml`: the hash comment, then the settings.
pub(crate) fn config_record(config_hash: &str, config_toml: &str) -> String {
    format!("# config_hash = \"{config_hash}\"\n{config_toml}")
}

/// The config hash on the first line of a `prep_config.toml` text; empty when it has none.
pub(crate) fn recorded_hash(record: &str) -> &str {
    record
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# config_hash = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_gives_back_its_hash() {
        let text = config_record("ab12", "frames = 16\n");
        assert_eq!(text, "# config_hash = \"ab12\"\nframes = 16\n");
        assert_eq!(recorded_hash(&text), "ab12");
        assert_eq!(recorded_hash("frames = 16\n"), "");
    }
}
