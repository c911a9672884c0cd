//! Distances and the triplet ranking loss of metric learning (tracking, Wang & Gupta 2015).

use super::l2_normalize;
use burn::prelude::*;

/// Cosine distances `1 - cos(a_i, b_j)`, `[B, N]`, between the rows of `a` `[B, D]` and `b`
/// `[N, D]`.
pub fn cosine_distances(a: Tensor<2>, b: Tensor<2>) -> Tensor<2> {
    l2_normalize(a)
        .matmul(l2_normalize(b).transpose())
        .neg()
        .add_scalar(1.0)
}

/// Cosine distances `1 - cos(a_i, b_i)`, `[B]`, between matching rows of `a` and `b`.
pub fn paired_cosine_distances(a: Tensor<2>, b: Tensor<2>) -> Tensor<1> {
    let n = a.dims()[0];
    (l2_normalize(a) * l2_normalize(b))
        .sum_dim(1)
        .reshape([n])
        .neg()
        .add_scalar(1.0)
}

/// The triplet ranking loss of Wang & Gupta 2015 (eq. 2), `max(0, D(a, p) - D(a, n) + margin)`
/// with `D` the cosine distance, averaged over the (anchor `i`, negative `j`) pairs that
/// `chosen[i]` lists. `d_ap` `[B]` holds `D(a_i, p_i)` and `d_an` `[B, N]` holds `D(a_i, n_j)`.
pub fn ranking_loss(
    d_ap: Tensor<1>,
    d_an: Tensor<2>,
    chosen: &[Vec<usize>],
    margin: f32,
) -> Tensor<1> {
    let [b, n] = d_an.dims();
    let mut mask = vec![0f32; b * n];
    for (i, js) in chosen.iter().enumerate() {
        for &j in js {
            mask[i * n + j] = 1.0;
        }
    }
    let count = mask.iter().sum::<f32>().max(1.0);
    let mask = Tensor::<2>::from_data(TensorData::new(mask, [b, n]), &d_an.device());
    let hinge = (d_ap.reshape([b, 1]) - d_an)
        .add_scalar(margin)
        .clamp_min(0.0);
    (hinge * mask).sum().div_scalar(count)
}

/// Hard-negative selection (Wang & Gupta 2015, section 3.3): for each anchor (row of the
/// `[B, N]` row-major distances `d_an`), the `k` negatives closest to it, which violate the
/// margin most; never index `i` itself when `exclude_diagonal` (the anchor's own positive
/// or patch).
pub fn hardest_negatives(
    d_an: &[f32],
    n: usize,
    k: usize,
    exclude_diagonal: bool,
) -> Vec<Vec<usize>> {
    d_an.chunks_exact(n)
        .enumerate()
        .map(|(i, row)| {
            let mut idx: Vec<usize> = (0..n).filter(|&j| !(exclude_diagonal && j == i)).collect();
            idx.sort_by(|&a, &b| row[a].total_cmp(&row[b]).then(a.cmp(&b)));
            idx.truncate(k);
            idx
        })
        .collect()
}
