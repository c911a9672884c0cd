//! Linear probe: multinomial logistic regression on frozen, standardized features, trained
//! with mini-batch Adam and a cosine learning-rate decay. The L2 penalty is chosen from a
//! small grid on a held-out tenth of the training features, then the probe is refit on all.

use super::Features;
use crate::data::loader::mix_seed;
use crate::linalg::matmul;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Linear-probe settings.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearProbeConfig {
    /// Passes over the training features; 0 picks a number that keeps the work about constant
    /// (60 passes over 10,000 rows, 10 over 60,000) with at least [`MIN_STEPS`] steps.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Adam's peak learning rate.
    pub lr: f64,
    /// Candidate L2 penalties (one value skips the validation split).
    pub weight_decays: Vec<f64>,
    /// Seed for shuffling and the validation split.
    pub seed: u64,
}

impl Default for LinearProbeConfig {
    fn default() -> Self {
        LinearProbeConfig {
            epochs: 0,
            batch_size: 256,
            lr: 1e-3,
            weight_decays: vec![0.0, 1e-4, 1e-3],
            seed: 0,
        }
    }
}

/// The fewest Adam steps of a probe with `epochs = 0`: with fewer (a few hundred rows, 60
/// passes of 2 batches), Adam at lr 1e-3 moves each weight by at most about 0.1 and the probe
/// stops far from the optimum (91 % on four separable clusters, see the tests).
pub const MIN_STEPS: usize = 2000;

/// The result of a probe.
#[derive(Clone, Debug)]
pub struct LinearProbeResult {
    /// Predicted class of each test row.
    pub predictions: Vec<u32>,
    /// The L2 penalty that was selected.
    pub weight_decay: f64,
}

/// Per-dimension mean and standard deviation of the training features.
fn standardizer(f: &Features) -> (Vec<f32>, Vec<f32>) {
    let mut mean = vec![0.0f64; f.dim];
    let mut sq = vec![0.0f64; f.dim];
    for i in 0..f.n {
        for (j, &v) in f.row(i).iter().enumerate() {
            mean[j] += v as f64;
            sq[j] += (v as f64) * (v as f64);
        }
    }
    let n = f.n.max(1) as f64;
    let m: Vec<f32> = mean.iter().map(|s| (s / n) as f32).collect();
    let s: Vec<f32> = sq
        .iter()
        .zip(&mean)
        .map(|(q, s)| ((q / n - (s / n).powi(2)).max(0.0).sqrt() as f32).max(1e-6))
        .collect();
    (m, s)
}

fn standardize(f: &Features, rows: &[usize], mean: &[f32], std: &[f32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len() * f.dim);
    for &i in rows {
        out.extend(
            f.row(i)
                .iter()
                .zip(mean)
                .zip(std)
                .map(|((v, m), s)| (v - m) / s),
        );
    }
    out
}

/// A fitted probe: weights `w [k, d]` (one row of `d` weights per class) and biases `b [k]`.
struct Probe {
    w: Vec<f32>,
    b: Vec<f32>,
}

impl Probe {
    fn zeros(d: usize, k: usize) -> Self {
        Probe {
            w: vec![0.0; k * d],
            b: vec![0.0; k],
        }
    }
}

/// Adam's moment estimates for one parameter vector.
struct AdamState {
    m: Vec<f32>,
    v: Vec<f32>,
}

