//! The run-config parser and validation, and `--set`, on arbitrary text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cfg) = toml::from_str::<selfsup::config::RunConfig>(text) {
            let _ = cfg.validate();
            let _ = cfg.readout();
        }
        let mut cfg = selfsup::config::RunConfig::default();
        if cfg.set(text).is_ok() {
            let _ = cfg.validate();
        }
    }
});
