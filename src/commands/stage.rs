//! What a pipeline stage runs: one of `dfer`'s subcommands that a stage may be
//! ([`Command::stage_kind`]), parsed from its command line and run in this process. Shared by `dfer run` and
//! `dfer inspect PIPELINE.toml` (not a command itself).

use std::path::Path;

use anyhow::{bail, Result};
use clap::Parser;

use super::Command;
use crate::error::{Outcome, UsageError};
use crate::pipeline::Pipeline;

/// A stage's command line: one of `dfer`'s subcommands ([`Command`]).
#[derive(Parser)]
#[command(name = "dfer", no_binary_name = true)]
struct StageLine {
    #[command(subcommand)]
    command: Command,
}

/// The stage's subcommand, refused unless a pipeline stage can run it.
fn parse(argv: &[String]) -> Result<Command> {
    let line = StageLine::try_parse_from(argv).map_err(|e| {
        let text = e.to_string();
        UsageError::new(text.trim_end().trim_start_matches("error: "))
    })?;
    match line.command.stage_kind() {
        Some(_) => Ok(line.command),
        None => bail!(UsageError::new(format!("dfer {} is not a pipeline stage", argv.first().map_or("", |s| s)))),
    }
}

/// Runs one stage's command line (without `dfer`).
pub(crate) fn exec(argv: &[String]) -> Result<Outcome> {
    super::run(&parse(argv)?)
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;
    use crate::pipeline::StageKind;

    /// Every stage kind is a subcommand whose parsed form says it is that kind, and a
    /// subcommand that is no stage is refused.
    #[test]
    fn stage_kinds_are_subcommands() {
        let names: Vec<String> = StageLine::command().get_subcommands().map(|c| c.get_name().to_string()).collect();
        for k in StageKind::ALL {
            assert!(names.iter().any(|n| n == k.as_str()), "{k} is not a subcommand: {names:?}");
        }
        let report = parse(&["report".into(), "runs/a".into()]).unwrap();
        assert_eq!(report.stage_kind(), Some(StageKind::Report));
        let Err(e) = parse(&["verify".into(), "prep".into()]) else { panic!("verify is no stage") };
        assert!(format!("{e:#}").contains("dfer verify is not a pipeline stage"), "{e:#}");
    }
}
