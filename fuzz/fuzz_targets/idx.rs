//! The IDX reader on arbitrary bytes (gzipped or not): a value or an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.idx");
    if let Ok(bytes) = selfsup::data::maybe_gunzip(path, data.to_vec()) {
        let _ = selfsup::data::idx::parse(path, &bytes);
    }
});
