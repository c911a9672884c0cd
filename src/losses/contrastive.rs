//! Contrastive losses: a positive must score above negatives drawn from the batch (NT-Xent),
//! a queue (InfoNCE) or a memory bank (NCE).

use super::l2_normalize;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;

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

/// InfoNCE over one positive similarity `pos` `[B]` and negatives `neg` `[B, m]`:
/// cross-entropy with the positive as target, logits divided by `temperature`.
pub fn info_nce(pos: Tensor<1>, neg: Tensor<2>, temperature: f32) -> Tensor<1> {
    let [b, _] = neg.dims();
    let logits = Tensor::cat(vec![pos.reshape([b, 1]), neg], 1) / temperature;
    log_softmax(logits, 1).narrow(1, 0, 1).sum().neg() / b as f32
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

/// MoCo v3's contrastive loss (Chen, Xie & He 2021, Algorithm 1, `ctr`): each query `q[i]`
/// (`[B, D]`) is classified among all keys `k` (`[N, D]`, no gradient) by cosine similarity
/// over `temperature`, its positive being key `offset + i` (its own image's other view; in a
/// data-parallel run the keys of every rank are gathered and `offset` is this rank's first
/// row); the cross-entropy is scaled by `2 * temperature`, as the reference code does.
pub fn moco_v3_contrastive(
    q: Tensor<2>,
    k: Tensor<2>,
    offset: usize,
    temperature: f32,
) -> Tensor<1> {
    let b = q.dims()[0];
    let logits = l2_normalize(q).matmul(l2_normalize(k).transpose()) / temperature;
    let targets: Vec<u32> = (0..b).map(|i| (offset + i) as u32).collect();
    super::cross_entropy(logits, &targets) * (2.0 * temperature)
}

/// NNCLR's nearest neighbour (Dwibedi et al. 2021, eq. 1): for each row of `z` (`[B, D]`), the
/// row of the support set `support` (`[Q, D]`, L2-normalized) most cosine-similar to it; a
/// plain tensor, no gradient (the support set is not trained).
pub fn support_set_nearest(z: Tensor<2>, support: Tensor<2>) -> Tensor<2> {
    let b = z.dims()[0];
    let sims = l2_normalize(z.detach()).matmul(support.clone().transpose());
    let idx = sims.argmax(1).reshape([b]);
    support.select(0, idx).detach()
}

/// NNCLR's loss (Dwibedi et al. 2021, eq. 2 and its pseudo-code): each neighbour `nn[i]`
/// (`[B, D]`, from the support set) is classified among the predictions `p` (`[B, D]`) of the
/// batch's other view by cosine similarity over `temperature`; its positive is `p[i]`, its own
/// image's prediction. Mean cross-entropy over the batch.
pub fn nnclr(nn: Tensor<2>, p: Tensor<2>, temperature: f32) -> Tensor<1> {
    let b = p.dims()[0];
    let logits = l2_normalize(nn).matmul(l2_normalize(p).transpose()) / temperature;
    let targets: Vec<u32> = (0..b as u32).collect();
    super::cross_entropy(logits, &targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nnclr_neighbours_and_loss_by_hand() {
        // Support set: the two axes and their diagonal; z's nearest rows by cosine.
        let h = std::f32::consts::FRAC_1_SQRT_2;
        let support = tensor(&[[1.0, 0.0], [0.0, 1.0], [h, h]]);
        let z = tensor(&[[5.0, 0.5], [0.2, 3.0], [1.0, 1.1]]);
        let nn = support_set_nearest(z, support);
        let got: Vec<f32> = nn.clone().into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(got, vec![1.0, 0.0, 0.0, 1.0, h, h]);
        // Predictions (0, 2), (3, 0), (1, 1): unit (0, 1), (1, 0), (h, h); T = 0.5.
        let p = tensor(&[[0.0, 2.0], [3.0, 0.0], [1.0, 1.0]]);
        let got: f32 = nnclr(nn, p, 0.5).into_scalar();
        // Row i's logits: cos(nn_i, p_k) / T; positive k = i.
        let l = [
            [0.0, 2.0, 2.0 * h],
            [2.0, 0.0, 2.0 * h],
            [2.0 * h, 2.0 * h, 2.0],
        ];
        let ce = |r: [f32; 3], i: usize| -> f64 {
            r.iter().map(|x| (*x as f64).exp()).sum::<f64>().ln() - r[i] as f64
        };
        let want = (ce(l[0], 0) + ce(l[1], 1) + ce(l[2], 2)) / 3.0;
        assert!((got as f64 - want).abs() < 1e-5, "{got} vs {want}");
    }

    fn tensor(rows: &[[f32; 2]]) -> Tensor<2> {
        let data: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_data(TensorData::new(data, [rows.len(), 2]), &Device::flex())
    }

    #[test]
    fn moco_v3_contrastive_by_hand() {
        // Orthogonal unit keys, T = 1: each row's cross-entropy is ln(1 + e^-1); times 2T.
        let q = tensor(&[[2.0, 0.0], [0.0, 3.0]]);
        let k = tensor(&[[1.0, 0.0], [0.0, 1.0]]);
        let got: f32 = moco_v3_contrastive(q.clone(), k.clone(), 0, 1.0).into_scalar();
        let want = 2.0 * (1.0 + (-1.0f64).exp()).ln();
        assert!((got as f64 - want).abs() < 1e-6, "{got} vs {want}");
        // The positives at offset 1 of four gathered keys: the second and third rows.
        let all = tensor(&[[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]);
        let got: f32 = moco_v3_contrastive(q, all, 1, 0.5).into_scalar();
        // Query 0 = (1, 0): logits (0, 2, 0, -2), positive 2; query 1 = (0, 1): (2, 0, 2, 0),
        // positive 2.
        let ce =
            |l: [f64; 4], p: usize| -> f64 { l.iter().map(|x| x.exp()).sum::<f64>().ln() - l[p] };
        let want = (ce([0.0, 2.0, 0.0, -2.0], 1) + ce([2.0, 0.0, 2.0, 0.0], 2)) / 2.0;
        assert!((got as f64 - want).abs() < 1e-5, "{got} vs {want}");
    }
}