impl AdamState {
    fn new(n: usize) -> Self {
        AdamState {
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }

    /// One Adam update of `param` with gradient `grad` (betas 0.9 / 0.999, eps 1e-8), `bc1`
    /// and `bc2` being the bias corrections `1 - beta^t`.
    fn step(&mut self, param: &mut [f32], grad: &[f32], lr: f32, bc1: f32, bc2: f32) {
        const B1: f32 = 0.9;
        const B2: f32 = 0.999;
        for (((p, g), m), v) in param.iter_mut().zip(grad).zip(&mut self.m).zip(&mut self.v) {
            *m = B1 * *m + (1.0 - B1) * g;
            *v = B2 * *v + (1.0 - B2) * g * g;
            *p -= lr * (*m / bc1) / ((*v / bc2).sqrt() + 1e-8);
        }
    }
}

/// Scratch space of [`gradient`]: the gathered rows and their residuals.
#[derive(Default)]
struct Scratch {
    xb: Vec<f32>,
    r: Vec<f32>,
}

/// The loss of `probe` on the rows `rows` of `x [n, d]` (labels `y`), mean cross-entropy plus
/// `wd / 2 * |W|^2`, and its gradient into `gw [k, d]` and `gb [k]`: with the residuals
/// `R = softmax(X Wᵀ + b) - onehot(y)` of the gathered rows `X [m, d]`,
/// `gw = Rᵀ X / m + wd W` and `gb` the column sums of `R / m`; two matrix products.
fn gradient(
    x: &[f32],
    y: &[u32],
    rows: &[usize],
    probe: &Probe,
    wd: f64,
    gw: &mut [f32],
    gb: &mut [f32],
    scratch: &mut Scratch,
) -> f64 {
    let (k, m) = (probe.b.len(), rows.len());
    let d = probe.w.len() / k;
    scratch.xb.resize(m * d, 0.0);
    scratch.r.resize(m * k, 0.0);
    let (xb, r) = (&mut scratch.xb[..m * d], &mut scratch.r[..m * k]);
    for (dst, &i) in xb.chunks_exact_mut(d).zip(rows) {
        dst.copy_from_slice(&x[i * d..(i + 1) * d]);
    }
    // R [m, k] = X [m, d] · Wᵀ [d, k]
    matmul((m, k, d), r, k, false, xb, (d, 1), &probe.w, (1, d));
    let inv_m = 1.0 / m as f32;
    let mut loss = 0.0f64;
    for (row, &i) in r.chunks_exact_mut(k).zip(rows) {
        for (v, b) in row.iter_mut().zip(&probe.b) {
            *v += b;
        }
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        let label = y[i] as usize;
        loss -= ((row[label] / sum).max(f32::MIN_POSITIVE) as f64).ln();
        for (c, v) in row.iter_mut().enumerate() {
            *v = (*v / sum - (c == label) as u8 as f32) * inv_m;
        }
    }
    // gw [k, d] = Rᵀ [k, m] · X [m, d]
    matmul((k, d, m), gw, d, false, r, (1, k), xb, (d, 1));
    let mut sq = 0.0f64;
    for (g, w) in gw.iter_mut().zip(&probe.w) {
        *g += wd as f32 * w;
        sq += (*w as f64).powi(2);
    }
    gb.iter_mut().for_each(|v| *v = 0.0);
    for row in r.chunks_exact(k) {
        for (s, v) in gb.iter_mut().zip(row) {
            *s += v;
        }
    }
    loss / m as f64 + 0.5 * wd * sq
}

/// Trains a probe on the standardized rows `x [n, d]` with labels `y`: mini-batch Adam on the
/// mean cross-entropy plus `wd / 2 * |W|^2`, the learning rate decayed by a cosine to 0.
/// Written on slices, one thread (the gradient of softmax regression is closed-form, so no
/// autodiff is needed).
fn fit(x: &[f32], y: &[u32], d: usize, k: usize, wd: f64, cfg: &LinearProbeConfig) -> Probe {
    let n = y.len();
    let mut probe = Probe::zeros(d, k);
    let (mut adam_w, mut adam_b) = (AdamState::new(k * d), AdamState::new(k));
    let bs = cfg.batch_size.min(n).max(1);
    let steps_per_epoch = n.div_ceil(bs);
    let epochs = if cfg.epochs > 0 {
        cfg.epochs
    } else {
        (600_000 / n.max(1))
            .clamp(10, 60)
            .max(MIN_STEPS.div_ceil(steps_per_epoch))
    };
    let total = (epochs * steps_per_epoch) as f64;
    let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[cfg.seed, 0x11AE]));
    let mut order: Vec<usize> = (0..n).collect();
    let (mut gw, mut gb) = (vec![0.0f32; k * d], vec![0.0f32; k]);
    let mut scratch = Scratch::default();
    let mut t = 0i32;
    for _ in 0..epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks(bs) {
            t += 1;
            let lr = cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * (t - 1) as f64 / total).cos());
            gradient(x, y, chunk, &probe, wd, &mut gw, &mut gb, &mut scratch);
            let bc1 = (1.0 - 0.9f64.powi(t)) as f32;
            let bc2 = (1.0 - 0.999f64.powi(t)) as f32;
            adam_w.step(&mut probe.w, &gw, lr as f32, bc1, bc2);
            adam_b.step(&mut probe.b, &gb, lr as f32, bc1, bc2);
        }
    }
    probe
}

