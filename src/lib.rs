//! dfer: dynamic facial expression recognition research tool. Dataset descriptions and clip
//! manifests, synthetic datasets, face/scene preprocessing into shards, and OUS training and evaluation.

pub mod assets;
pub mod atomic;
pub mod clip_status;
pub mod commands;
pub mod dataset;
pub mod error;
pub mod eval;
pub mod face;
pub mod logging;
pub mod manifest;
pub mod metrics;
pub mod model;
#[cfg(feature = "media")]
pub mod pipeline;
#[cfg(feature = "media")]
pub mod prep;
pub mod shard;
pub mod synth;
mod text_enum;
pub mod train;
pub mod video;
pub mod weights;
