//! Losses as pure functions over tensors, one file per family, each tested on its own (see
//! `tests/it/losses.rs`). They perform no collective: what a data-parallel run gathers, the
//! method gathers through [`crate::dist`] before calling them.

pub mod clustering;
pub mod contrastive;
pub mod metric;
pub mod siamese;

pub use clustering::*;
pub use contrastive::*;
pub use metric::*;
pub use siamese::*;

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

/// Divides each row of `x` by its L2 norm (rows of norm below 1e-12 are left near zero).
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

/// Cross-entropy of `logits` `[B, K]` against integer `targets` (mean over the batch).
pub fn cross_entropy(logits: Tensor<2>, targets: &[u32]) -> Tensor<1> {
    let [b, k] = logits.dims();
    let mut onehot = vec![0.0f32; b * k];
    for (i, &t) in targets.iter().enumerate() {
        onehot[i * k + t as usize] = 1.0;
    }
    let onehot = Tensor::<2>::from_data(TensorData::new(onehot, [b, k]), &logits.device());
    (log_softmax(logits, 1) * onehot).sum().neg() / b as f32
}
