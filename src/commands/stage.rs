//! What a pipeline stage runs: the subcommands a stage may name, parsed from its command line
//! with their own clap arguments and run in this process. Shared by `dfer run` and
//! `dfer inspect PIPELINE.toml` (not a command itself).

use std::path::Path;

use anyhow::Result;
use clap::Parser;

use super::{embed, eval, manifest, prep, report, synth, train};
use crate::error::{Outcome, UsageError};
use crate::pipeline::Pipeline;

/// The subcommands a pipeline stage can run.
#[derive(Parser)]
#[command(name = "dfer", no_binary_name = true)]
enum StageCommand {
    Synth(synth::Args),
    Manifest(manifest::Args),
    Prep(prep::Args),
    Embed(embed::Args),
    Train(train::Args),
    Eval(eval::Args),
    Report(report::Args),
}

fn parse(argv: &[String]) -> Result<StageCommand> {
    StageCommand::try_parse_from(argv).map_err(|e| {
        let text = e.to_string();
        UsageError::new(text.trim_end().trim_start_matches("error: ")).into()
    })
}

/// Runs one stage's command line (without `dfer`).
pub(crate) fn exec(argv: &[String]) -> Result<Outcome> {
    match parse(argv)? {
        StageCommand::Synth(a) => synth::run(&a),
        StageCommand::Manifest(a) => manifest::run(&a),
        StageCommand::Prep(a) => prep::run(&a),
        StageCommand::Embed(a) => embed::run(&a),
        StageCommand::Train(a) => train::run(&a),
        StageCommand::Eval(a) => eval::run(&a),
        StageCommand::Report(a) => report::run(&a),
    }
}

/// Reads a pipeline and checks every stage's command line, so a misspelt key fails before
/// anything runs.
pub(crate) fn load(file: &Path, sets: &[String]) -> Result<Pipeline> {
    let p = Pipeline::load(file, sets)?;
    for s in &p.stages {
        parse(&s.argv).map_err(|e| UsageError::new(format!("{}: [{}] {e}", file.display(), s.kind.section())))?;
    }
    Ok(p)
}
