//! The integration tests: the real `dfer` binary on synthetic datasets, real video and the
//! published code's fixtures, one module per subject. One test binary rather than one per file:
//! each would link polars, candle, HDF5 and FFmpeg again, and `cargo test` runs binaries one
//! after another. Shared helpers: `common`.

mod common;

mod architecture;
mod bad_input;
mod crash;
mod docs;
mod full_disk;
mod manifest_roundtrip;
mod pipeline;
mod prep;
mod prep_bad_input;
mod prep_motion;
mod protocol;
mod train;
mod weights;
