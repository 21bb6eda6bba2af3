//! dfer: dynamic facial expression recognition research tool. Dataset descriptions and clip
//! manifests, synthetic datasets, and (in later stages) face/scene preprocessing and OUS training.

pub mod assets;
pub mod commands;
pub mod dataset;
pub mod error;
pub mod face;
pub mod logging;
pub mod manifest;
pub mod prep;
pub mod shard;
pub mod synth;
pub mod video;
