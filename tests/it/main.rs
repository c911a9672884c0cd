//! Integration tests, in one crate so burn is linked once.

mod augment;
mod cli;
mod data;
mod losses;
mod nets;
mod swav;
mod train;

use std::path::PathBuf;

/// The shared real-data folder (`../shared/data` from the project root).
pub fn shared_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
}
