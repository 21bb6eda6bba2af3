//! Dataset descriptions (TOML): parsing and validation must return a description or an
//! error, never panic; a description that parses must survive its own round trip.
#![no_main]

use dfer::dataset::DatasetDesc;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(desc) = DatasetDesc::parse(text, Path::new("fuzz.toml")) {
        let again = DatasetDesc::parse(&desc.to_toml(), Path::new("fuzz.toml")).expect("round trip parses");
        assert_eq!(again.to_toml(), desc.to_toml());
    }
});
