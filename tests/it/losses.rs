//! NT-Xent against hand-computed values, an independent f64 implementation, and finite
//! differences of that implementation.

use burn::prelude::*;
use selfsup::losses::{cross_entropy, nt_xent, nt_xent_anchors};

/// NT-Xent in f64 with plain loops, written from the paper's equation (1).
fn reference(z1: &[Vec<f64>], z2: &[Vec<f64>], t: f64) -> f64 {
    let z: Vec<Vec<f64>> = z1
        .iter()
        .chain(z2)
        .map(|v| {
            let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            v.iter().map(|x| x / n).collect()
        })
        .collect();
    let n = z.len();
    let b = n / 2;
    let dot = |a: &Vec<f64>, c: &Vec<f64>| a.iter().zip(c).map(|(x, y)| x * y).sum::<f64>();
    let mut total = 0.0;
    for i in 0..n {
        let pos = (i + b) % n;
        let denom: f64 = (0..n)
            .filter(|&k| k != i)
            .map(|k| (dot(&z[i], &z[k]) / t).exp())
            .sum();
        total += -((dot(&z[i], &z[pos]) / t).exp() / denom).ln();
    }
    total / n as f64
}

fn tensor(rows: &[Vec<f64>], device: &Device) -> Tensor<2> {
    let d = rows[0].len();
    let flat: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), d]), device)
}

fn pseudo_random(n: usize, d: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            (0..d)
                .map(|_| {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((s >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0
                })
                .collect()
        })
        .collect()
}

#[test]
fn nt_xent_hand_computed() {
    let device = Device::flex();
    // Two images, orthogonal projections, both views identical, T = 0.5: each row sees its
    // positive at similarity 1 and two negatives at 0: loss = ln(1 + 2 e^-2).
    let z = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
    let got: f32 = nt_xent(tensor(&z, &device), tensor(&z, &device), 0.5).into_scalar();
    let want = (1.0 + 2.0 * (-2.0f64).exp()).ln();
    assert!((got as f64 - want).abs() < 1e-5, "got {got}, want {want}");
    // One image: the positive is the only candidate, the loss is exactly 0.
    let got: f32 = nt_xent(
        tensor(&[vec![1.0, 2.0]], &device),
        tensor(&[vec![-3.0, 0.5]], &device),
        0.1,
    )
    .into_scalar();
    assert!(got.abs() < 1e-6, "got {got}");
}

#[test]
fn nt_xent_matches_reference_on_random_inputs() {
    let device = Device::flex();
    for (seed, t) in [(1u64, 0.07), (2, 0.2), (3, 0.5), (4, 1.0)] {
        let z1 = pseudo_random(6, 5, seed);
        let z2 = pseudo_random(6, 5, seed + 100);
        let got: f32 = nt_xent(tensor(&z1, &device), tensor(&z2, &device), t as f32).into_scalar();
        let want = reference(&z1, &z2, t);
        assert!(
            (got as f64 - want).abs() < 1e-4 * want.max(1.0),
            "T={t}: got {got}, want {want}"
        );
    }
}

#[test]
fn nt_xent_over_anchor_shards_averages_to_the_whole_batch() {
    // What each rank of a data-parallel run computes: its images' terms against all 2B.
    let device = Device::flex();
    let z1 = pseudo_random(6, 5, 11);
    let z2 = pseudo_random(6, 5, 12);
    let t = 0.2f32;
    let whole: f32 = nt_xent(tensor(&z1, &device), tensor(&z2, &device), t).into_scalar();
    let part = |r: std::ops::Range<usize>| -> f32 {
        nt_xent_anchors(tensor(&z1, &device), tensor(&z2, &device), t, r).into_scalar()
    };
    let (a, b, c) = (part(0..2), part(2..4), part(4..6));
    assert!(
        ((a + b + c) / 3.0 - whole).abs() < 1e-5,
        "shards {a} {b} {c}, whole {whole}"
    );
    assert!(
        (a - whole).abs() > 1e-3,
        "a shard alone is not the whole loss"
    );
    assert!((part(0..6) - whole).abs() < 1e-6);
}

