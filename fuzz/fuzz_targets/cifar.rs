//! The CIFAR-10 and CIFAR-100 record readers on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.bin");
    let _ = selfsup::data::cifar::parse(path, data, 1);
    let _ = selfsup::data::cifar::parse(path, data, 2);
});
