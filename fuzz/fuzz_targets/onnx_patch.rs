//! The ONNX model patcher on arbitrary bytes (seeded with the real detector model): it must
//! return a patched model or an error, never panic, and what it returns must patch again.
#![no_main]

use dfer::face::onnx_patch::patch_model;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((patched, _)) = patch_model(data, &[0, 2, 3]) {
        patch_model(&patched, &[0, 2, 3]).expect("a patched model patches again");
    }
});
