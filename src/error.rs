//! Error kinds that decide the process exit code: 0 ok, 1 some clips failed, 2 refused (bad
//! usage or unusable input, nothing written), 3 failed while running (see README "Exit codes").

use std::fmt;

/// Bad usage or unusable input: the run cannot start (exit code 2). The message names the
/// file and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(String);

impl UsageError {
    pub(crate) fn new(msg: impl Into<String>) -> Self {
        UsageError(msg.into())
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// What a finished command reports: all good, or some items failed and were recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    SomeFailed,
}

/// Exit code of a refusal: a [`UsageError`] anywhere in the error's chain.
pub(crate) const EXIT_REFUSED: u8 = 2;
/// Exit code of any other error: the command failed while running (a full disk, an I/O error,
/// a corrupt file met part-way).
pub(crate) const EXIT_FAILED: u8 = 3;

/// Whether `e` is a refusal: a [`UsageError`] raised, possibly under added context.
pub(crate) fn is_refusal(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<UsageError>())
}

/// Exit code for a command's result.
pub fn exit_code(result: &anyhow::Result<Outcome>) -> u8 {
    match result {
        Ok(Outcome::Ok) => 0,
        Ok(Outcome::SomeFailed) => 1,
        Err(e) if is_refusal(e) => EXIT_REFUSED,
        Err(_) => EXIT_FAILED,
    }
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    use super::*;

    #[test]
    fn refusals_exit_2_under_context_and_other_errors_exit_3() {
        let refused: anyhow::Result<Outcome> = Err(UsageError::new("x.toml: bad")).context("reading the pipeline");
        assert_eq!(exit_code(&refused), 2);
        let io = std::fs::read("/nonexistent/dfer-test").context("reading");
        assert_eq!(exit_code(&io.map(|_| Outcome::Ok)), 3);
        assert_eq!(exit_code(&Err(anyhow::anyhow!("disk full"))), 3);
        assert_eq!(exit_code(&Ok(Outcome::SomeFailed)), 1);
        assert_eq!(exit_code(&Ok(Outcome::Ok)), 0);
    }
}
