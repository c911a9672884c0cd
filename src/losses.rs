//! Losses as pure functions over tensors, each tested on its own (see `tests/it/losses.rs`).

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

/// Divides each row of `x` by its L2 norm (rows of norm below 1e-12 are left near zero).
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

/// NT-Xent, the normalized temperature-scaled cross-entropy of SimCLR (Chen et al. 2020, eq. 1).
///
/// `z1[i]` and `z2[i]` are the projections of two views of image `i`. Each of the `2B`
/// projections is classified against the other `2B - 1` (cosine similarity / `temperature`),
/// its positive being the other view of the same image; the loss is the mean over all `2B`.
pub fn nt_xent(z1: Tensor<2>, z2: Tensor<2>, temperature: f32) -> Tensor<1> {
    let [b, _] = z1.dims();
    let n = 2 * b;
    let device = z1.device();
    let z = l2_normalize(Tensor::cat(vec![z1, z2], 0));
    let logits = z.clone().matmul(z.transpose()) / temperature;
    let self_mask = Tensor::<2>::eye(n, &device).greater_elem(0.5);
    let logits = logits.mask_fill(self_mask, -1.0e9);
    let mut pos = vec![0.0f32; n * n];
    for i in 0..n {
        pos[i * n + (i + b) % n] = 1.0;
    }
    let pos = Tensor::<2>::from_data(TensorData::new(pos, [n, n]), &device);
    let log_prob = log_softmax(logits, 1);
    (log_prob * pos).sum().neg() / n as f32
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
