//! Losses of the siamese (non-contrastive) methods: two views of an image must agree, with no
//! negatives; what keeps the embeddings from collapsing is a predictor and a stop-gradient
//! (BYOL, SimSiam) or a statistic of the batch (Barlow Twins' cross-correlation, VICReg's
//! variance and covariance). The stop-gradient is the caller's: it passes detached targets.

use burn::prelude::*;
use burn::tensor::activation::relu;

use super::l2_normalize;

/// Mean negative cosine similarity of the rows of `p` and `z` (`[B, D]`): SimSiam's
/// `D(p, z)` (Chen & He 2021, eq. 1), in `[-1, 1]`.
pub fn negative_cosine(p: Tensor<2>, z: Tensor<2>) -> Tensor<1> {
    (l2_normalize(p) * l2_normalize(z)).sum_dim(1).mean().neg()
}

/// BYOL's regression loss (Grill et al. 2020, eq. 2): the mean over rows of the squared
/// distance of the L2-normalized prediction `p` and target `z`, `2 - 2 cos(p, z)`, in `[0, 4]`.
pub fn normalized_mse(p: Tensor<2>, z: Tensor<2>) -> Tensor<1> {
    (negative_cosine(p, z) + 1.0) * 2.0
}

/// Each column of `z` (`[B, D]`) standardized over the batch: mean 0, biased variance 1 (with
/// `eps` added to the variance), as a BatchNorm without affine parameters.
fn standardize(z: Tensor<2>, eps: f64) -> Tensor<2> {
    let centred = z.clone() - z.mean_dim(0);
    let var = centred.clone().powi_scalar(2).mean_dim(0);
    centred / (var + eps).sqrt()
}

/// Barlow Twins' loss (Zbontar et al. 2021, eq. 1): the cross-correlation matrix `C` of the
/// batch-standardized embeddings of the two views (`[D, D]`, `C = z1ᵀ z2 / B`) pushed to the
/// identity: `Σ_i (1 - C_ii)² + λ Σ_{i≠j} C_ij²`. Standardized as the reference code's
/// `BatchNorm1d(affine=False)` (biased variance, eps 1e-5).
pub fn barlow_twins(z1: Tensor<2>, z2: Tensor<2>, lambda: f32) -> Tensor<1> {
    let [b, d] = z1.dims();
    let c = standardize(z1, 1e-5)
        .transpose()
        .matmul(standardize(z2, 1e-5))
        / b as f32;
    let eye = Tensor::<2>::eye(d, &c.device());
    let diag = (c.clone() * eye.clone()).sum_dim(1).reshape([d]);
    let on = (diag.clone().neg() + 1.0).powi_scalar(2).sum();
    let off = c.powi_scalar(2).sum() - diag.powi_scalar(2).sum();
    on + off * lambda
}

/// The three terms of VICReg's loss (Bardes et al. 2022, eqs. 1-6) for embeddings `z1`, `z2`
/// (`[B, D]`): invariance (mean squared error of the views), variance (the hinge
/// `max(0, 1 - std)` of each dimension's standard deviation over the batch, unbiased, with
/// eps 1e-4 under the root, averaged over dimensions and over the two views) and covariance
/// (the squared off-diagonal entries of each view's covariance matrix, summed, divided by `D`,
/// and summed over the two views), as the reference implementation computes them.
pub fn vicreg_terms(z1: Tensor<2>, z2: Tensor<2>) -> (Tensor<1>, Tensor<1>, Tensor<1>) {
    let [b, d] = z1.dims();
    let invariance = (z1.clone() - z2.clone()).powi_scalar(2).mean();
    let variance_and_covariance = |z: Tensor<2>| {
        let centred = z.clone() - z.mean_dim(0);
        let var = centred.clone().powi_scalar(2).sum_dim(0) / (b as f32 - 1.0);
        let std = (var.clone() + 1e-4).sqrt();
        let hinge = relu(std.neg() + 1.0).mean();
        let cov = centred.clone().transpose().matmul(centred) / (b as f32 - 1.0);
        let off = cov.powi_scalar(2).sum() - var.powi_scalar(2).sum();
        (hinge, off / d as f32)
    };
    let (v1, c1) = variance_and_covariance(z1);
    let (v2, c2) = variance_and_covariance(z2);
    (invariance, (v1 + v2) / 2.0, c1 + c2)
}

/// VICReg's loss: `sim · invariance + var · variance + cov · covariance` of
/// [`vicreg_terms`] (the paper's weights: 25, 25, 1).
pub fn vicreg(z1: Tensor<2>, z2: Tensor<2>, weights: [f32; 3]) -> Tensor<1> {
    let (i, v, c) = vicreg_terms(z1, z2);
    i * weights[0] + v * weights[1] + c * weights[2]
}

