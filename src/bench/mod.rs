//! Developer measurements (`dfer bench`), kept out of the domain modules, which expose what is
//! measured and nothing about measuring: timed training steps and their per-section and
//! per-module profile, the training loader's throughput, the face detector's cost per input
//! size, and CLIP features for the parity check
//! against `transformers`. (The shard-layout bench stays in `src/shard/layout.rs`: it writes HDF5,
//! which only `src/shard/` touches.)

pub(crate) mod clip_features;
#[cfg(feature = "media")]
pub mod detector;
pub(crate) mod loader;
pub(crate) mod profile;
pub(crate) mod train_step;