#[test]
fn nt_xent_gradient_matches_finite_differences() {
    let device = Device::flex().autodiff();
    let t = 0.3;
    let z1 = pseudo_random(4, 3, 7);
    let z2 = pseudo_random(4, 3, 8);
    let a = tensor(&z1, &device).require_grad();
    let loss = nt_xent(a.clone(), tensor(&z2, &device), t as f32);
    let grads = loss.backward();
    let g: Vec<f32> = a
        .grad(&grads)
        .expect("gradient")
        .into_data()
        .convert::<f32>()
        .try_to_vec()
        .unwrap();
    let h = 1e-5;
    for i in 0..z1.len() {
        for j in 0..z1[0].len() {
            let mut p = z1.clone();
            p[i][j] += h;
            let mut m = z1.clone();
            m[i][j] -= h;
            let fd = (reference(&p, &z2, t) - reference(&m, &z2, t)) / (2.0 * h);
            let an = g[i * z1[0].len() + j] as f64;
            assert!(
                (fd - an).abs() < 1e-3 * fd.abs().max(0.1),
                "d/dz1[{i}][{j}]: autodiff {an}, finite differences {fd}"
            );
        }
    }
}

#[test]
fn cross_entropy_hand_computed() {
    let device = Device::flex();
    // logits [0, ln 3] for target 1: p = 3/4, loss = ln(4/3); target 0: ln 4.
    let l = Tensor::<2>::from_data(
        TensorData::new(vec![0.0f32, 3f32.ln(), 0.0, 3f32.ln()], [2, 2]),
        &device,
    );
    let got: f32 = cross_entropy(l, &[1, 0]).into_scalar();
    let want = ((4.0f64 / 3.0).ln() + 4f64.ln()) / 2.0;
    assert!((got as f64 - want).abs() < 1e-5, "got {got}, want {want}");
}

#[test]
fn info_nce_with_queue_matches_reference() {
    use selfsup::losses::{info_nce_with_queue, l2_normalize};
    let device = Device::flex();
    let norm = |v: Vec<Vec<f64>>| -> Vec<Vec<f64>> {
        v.into_iter()
            .map(|r| {
                let n = r.iter().map(|x| x * x).sum::<f64>().sqrt();
                r.into_iter().map(|x| x / n).collect()
            })
            .collect()
    };
    let q = norm(pseudo_random(3, 4, 11));
    let k = norm(pseudo_random(3, 4, 12));
    let queue = norm(pseudo_random(5, 4, 13));
    let t = 0.2;
    let dot = |a: &Vec<f64>, b: &Vec<f64>| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let mut want = 0.0;
    for i in 0..3 {
        let pos = (dot(&q[i], &k[i]) / t).exp();
        let neg: f64 = queue.iter().map(|n| (dot(&q[i], n) / t).exp()).sum();
        want += -(pos / (pos + neg)).ln();
    }
    want /= 3.0;
    let got: f32 = info_nce_with_queue(
        l2_normalize(tensor(&q, &device)),
        tensor(&k, &device),
        tensor(&queue, &device),
        t as f32,
    )
    .into_scalar();
    assert!((got as f64 - want).abs() < 1e-4, "got {got}, want {want}");
}

#[test]
fn npid_nce_matches_the_paper_formula() {
    use selfsup::losses::{info_nce, npid_nce};
    let device = Device::flex();
    let pos = vec![0.9f64, 0.2];
    let neg = vec![vec![0.1, -0.3, 0.5], vec![0.0, 0.7, -0.2]];
    let (t, n, log_z) = (0.07f64, 1000usize, 9.5f64);
    let m = 3.0;
    let c = m / n as f64; // m * P_n
    let p = |s: f64| (s / t).exp() / log_z.exp();
    let mut want = 0.0;
    for i in 0..2 {
        want -= (p(pos[i]) / (p(pos[i]) + c)).ln();
        for &s in &neg[i] {
            want -= (c / (p(s) + c)).ln();
        }
    }
    want /= 2.0;
    let pos_t = Tensor::<1>::from_data(
        TensorData::new(pos.iter().map(|&v| v as f32).collect::<Vec<_>>(), [2]),
        &device,
    );
    let neg_t = tensor(&neg, &device);
    let got: f32 = npid_nce(pos_t.clone(), neg_t.clone(), t as f32, log_z, n).into_scalar();
    assert!(
        (got as f64 - want).abs() < 1e-3 * want.abs().max(1.0),
        "got {got}, want {want}"
    );
    // InfoNCE: -log softmax of the positive among [pos, negs].
    let mut want = 0.0;
    for i in 0..2 {
        let e: f64 = (pos[i] / t).exp() + neg[i].iter().map(|s| (s / t).exp()).sum::<f64>();
        want -= ((pos[i] / t).exp() / e).ln();
    }
    want /= 2.0;
    let got: f32 = info_nce(pos_t, neg_t, t as f32).into_scalar();
    assert!(
        (got as f64 - want).abs() < 1e-4 * want.max(1.0),
        "got {got}, want {want}"
    );
}

