//! One module per subcommand: its clap arguments and its `run`, which returns an [`Outcome`]
//! (exit 0 or 1) or an error (exit 2 for a refusal, 3 for a failure while running).
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
