//! # selfsup
//!
//! Self-supervised learning of visual representations, and measurement of how good they are,
//! in one Rust library and binary on top of [burn](https://burn.dev).
//!
//! The flow of a run (see `DESIGN.md`):
//! [`data`] (IDX, CIFAR, image folders, the embedded Fashion-MNIST subset) →
//! [`data::loader`] (shuffled, seeded, views made on worker threads by [`augment`]) →
//! a [`methods::Method`] (backbone from [`nets`], heads, a loss from [`losses`]) →
//! [`train`] (optimizers, schedule, checkpoints, metrics, resume) →
//! [`eval`] (frozen features: k-NN and linear probe).
//!
//! Only [`device`] knows which burn backend runs.

pub mod augment;
pub mod bench;
pub mod compare;
pub mod config;
pub mod data;
pub mod demo;
pub mod device;
pub mod dist;
pub mod error;
pub mod eval;
pub mod losses;
pub mod methods;
pub mod nets;
pub mod plot;
pub mod pretext;
pub mod preview;
pub mod train;

pub use error::{Error, Result};
