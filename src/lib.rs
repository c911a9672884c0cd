//! # selfsup
//!
//! Self-supervised learning of visual representations, and measurement of how good they are,
//! in one Rust library and binary on top of [burn](https://burn.dev).
//!
//! The flow of a run (the README's layout section maps the folders):
//! [`data`] (IDX, CIFAR, image folders, video, sound, the embedded Fashion-MNIST set) →
//! [`data::loader`] (shuffled, seeded, views made on worker threads by [`augment`] and
//! [`pretext`]) → a [`methods::Method`], grouped by family (backbone and heads from [`nn`],
//! a loss from [`losses`], state from [`memory`], signal features from [`features`]) →
//! [`train`] (the shared step, optimizers, schedule, checkpoints, metrics, resume) →
//! [`eval`] (frozen features: k-NN, linear probe, SVM, layers, low-shot, neighbours).
//!
//! [`config`] holds the fields every run has and the chosen method's own settings table; the
//! method reads and checks that table ([`methods::resolve`]).
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
pub mod features;
pub mod linalg;
pub mod losses;
pub mod memory;
pub mod methods;
pub mod nn;
pub mod plot;
pub mod pretext;
pub mod preview;
pub mod recipes;
pub mod report;
mod simd;
pub mod train;

pub use error::{Error, Result};
