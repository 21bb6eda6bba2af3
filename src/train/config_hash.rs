//! The hash of a resolved training config, and what "the same settings" means for a resumed run.
//!
//! The saved `config.toml` holds every setting. The hash is taken over a versioned input instead:
//! schema 1, the settings the first release wrote ([`SCHEMA_1`]), always, and any other setting
//! only when it differs from its default. A setting added later therefore leaves the hash of every
//! config that does not use it as it was, with nothing to mark on the setting itself.

use anyhow::{Context, Result};

/// The settings of schema 1 (dotted paths): in the hash input whatever their value.
const SCHEMA_1: &[&str] = &[
    "data.manifest",
    "data.shards",
    "data.fold",
    "data.features",
    "model.arch",
    "model.n_ctx",
    "model.frame_encoder_layers",
    "model.heads",
    "model.polarity_blocks",
    "model.fusion_blocks",
    "model.fusion_queries",
    "model.sim_dim",
    "model.use_scene",
    "model.use_polarity",
    "model.tokenizer",
    "model.clip_weights",
    "model.seed",
    "loss.sim",
    "loss.pol",
    "loss.global",
    "train.device",
    "train.epochs",
    "train.batch_size",
    "train.lr",
    "train.lr_prompts",
    "train.finetune_image",
    "train.lr_image",
    "train.weight_decay",
    "train.warmup_epochs",
    "train.min_lr_ratio",
    "train.grad_clip",
    "train.seed",
    "train.loader_threads",
    "train.prefetch",
    "aug.crop_area",
    "aug.crop_aspect",
    "aug.flip",
    "aug.jitter",
];

/// The schema-1 hash input of a config: `full` is its TOML with every setting, `defaults` the
/// TOML of a config left at every default. Both are written by the same serialiser, so the text
/// kept is exactly what schema 1 wrote.
pub(crate) fn schema_1_input(full: &str, defaults: &str) -> Result<String> {
    let values: toml::Table = toml::from_str(full).context("reading back the serialised config")?;
    let defaults: toml::Table = toml::from_str(defaults).context("reading back the default config")?;
    let mut doc: toml_edit::DocumentMut = full.parse().context("reading back the serialised config")?;
    leave_out_defaults(doc.as_table_mut(), &values, Some(&defaults), "");
    Ok(doc.to_string())
}

/// Removes from `table` every setting outside [`SCHEMA_1`] whose value is its default.
fn leave_out_defaults(table: &mut toml_edit::Table, values: &toml::Table, defaults: Option<&toml::Table>, at: &str) {
    for (key, value) in values {
        let path = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
        let default = defaults.and_then(|d| d.get(key));
        match (value, table.get_mut(key)) {
            (toml::Value::Table(inner), Some(toml_edit::Item::Table(sub))) => {
                leave_out_defaults(sub, inner, default.and_then(toml::Value::as_table), &path)
            }
            _ if !SCHEMA_1.contains(&path.as_str()) && default == Some(value) => {
                table.remove(key);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: &str = "[data]\nmanifest = \"m\"\n\n[model]\nratio = 0.25\nseed = 0\n\n[train]\nepochs = 20\ndrop_last = false\nmilestones = []\n";

    #[test]
    fn later_settings_at_their_default_are_left_out_and_schema_1_settings_never() {
        let at_defaults = schema_1_input(DEFAULTS, DEFAULTS).unwrap();
        assert_eq!(at_defaults, "[data]\nmanifest = \"m\"\n\n[model]\nseed = 0\n\n[train]\nepochs = 20\n");
        let set = DEFAULTS.replace("ratio = 0.25", "ratio = 0.5").replace("milestones = []", "milestones = [3]");
        let kept = schema_1_input(&set, DEFAULTS).unwrap();
        assert_eq!(
            kept,
            "[data]\nmanifest = \"m\"\n\n[model]\nratio = 0.5\nseed = 0\n\n[train]\nepochs = 20\nmilestones = [3]\n"
        );
    }
}
