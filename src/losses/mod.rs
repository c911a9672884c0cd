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
    let b = z1.dims()[0];
    nt_xent_anchors(z1, z2, temperature, 0..b)
}

/// The terms of [`nt_xent`] whose anchors are the two views of images `anchors` (a range of
/// rows of `z1`/`z2`), still classified against all `2B - 1` others; the mean over those
/// `2 * anchors.len()` terms. In a data-parallel run each rank scores its own images against
/// the gathered batch, and the mean over the ranks is [`nt_xent`] of the whole batch.
pub fn nt_xent_anchors(
    z1: Tensor<2>,
    z2: Tensor<2>,
    temperature: f32,
    anchors: std::ops::Range<usize>,
) -> Tensor<1> {
    let [b, _] = z1.dims();
    let (s, m) = (anchors.start, anchors.len());
    assert!(
        anchors.end <= b && m > 0,
        "anchors must be a non-empty range of rows"
    );
    let n = 2 * b;
    let device = z1.device();
    let z = l2_normalize(Tensor::cat(vec![z1, z2], 0));
    let q = Tensor::cat(
        vec![z.clone().narrow(0, s, m), z.clone().narrow(0, b + s, m)],
        0,
    );
    let logits = q.matmul(z.transpose()) / temperature; // [2m, 2B]
    // Row r is view 1 of image s + r (r < m) or view 2 of image s + r - m.
    let (mut own, mut pos) = (vec![0.0f32; 2 * m * n], vec![0.0f32; 2 * m * n]);
    for r in 0..2 * m {
        let (this, other) = if r < m {
            (s + r, b + s + r)
        } else {
            (b + s + r - m, s + r - m)
        };
        own[r * n + this] = 1.0;
        pos[r * n + other] = 1.0;
    }
    let own = Tensor::<2>::from_data(TensorData::new(own, [2 * m, n]), &device).greater_elem(0.5);
    let logits = logits.mask_fill(own, -1.0e9);
    let pos = Tensor::<2>::from_data(TensorData::new(pos, [2 * m, n]), &device);
    let log_prob = log_softmax(logits, 1);
    (log_prob * pos).sum().neg() / (2 * m) as f32
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

/// InfoNCE of MoCo (He et al. 2020, eq. 1): each query `q[i]` (`[B, D]`, L2-normalized) is
/// classified among its positive key `k[i]` and the `K` negatives of `queue` (`[K, D]`), with
/// logits `q.k / temperature`; the loss is the cross-entropy with the positive as target.
pub fn info_nce_with_queue(
    q: Tensor<2>,
    k: Tensor<2>,
    queue: Tensor<2>,
    temperature: f32,
) -> Tensor<1> {
    let [b, _] = q.dims();
    let pos = (q.clone() * k).sum_dim(1).reshape([b]);
    info_nce(pos, q.matmul(queue.transpose()), temperature)
}

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

/// NCE loss of NPID (Wu et al. 2018, eqs. 4-6) from similarities to memory-bank entries.
///
/// `pos` `[B]` and `neg` `[B, m]` are cosine similarities of each embedding with its own bank
/// entry and with `m` noise entries drawn uniformly from the `n` entries of the bank. With
/// `P(i|v) = exp(s / temperature) / z` and noise `P_n = 1 / n`, the loss is
/// `-log h(pos) - sum log(1 - h(neg))` with `h(s) = P / (P + m P_n)`, averaged over the batch;
/// computed with softplus in the log domain.
pub fn npid_nce(
    pos: Tensor<1>,
    neg: Tensor<2>,
    temperature: f32,
    log_z: f64,
    n: usize,
) -> Tensor<1> {
    let b = pos.dims()[0];
    nce_with_positive_sets(pos.reshape([b, 1]), neg, None, temperature, log_z, n)
}

/// The NCE normalizing constant as NPID's and AVID's reference code estimate it once, from
/// the first batch: `ln(n * mean exp(s / temperature))` over the similarities `scores` (any
/// shape) with a bank of `n` entries.
pub fn estimate_log_z(scores: Tensor<2>, temperature: f32, n: usize) -> f64 {
    let mean: f32 = (scores.detach() / temperature).exp().mean().into_scalar();
    // In a data-parallel run, over every rank's batch, so that all ranks share one constant.
    (crate::dist::mean_f64(mean as f64) * n as f64).ln()
}

/// NCE with a set of positives per row (AVID + CMA, Morgado et al. 2021): [`npid_nce`] with
/// `pos` `[B, k]`, each row's positive terms `-log h(pos)` averaged over its `k` positives
/// (the reference code's `NCECriterion`), the noise terms over `neg` `[B, m]` summed.
/// `noise_kept` `[B, m]` (1 or 0), when given, drops noise terms: a noise entry drawn for the
/// batch that is the row's own instance or one of its positives. With `k = 1` and no mask it
/// is [`npid_nce`].
pub fn nce_with_positive_sets(
    pos: Tensor<2>,
    neg: Tensor<2>,
    noise_kept: Option<Tensor<2>>,
    temperature: f32,
    log_z: f64,
    n: usize,
) -> Tensor<1> {
    use burn::tensor::activation::softplus;
    let [b, m] = neg.dims();
    let k = pos.dims()[1];
    let log_c = (m as f64 / n as f64).ln();
    let log_p_pos = pos / temperature - log_z;
    let log_p_neg = neg / temperature - log_z;
    // -log(P / (P + c)) = softplus(log c - log P);  -log(c / (P + c)) = softplus(log P - log c).
    let pos_term = softplus(log_p_pos.neg() + log_c, 1.0).sum() / k as f32;
    let neg_terms = softplus(log_p_neg - log_c, 1.0);
    let neg_term = match noise_kept {
        Some(kept) => (neg_terms * kept).sum(),
        None => neg_terms.sum(),
    };
    (pos_term + neg_term) / b as f32
}

/// InfoNCE over one positive similarity `pos` `[B]` and negatives `neg` `[B, m]`:
/// cross-entropy with the positive as target, logits divided by `temperature`.
pub fn info_nce(pos: Tensor<1>, neg: Tensor<2>, temperature: f32) -> Tensor<1> {
    let [b, _] = neg.dims();
    let logits = Tensor::cat(vec![pos.reshape([b, 1]), neg], 1) / temperature;
    log_softmax(logits, 1).narrow(1, 0, 1).sum().neg() / b as f32
}

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
