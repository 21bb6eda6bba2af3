//! One module per subcommand: its clap arguments and its `run`, which returns an [`Outcome`]
//! (exit 0 or 1) or an error (exit 2 for a refusal, 3 for a failure while running); [`Command`],
//! the list of them all, and [`run`], which dispatches.
//!
//! [`Outcome`]: crate::error::Outcome

pub mod bench;
pub mod embed;
pub mod eval;
pub mod inspect;
#[cfg(feature = "media")]
pub mod manifest;
#[cfg(feature = "media")]
pub mod prep;
pub mod report;
#[cfg(feature = "media")]
pub mod run;
#[cfg(feature = "media")]
pub(crate) mod stage;
pub mod synth;
pub mod train;
#[cfg(feature = "media")]
pub mod verify;
pub mod weights;

use anyhow::Result;

use crate::error::Outcome;
#[cfg(feature = "media")]
use crate::pipeline::StageKind;

/// Every subcommand of `dfer`, the one list: a pipeline stage runs one of them too
/// ([`Command::stage_kind`]).
#[derive(clap::Subcommand)]
pub enum Command {
    /// Build a clip manifest (clips.parquet) from a dataset root and its split files.
    #[cfg(feature = "media")]
    Manifest(manifest::Args),
    /// Turn a clip manifest into HDF5 shards of face crops and masked scene frames.
    #[cfg(feature = "media")]
    Prep(prep::Args),
    /// Summarise a dfer artefact: clip manifest, prep table, shard, run folder or pipeline file.
    Inspect(inspect::Args),
    /// Write a synthetic dataset in an official layout (DFEW, FERV39k, MAFW).
    Synth(synth::Args),
    /// Train one fold from prep's shards (model.method: OUS, DFER-CLIP, IAL or FineCLIPER).
    Train(train::Args),
    /// Evaluate a training run: UAR, WAR, per-class recall, confusion matrix (CSV + PNG).
    Eval(eval::Args),
    /// Average several runs (e.g. five folds) at the best and the last epoch.
    Report(report::Args),
    /// Cache the frozen image tower's features so training runs only the light modules.
    Embed(embed::Args),
    /// Developer measurements: CLIP parity features, the loader, the JPEG shard layout, timed training steps.
    Bench(bench::Args),
    /// Run a pipeline file: manifest → prep → train → eval → report, skipping what is up to date.
    #[cfg(feature = "media")]
    Run(run::Args),
    /// Check a prep output: every shard present, complete and readable; which to redo.
    #[cfg(feature = "media")]
    Verify(verify::Args),
    /// CLIP weights from the Hugging Face Hub, into Hugging Face's cache.
    Weights(weights::Args),
}

impl Command {
    /// The pipeline stage this subcommand is, if a stage can run it.
    #[cfg(feature = "media")]
    pub(crate) fn stage_kind(&self) -> Option<StageKind> {
        match self {
            Command::Synth(_) => Some(StageKind::Synth),
            Command::Manifest(_) => Some(StageKind::Manifest),
            Command::Prep(_) => Some(StageKind::Prep),
            Command::Embed(_) => Some(StageKind::Embed),
            Command::Train(_) => Some(StageKind::Train),
            Command::Eval(_) => Some(StageKind::Eval),
            Command::Report(_) => Some(StageKind::Report),
            Command::Inspect(_) | Command::Bench(_) | Command::Run(_) | Command::Verify(_) | Command::Weights(_) => {
                None
            }
        }
    }
}

/// Runs a subcommand.
pub fn run(command: &Command) -> Result<Outcome> {
    match command {
        #[cfg(feature = "media")]
        Command::Manifest(a) => manifest::run(a),
        #[cfg(feature = "media")]
        Command::Prep(a) => prep::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Synth(a) => synth::run(a),
        Command::Train(a) => train::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Report(a) => report::run(a),
        Command::Embed(a) => embed::run(a),
        Command::Bench(a) => bench::run(a),
        #[cfg(feature = "media")]
        Command::Run(a) => run::run(a),
        #[cfg(feature = "media")]
        Command::Verify(a) => verify::run(a),
        Command::Weights(a) => weights::run(a),
    }
}
