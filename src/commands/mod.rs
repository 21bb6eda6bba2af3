//! One module per subcommand: its clap arguments and its `run`, which returns an [`Outcome`]
//! (exit 0 or 1) or an error (exit 2).
//!
//! [`Outcome`]: crate::error::Outcome

pub mod embed;
pub mod eval;
pub mod inspect;
pub mod manifest;
pub mod prep;
pub mod report;
pub mod synth;
pub mod train;
