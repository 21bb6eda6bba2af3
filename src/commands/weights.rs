//! `dfer weights fetch`: bring a CLIP checkpoint from the Hugging Face Hub into Hugging Face's
//! cache (or check the cached copy), so that training on a machine without network finds it.

use anyhow::{bail, Result};

use crate::error::{Outcome, UsageError};
use crate::weights::{self, WeightsSource};

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  dfer weights fetch openai/clip-vit-base-patch16\n  \
HF_HOME=/shared/hf dfer weights fetch hf:openai/clip-vit-base-patch16@main\n\n\
Files go to $HF_HOME/hub (default ~/.cache/huggingface/hub); HF_ENDPOINT names a mirror, HF_TOKEN a token.")]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// Fetch model.safetensors, config.json and tokenizer.json of a CLIP repository (checked
    /// against the hub's checksums) and print where they are.
    Fetch {
        /// owner/name, hf:owner/name or hf:owner/name@revision.
        repo: String,
    },
}

pub fn run(a: &Args) -> Result<Outcome> {
    match &a.what {
        What::Fetch { repo } => {
            let spec = if repo.starts_with("hf:") { repo.clone() } else { format!("hf:{repo}") };
            let source: WeightsSource = spec.parse().map_err(UsageError::new)?;
            if !matches!(source, WeightsSource::Hub { .. }) {
                bail!(UsageError::new(format!("{repo:?} is not a hub repository")));
            }
            let files = weights::resolve(&source)?;
            println!("weights    {}", files.weights.display());
            for (name, f) in [("config", &files.config), ("tokenizer", &files.tokenizer)] {
                match f {
                    Some(p) => println!("{name:<10} {}", p.display()),
                    None => println!("{name:<10} (none in the repository)"),
                }
            }
            println!("use it as: model.clip_weights = \"{source}\"");
        }
    }
    Ok(Outcome::Ok)
}
