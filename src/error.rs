//! Error kinds that decide the process exit code: 0 ok, 1 some clips failed, 2 bad usage or
//! unusable input (see README "Exit codes").

use std::fmt;

/// Bad usage or unusable input: the run cannot start (exit code 2). The message names the
/// file and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(String);

impl UsageError {
    pub fn new(msg: impl Into<String>) -> Self {
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

/// Exit code for a command's result: any error that stopped the command gives 2.
pub fn exit_code(result: &anyhow::Result<Outcome>) -> u8 {
    match result {
        Ok(Outcome::Ok) => 0,
        Ok(Outcome::SomeFailed) => 1,
        Err(_) => 2,
    }
}