/// The class of largest logit of each row of `x [n, d]` (the first one on ties).
fn predict(x: &[f32], n: usize, d: usize, probe: &Probe) -> Vec<u32> {
    let k = probe.b.len();
    let mut logits = vec![0.0f32; n * k];
    matmul(
        (n, k, d),
        &mut logits,
        k,
        false,
        x,
        (d, 1),
        &probe.w,
        (1, d),
    );
    logits
        .chunks_exact(k)
        .map(|row| {
            let mut best = 0;
            for (j, (v, b)) in row.iter().zip(&probe.b).enumerate() {
                if v + b > row[best] + probe.b[best] {
                    best = j;
                }
            }
            best as u32
        })
        .collect()
}

/// Fits a linear probe on `train` (with `labels`) and predicts the class of each `test` row.
pub fn fit_predict(
    train: &Features,
    labels: &[u32],
    test: &Features,
    cfg: &LinearProbeConfig,
) -> LinearProbeResult {
    let k = labels.iter().copied().max().map_or(1, |m| m as usize + 1);
    let d = train.dim;
    let (mean, std) = standardizer(train);
    let all: Vec<usize> = (0..train.n).collect();
    let mut wd = cfg.weight_decays.first().copied().unwrap_or(0.0);
    if cfg.weight_decays.len() > 1 && train.n >= 20 {
        let mut perm = all.clone();
        perm.shuffle(&mut ChaCha8Rng::seed_from_u64(mix_seed(&[cfg.seed, 0x5A1])));
        let nval = train.n / 10;
        let (val, fit_rows) = perm.split_at(nval);
        let xf = standardize(train, fit_rows, &mean, &std);
        let yf: Vec<u32> = fit_rows.iter().map(|&i| labels[i]).collect();
        let xv = standardize(train, val, &mean, &std);
        let yv: Vec<u32> = val.iter().map(|&i| labels[i]).collect();
        // The candidates are fitted in parallel; the first of the best is kept.
        let scores: Vec<f64> = cfg
            .weight_decays
            .par_iter()
            .map(|&c| {
                let probe = fit(&xf, &yf, d, k, c, cfg);
                super::accuracy(&predict(&xv, val.len(), d, &probe), &yv)
            })
            .collect();
        let mut best = -1.0;
        for (&c, &acc) in cfg.weight_decays.iter().zip(&scores) {
            if acc > best {
                best = acc;
                wd = c;
            }
        }
    }
    let x = standardize(train, &all, &mean, &std);
    let probe = fit(&x, labels, d, k, wd, cfg);
    let test_rows: Vec<usize> = (0..test.n).collect();
    let xt = standardize(test, &test_rows, &mean, &std);
    LinearProbeResult {
        predictions: predict(&xt, test.n, d, &probe),
        weight_decay: wd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn features(rows: &[Vec<f32>]) -> Features {
        Features {
            n: rows.len(),
            dim: rows[0].len(),
            data: rows.concat(),
        }
    }

    /// A standard normal draw (Box-Muller).
    fn normal(rng: &mut ChaCha8Rng) -> f32 {
        let (u, v): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }

    #[test]
    fn gradient_matches_finite_differences() {
        // Central differences of the f64 loss at a random point, step 1e-2 (the loss is
        // smooth; f32 rounding of the loss is about 1e-7 relative).
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (m, d, k) = (7, 5, 3);
        let xb: Vec<f32> = (0..m * d).map(|_| normal(&mut rng)).collect();
        let yb: Vec<u32> = (0..m).map(|i| (i % k) as u32).collect();
        let params: Vec<f32> = (0..d * k + k).map(|_| 0.5 * normal(&mut rng)).collect();
        let probe_of = |p: &[f32]| Probe {
            w: p[..d * k].to_vec(),
            b: p[d * k..].to_vec(),
        };
        let wd = 0.3;
        let rows: Vec<usize> = (0..m).collect();
        let loss_and_grad = |p: &[f32]| {
            let (mut gw, mut gb) = (vec![0.0; d * k], vec![0.0; k]);
            let mut scratch = Scratch::default();
            let loss = gradient(
                &xb,
                &yb,
                &rows,
                &probe_of(p),
                wd,
                &mut gw,
                &mut gb,
                &mut scratch,
            );
            (loss, [gw, gb].concat())
        };
        let (_, analytic) = loss_and_grad(&params);
        let h = 1e-2f32;
        for j in 0..params.len() {
            let (mut up, mut down) = (params.clone(), params.clone());
            up[j] += h;
            down[j] -= h;
            let fd = (loss_and_grad(&up).0 - loss_and_grad(&down).0) / (2.0 * h as f64);
            let a = analytic[j] as f64;
            assert!((fd - a).abs() < 2e-3, "parameter {j}: fd {fd} vs {a}");
        }
    }

    #[test]
    fn separable_classes_are_classified_exactly() {
        // Four classes in the corners of a square, far apart compared with their spread, and
        // a third coordinate of pure noise on a much larger scale (standardization must make
        // it harmless).
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let corners = [(-1.0f32, -1.0f32), (1.0, -1.0), (-1.0, 1.0), (1.0, 1.0)];
        let mut draw = |n: usize| {
            let (mut rows, mut labels) = (Vec::new(), Vec::new());
            for i in 0..n {
                let c = i % 4;
                let (x, y) = corners[c];
                rows.push(vec![
                    x + 0.2 * normal(&mut rng),
                    y + 0.2 * normal(&mut rng),
                    100.0 * normal(&mut rng),
                ]);
                labels.push(c as u32);
            }
            (features(&rows), labels)
        };
        let (train, ytr) = draw(400);
        let (test, yte) = draw(400);
        let r = fit_predict(&train, &ytr, &test, &LinearProbeConfig::default());
        assert_eq!(crate::eval::accuracy(&r.predictions, &yte), 100.0);
    }

    #[test]
    fn overlapping_gaussians_reach_the_bayes_accuracy() {
        // Two classes N(-1, 1) and N(+1, 1) on the first coordinate, four noise coordinates:
        // the Bayes-optimal rule is linear (x0 > 0) with accuracy Phi(1) = 84.134 %, which a
        // logistic regression reaches as the data grows. On 20,000 test points the binomial
        // SE is sqrt(0.84 * 0.16 / 20000) = 0.26 points; the probe fit on 4,000 points loses
        // under 0.1 point to estimation, so 1 point (3.8 SE) is the tolerance.
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut draw = |n: usize| {
            let (mut rows, mut labels) = (Vec::new(), Vec::new());
            for i in 0..n {
                let c = (i % 2) as u32;
                let mut row: Vec<f32> = (0..5).map(|_| normal(&mut rng)).collect();
                row[0] += if c == 0 { -1.0 } else { 1.0 };
                rows.push(row);
                labels.push(c);
            }
            (features(&rows), labels)
        };
        let (train, ytr) = draw(4000);
        let (test, yte) = draw(20_000);
        let r = fit_predict(&train, &ytr, &test, &LinearProbeConfig::default());
        let acc = crate::eval::accuracy(&r.predictions, &yte);
        // The Bayes rule on the same test points, as the reference.
        let bayes: Vec<u32> = (0..test.n).map(|i| (test.row(i)[0] > 0.0) as u32).collect();
        let bayes_acc = crate::eval::accuracy(&bayes, &yte);
        assert!((bayes_acc - 84.134).abs() < 1.0, "Bayes rule {bayes_acc}");
        assert!(
            (acc - bayes_acc).abs() < 1.0,
            "probe {acc} vs Bayes {bayes_acc}"
        );
    }
}
