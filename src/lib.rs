//! dfer: dynamic facial expression recognition research tool. Dataset descriptions and clip
//! manifests, synthetic datasets, face/scene preprocessing into shards, and OUS training and evaluation.
//!
//! Items are `pub(crate)` unless the binary, the integration tests or the fuzz targets use
//! them, so the compiler reports what nothing uses.

// The trainer-only build (no `media`: no ffmpeg, no ONNX Runtime) leaves prep's helpers in the
// shared modules (face geometry, the shard writer) unused; the full build checks them.
#![cfg_attr(not(feature = "media"), allow(dead_code))]

pub mod assets;
pub mod atomic;
pub(crate) mod bench;
pub mod clip_status;
pub mod commands;
pub mod dataset;
mod digest;
pub mod error;
pub mod eval;
pub mod face;
pub mod face_source;
pub mod geometry;
pub mod logging;
pub mod manifest;
pub mod metrics;
pub mod model;
#[cfg(feature = "media")]
pub mod pipeline;
#[cfg(feature = "media")]
pub mod prep;
pub mod sampling;
pub mod shard;
pub mod synth;
mod text_enum;
pub mod train;
pub mod video;
pub mod weights;