#[test]
fn npid_z_is_estimated_once_from_the_first_batch() {
    use selfsup::methods::contrastive::npid::{BankLoss, bank_loss};
    let device = Device::flex();
    let pos = Tensor::<1>::from_data(TensorData::new(vec![0.5f32], [1]), &device);
    let neg = tensor(&[vec![0.1, -0.2]], &device);
    let mut log_z = None;
    let _ = bank_loss(BankLoss::Nce, pos.clone(), neg.clone(), 0.5, &mut log_z, 10);
    // Z = n * mean(exp(s / T)) over the positive and the noise: 10 * (e^1 + e^0.2 + e^-0.4) / 3.
    let want = (10.0 * (1f64.exp() + 0.2f64.exp() + (-0.4f64).exp()) / 3.0).ln();
    assert!((log_z.unwrap() - want).abs() < 1e-5, "{log_z:?} vs {want}");
    // Later batches keep it.
    let other = Tensor::<1>::from_data(TensorData::new(vec![-0.9f32], [1]), &device);
    let _ = bank_loss(BankLoss::Nce, other, neg, 0.5, &mut log_z, 10);
    assert!((log_z.unwrap() - want).abs() < 1e-5);
}

#[test]
fn moco_queue_is_a_ring_buffer() {
    use selfsup::memory::queue::fifo_enqueue;
    let device = Device::flex();
    let rows = |v: &[f64]| tensor(&v.iter().map(|&x| vec![x, -x]).collect::<Vec<_>>(), &device);
    let read = |t: Tensor<2>| -> Vec<f32> {
        t.narrow(1, 0, 1)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap()
    };
    // Queue of 4, write position 3: three keys land in rows 3, 0, 1.
    let (q, ptr) = fifo_enqueue(rows(&[0.0, 0.0, 0.0, 0.0]), 3, rows(&[1.0, 2.0, 3.0]));
    assert_eq!((read(q.clone()), ptr), (vec![2.0, 3.0, 0.0, 1.0], 2));
    // A batch larger than the queue keeps its last 4 keys, written from the pointer on.
    let (q, ptr) = fifo_enqueue(q, ptr, rows(&[4.0, 5.0, 6.0, 7.0, 8.0, 9.0]));
    assert_eq!((read(q), ptr), (vec![8.0, 9.0, 6.0, 7.0], 2));
}

