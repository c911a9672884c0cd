//! Clustering losses: Sinkhorn-Knopp equipartitioned codes and SwAV's swapped prediction.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

/// Sinkhorn-Knopp codes of SwAV (Caron et al. 2020, section 3.1 and appendix A.1).
///
/// `scores` is `[n, k]` row-major (sample-prototype similarities). Returns the codes `Q`
/// `[n, k]`: the transport plan of `exp(scores / epsilon)` whose prototype marginals are
/// pushed towards `n / k` (equipartition) and whose sample marginals are exactly 1, after
/// `iterations` alternating normalizations. Computed in f64 in the log domain, so it neither
/// overflows nor underflows for large `scores / epsilon` (the paper's code exponentiates
/// directly and needs small scores).
pub fn sinkhorn(scores: &[f32], n: usize, k: usize, epsilon: f64, iterations: usize) -> Vec<f32> {
    sinkhorn_with(scores, n, k, epsilon, iterations, &|_| {})
}

/// [`sinkhorn`] on one shard of a batch: `scores` holds `n` of its rows, and `combine` turns
/// log-sum-exps over this shard's rows (one per entry) into log-sum-exps over the rows of all
/// shards, in place (nothing to do for a whole batch; `dist::sinkhorn_sharded` combines over
/// the ranks). It is called for the row count, the total mass and each iteration's column sums.
pub fn sinkhorn_with(
    scores: &[f32],
    n: usize,
    k: usize,
    epsilon: f64,
    iterations: usize,
    combine: &dyn Fn(&mut [f64]),
) -> Vec<f32> {
    assert_eq!(scores.len(), n * k, "scores must be n x k");
    let mut log_q: Vec<f64> = scores.iter().map(|&s| s as f64 / epsilon).collect();
    let lse = |vals: &mut dyn Iterator<Item = f64>| -> f64 {
        let v: Vec<f64> = vals.collect();
        let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        if m == f64::NEG_INFINITY {
            m
        } else {
            m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
        }
    };
    // ln of the batch size: the log-sum-exp of the shards' ln(n).
    let mut ln_n = [(n as f64).ln()];
    combine(&mut ln_n);
    let (ln_n, ln_k) = (ln_n[0], (k as f64).ln());
    // Total mass 1.
    let mut total = [lse(&mut log_q.iter().cloned())];
    combine(&mut total);
    log_q.iter_mut().for_each(|v| *v -= total[0]);
    let mut columns = vec![0.0f64; k];
    for _ in 0..iterations {
        // Each prototype (column) gets mass 1/k.
        for (j, c) in columns.iter_mut().enumerate() {
            *c = lse(&mut (0..n).map(|i| log_q[i * k + j]));
        }
        combine(&mut columns);
        for i in 0..n {
            for (j, c) in columns.iter().enumerate() {
                log_q[i * k + j] -= c + ln_k;
            }
        }
        // Each sample (row) gets mass 1/n.
        for i in 0..n {
            let r = lse(&mut log_q[i * k..(i + 1) * k].iter().cloned());
            for v in &mut log_q[i * k..(i + 1) * k] {
                *v -= r + ln_n;
            }
        }
    }
    // Scale so each sample's code sums to 1.
    log_q.iter().map(|&v| (v + ln_n).exp() as f32).collect()
}

/// SwAV's swapped-prediction term: cross-entropy between `codes` `[B, K]` (targets, no
/// gradient) and the softmax of `scores / temperature` `[B, K]` of another view.
pub fn swapped_prediction(codes: Tensor<2>, scores: Tensor<2>, temperature: f32) -> Tensor<1> {
    let [b, _] = scores.dims();
    (codes * log_softmax(scores / temperature, 1)).sum().neg() / b as f32
}