/// DINO's loss (Caron et al. 2021, eq. 3 and Algorithm 1): the teacher's outputs of the
/// global crops `teacher` (`[B, K]` each, no gradient), centred by `center` (`[K]`) and
/// sharpened by `teacher_temp`, are the targets of the student's outputs of every other crop
/// `student` (`[B, K]` each; `student[i]` is the crop `teacher[i]` saw, for `i` below
/// `teacher.len()`) at `student_temp`: the cross-entropy `-Σ_k P_t log P_s`, averaged over the
/// batch and over the pairs of different crops.
pub fn dino(
    teacher: &[Tensor<2>],
    student: &[Tensor<2>],
    center: Tensor<1>,
    teacher_temp: f32,
    student_temp: f32,
) -> Tensor<1> {
    use burn::tensor::activation::{log_softmax, softmax};
    let k = center.dims()[0];
    let center = center.reshape([1, k]);
    let mut total: Option<Tensor<1>> = None;
    let mut pairs = 0;
    for (i, t) in teacher.iter().enumerate() {
        let p_t = softmax((t.clone() - center.clone()) / teacher_temp, 1).detach();
        for (_, s) in student.iter().enumerate().filter(|(j, _)| *j != i) {
            let log_p_s = log_softmax(s.clone() / student_temp, 1);
            let ce = (p_t.clone() * log_p_s).sum_dim(1).mean().neg();
            total = Some(match total {
                Some(sum) => sum + ce,
                None => ce,
            });
            pairs += 1;
        }
    }
    total.expect("at least two crops") / pairs as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    type Rows = Vec<Vec<f64>>;

    #[test]
    fn dino_by_hand_in_f64() {
        // Two global crops seen by the teacher, three crops by the student, B = 2, K = 3.
        let t: Vec<Rows> = vec![
            vec![vec![1.0, 0.0, -1.0], vec![0.5, 0.2, 0.1]],
            vec![vec![0.0, 2.0, 0.0], vec![-0.3, 0.0, 0.9]],
        ];
        let s: Vec<Rows> = vec![
            vec![vec![0.2, 0.1, 0.0], vec![1.0, -1.0, 0.5]],
            vec![vec![0.0, 0.3, 0.6], vec![0.1, 0.1, 0.1]],
            vec![vec![-0.5, 0.5, 0.2], vec![0.7, 0.0, -0.2]],
        ];
        let c = [0.1, -0.2, 0.05];
        let (tt, st) = (0.5, 0.25);
        let softmax = |r: &[f64], temp: f64| -> Vec<f64> {
            let e: Vec<f64> = r.iter().map(|x| (x / temp).exp()).collect();
            let z: f64 = e.iter().sum();
            e.iter().map(|v| v / z).collect()
        };
        let mut want = 0.0;
        let mut pairs = 0;
        for (i, ti) in t.iter().enumerate() {
            for (j, sj) in s.iter().enumerate() {
                if i == j {
                    continue;
                }
                let mut ce = 0.0;
                for b in 0..2 {
                    let centred: Vec<f64> = ti[b].iter().zip(&c).map(|(x, m)| x - m).collect();
                    let pt = softmax(&centred, tt);
                    let ps = softmax(&sj[b], st);
                    ce -= pt.iter().zip(&ps).map(|(p, q)| p * q.ln()).sum::<f64>();
                }
                want += ce / 2.0;
                pairs += 1;
            }
        }
        want /= pairs as f64;
        assert_eq!(pairs, 4);
        let center = Tensor::<1>::from_data(
            TensorData::new(c.iter().map(|&v| v as f32).collect::<Vec<_>>(), [3]),
            &Device::flex(),
        );
        let tt32: Vec<Tensor<2>> = t.iter().map(tensor).collect();
        let st32: Vec<Tensor<2>> = s.iter().map(tensor).collect();
        let got: f32 = dino(&tt32, &st32, center, tt as f32, st as f32).into_scalar();
        assert!((got as f64 - want).abs() < 1e-5, "{got} vs {want}");
    }

    fn tensor(rows: &Rows) -> Tensor<2> {
        let (b, d) = (rows.len(), rows[0].len());
        let data: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
        Tensor::from_data(TensorData::new(data, [b, d]), &Device::flex())
    }

    /// Deterministic pseudo-random rows in [-1, 1] (a linear congruential generator).
    fn rows(b: usize, d: usize, seed: u64) -> Rows {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..b)
            .map(|_| {
                (0..d)
                    .map(|_| {
                        s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                        ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
                    })
                    .collect()
            })
            .collect()
    }

    fn column_stats(z: &Rows, j: usize, unbiased: bool) -> (f64, f64) {
        let b = z.len() as f64;
        let mean = z.iter().map(|r| r[j]).sum::<f64>() / b;
        let ss = z.iter().map(|r| (r[j] - mean).powi(2)).sum::<f64>();
        (mean, ss / if unbiased { b - 1.0 } else { b })
    }

    /// Barlow Twins in f64, written from the paper's pseudo-code.
    fn barlow_reference(z1: &Rows, z2: &Rows, lambda: f64) -> f64 {
        let (b, d) = (z1.len(), z1[0].len());
        let norm = |z: &Rows| -> Rows {
            let stats: Vec<(f64, f64)> = (0..d).map(|j| column_stats(z, j, false)).collect();
            z.iter()
                .map(|r| {
                    (0..d)
                        .map(|j| (r[j] - stats[j].0) / (stats[j].1 + 1e-5).sqrt())
                        .collect()
                })
                .collect()
        };
        let (a, c) = (norm(z1), norm(z2));
        let mut loss = 0.0;
        for i in 0..d {
            for j in 0..d {
                let cij = (0..b).map(|n| a[n][i] * c[n][j]).sum::<f64>() / b as f64;
                loss += if i == j {
                    (1.0 - cij).powi(2)
                } else {
                    lambda * cij * cij
                };
            }
        }
        loss
    }

    /// VICReg's three terms in f64, written from the paper's equations.
    fn vicreg_reference(z1: &Rows, z2: &Rows) -> (f64, f64, f64) {
        let (b, d) = (z1.len(), z1[0].len());
        let inv = z1
            .iter()
            .zip(z2)
            .flat_map(|(r, s)| r.iter().zip(s).map(|(x, y)| (x - y).powi(2)))
            .sum::<f64>()
            / (b * d) as f64;
        let var_cov = |z: &Rows| {
            let stats: Vec<(f64, f64)> = (0..d).map(|j| column_stats(z, j, true)).collect();
            let var = stats
                .iter()
                .map(|s| (1.0 - (s.1 + 1e-4).sqrt()).max(0.0))
                .sum::<f64>()
                / d as f64;
            let mut cov = 0.0;
            for i in 0..d {
                for j in 0..d {
                    if i != j {
                        let c = z
                            .iter()
                            .map(|r| (r[i] - stats[i].0) * (r[j] - stats[j].0))
                            .sum::<f64>()
                            / (b as f64 - 1.0);
                        cov += c * c;
                    }
                }
            }
            (var, cov / d as f64)
        };
        let ((v1, c1), (v2, c2)) = (var_cov(z1), var_cov(z2));
        (inv, (v1 + v2) / 2.0, c1 + c2)
    }

    #[test]
    fn cosine_losses_by_hand() {
        let p = tensor(&vec![vec![1.0, 0.0], vec![0.0, 2.0]]);
        let z = tensor(&vec![vec![3.0, 0.0], vec![1.0, 0.0]]);
        // cos = 1 and 0: D = -(1 + 0) / 2; 2 - 2 cos averaged = (0 + 2) / 2.
        let d: f32 = negative_cosine(p.clone(), z.clone()).into_scalar();
        let m: f32 = normalized_mse(p, z).into_scalar();
        assert!((d + 0.5).abs() < 1e-6 && (m - 1.0).abs() < 1e-6, "{d} {m}");
    }

    #[test]
    fn barlow_twins_is_zero_for_decorrelated_equal_views_and_matches_an_f64_reference() {
        let z = vec![
            vec![1.0, 1.0],
            vec![1.0, -1.0],
            vec![-1.0, 1.0],
            vec![-1.0, -1.0],
        ];
        let same: f32 = barlow_twins(tensor(&z), tensor(&z), 0.5).into_scalar();
        assert!(same.abs() < 1e-4, "{same}");
        // Opposite views: C = -I, each diagonal term (1 - (-1))^2 = 4.
        let neg: Rows = z.iter().map(|r| r.iter().map(|v| -v).collect()).collect();
        let opposite: f32 = barlow_twins(tensor(&z), tensor(&neg), 0.5).into_scalar();
        assert!((opposite - 8.0).abs() < 1e-3, "{opposite}");
        for seed in 1..4 {
            let (a, b) = (rows(16, 6, seed), rows(16, 6, seed + 50));
            let got: f32 = barlow_twins(tensor(&a), tensor(&b), 0.0051).into_scalar();
            let want = barlow_reference(&a, &b, 0.0051);
            assert!(
                (got as f64 - want).abs() < 1e-4 * want.max(1.0),
                "{got} vs {want}"
            );
        }
    }

    #[test]
    fn vicreg_terms_match_an_f64_reference() {
        for seed in 1..4 {
            let (a, b) = (rows(12, 5, seed), rows(12, 5, seed + 70));
            let (i, v, c) = vicreg_terms(tensor(&a), tensor(&b));
            let got = [i, v, c].map(|t| t.into_scalar::<f32>() as f64);
            let (wi, wv, wc) = vicreg_reference(&a, &b);
            for (g, w) in got.iter().zip([wi, wv, wc]) {
                assert!(
                    (g - w).abs() < 1e-5 * w.max(1.0),
                    "{got:?} vs {:?}",
                    (wi, wv, wc)
                );
            }
            let total: f32 = vicreg(tensor(&a), tensor(&b), [25.0, 25.0, 1.0]).into_scalar();
            assert!((total as f64 - (25.0 * wi + 25.0 * wv + wc)).abs() < 1e-3);
        }
        // Equal views: no invariance term; spread dimensions (std > 1): no variance term.
        let z: Rows = rows(10, 3, 9)
            .iter()
            .map(|r| r.iter().map(|v| 4.0 * v).collect())
            .collect();
        let (i, v, _) = vicreg_terms(tensor(&z), tensor(&z));
        let (i, v): (f32, f32) = (i.into_scalar(), v.into_scalar());
        assert!(i.abs() < 1e-7 && v.abs() < 1e-7, "{i} {v}");
    }
}