#[test]
fn cpc_offset_loss_matches_a_loop_reference() {
    use burn::nn::LinearConfig;
    use selfsup::methods::contrastive::cpc::offset_loss;
    let device = Device::flex();
    // One image, a 3 x 3 grid of codes of dimension 2; the predictor is a fixed linear map.
    let (g, f, t) = (3usize, 2usize, 0.5f64);
    let codes = pseudo_random(g * g, f, 7);
    let ctx = pseudo_random(g * g, f, 8); // context at (i, j) = ctx[i * g + j]
    let w = [[0.5f64, -1.0], [2.0, 0.25]]; // pred = ctx W (burn's Linear is x W + b)
    let mut lin = LinearConfig::new(f, f).with_bias(false).init(&device);
    lin.weight = burn::module::Param::from_tensor(tensor(&[w[0].to_vec(), w[1].to_vec()], &device));
    let norm = |v: Vec<f64>| {
        let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.into_iter().map(|x| x / n).collect::<Vec<f64>>()
    };
    for k in 1..g {
        let mut want = 0.0;
        let mut count = 0.0;
        for i in 0..g - k {
            for j in 0..g {
                let c = &ctx[i * g + j];
                let p = norm(
                    (0..f)
                        .map(|o| (0..f).map(|q| c[q] * w[q][o]).sum())
                        .collect(),
                );
                let logits: Vec<f64> = codes
                    .iter()
                    .map(|z| {
                        norm(z.clone())
                            .iter()
                            .zip(&p)
                            .map(|(a, b)| a * b)
                            .sum::<f64>()
                            / t
                    })
                    .collect();
                let lse = logits.iter().map(|l| l.exp()).sum::<f64>().ln();
                want += lse - logits[(i + k) * g + j];
                count += 1.0;
            }
        }
        want /= count;
        // Context as [B, F, G, G].
        let mut flat = vec![0f32; f * g * g];
        for (pos, v) in ctx.iter().enumerate() {
            for (c, &x) in v.iter().enumerate() {
                flat[c * g * g + pos] = x as f32;
            }
        }
        let context = Tensor::<4>::from_data(TensorData::new(flat, [1, f, g, g]), &device);
        let got: f32 =
            offset_loss(context, tensor(&codes, &device), &lin, k, t as f32).into_scalar();
        assert!(
            (got as f64 - want).abs() < 1e-4,
            "k = {k}: got {got}, want {want}"
        );
    }
}

#[test]
fn nce_with_positive_sets_matches_the_avid_reference_form() {
    // The AVID-CMA reference code writes NCE with the mean exponentiated noise score `a`:
    // P = e^(s/T) / (e^(s/T) + m a) for positives (averaged over the set), m a / (e^(s/T) +
    // m a) for noise (summed). That is ours with log Z = ln(n a).
    use selfsup::losses::{nce_with_positive_sets, npid_nce};
    let device = Device::flex();
    let pos = vec![vec![0.9f64, 0.4], vec![0.2, 0.6]];
    let neg = vec![vec![0.1, -0.3, 0.5], vec![0.0, 0.7, -0.2]];
    let (t, n, a) = (0.1f64, 500usize, 3.7f64);
    let m = 3.0;
    let mut want = 0.0;
    for i in 0..2 {
        let mut pos_term = 0.0;
        for &s in &pos[i] {
            let e = (s / t).exp();
            pos_term -= (e / (e + m * a)).ln();
        }
        want += pos_term / 2.0;
        for &s in &neg[i] {
            want -= (m * a / ((s / t).exp() + m * a)).ln();
        }
    }
    want /= 2.0;
    let log_z = (n as f64 * a).ln();
    let got: f32 = nce_with_positive_sets(
        tensor(&pos, &device),
        tensor(&neg, &device),
        None,
        t as f32,
        log_z,
        n,
    )
    .into_scalar();
    assert!(
        (got as f64 - want).abs() < 1e-4 * want.abs().max(1.0),
        "got {got}, want {want}"
    );
    // One positive per row: exactly NPID's loss.
    let first = Tensor::<1>::from_data(TensorData::new(vec![0.9f32, 0.2], [2]), &device);
    let one: f32 = nce_with_positive_sets(
        first.clone().reshape([2, 1]),
        tensor(&neg, &device),
        None,
        t as f32,
        log_z,
        n,
    )
    .into_scalar();
    let npid: f32 = npid_nce(first, tensor(&neg, &device), t as f32, log_z, n).into_scalar();
    assert!((one - npid).abs() < 1e-6, "{one} vs {npid}");
    // A dropped noise term: the same as leaving that noise score out of the sum.
    let kept = tensor(&[vec![1.0, 0.0, 1.0], vec![1.0, 1.0, 1.0]], &device);
    let masked: f32 = nce_with_positive_sets(
        tensor(&pos, &device),
        tensor(&neg, &device),
        Some(kept),
        t as f32,
        log_z,
        n,
    )
    .into_scalar();
    let dropped = -(m * a / ((-0.3f64 / t).exp() + m * a)).ln() / 2.0;
    assert!(
        (masked as f64 - (want - dropped)).abs() < 1e-4 * want.abs().max(1.0),
        "got {masked}, want {}",
        want - dropped
    );
}
