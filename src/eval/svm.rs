//! Linear SVMs on frozen features with the VOC07 protocol of Goyal et al. 2019 (as VISSL runs
//! it): features L2-normalized; per class a one-vs-rest SVM with squared hinge loss and L2
//! penalty, positives weighted 2; a sweep over costs, each scored by 3-fold cross-validated
//! average precision; the best cost per class refit on all training features and scored by
//! test AP; the mean over classes is the mAP.
//!
//! The solver is dual coordinate descent for the L2-loss SVM (Hsieh et al. 2008, liblinear's
//! `-s 1`, what scikit-learn's `LinearSVC(dual=True)` calls), with the bias as an extra
//! feature of value 1 (regularized, as liblinear does) and liblinear's shrinking of
//! coordinates that stay at zero. Classes and costs run in parallel.

use super::Features;
use super::ap::{step_ap, voc_ap};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// The SVM protocol's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct SvmConfig {
    /// Costs C to sweep.
    pub costs: Vec<f64>,
    /// Cross-validation folds.
    pub folds: usize,
    /// Weight of positive examples in the loss (negatives weigh 1).
    pub positive_weight: f64,
    /// Stop when the projected gradient's spread falls below this.
    pub tol: f64,
    /// Most passes over the data per fit.
    pub max_iter: usize,
    /// Seed of the coordinate order.
    pub seed: u64,
}

impl Default for SvmConfig {
    fn default() -> Self {
        SvmConfig {
            costs: vec![
                0.01, 0.1, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 50.0, 100.0, 1000.0,
            ],
            folds: 3,
            positive_weight: 2.0,
            tol: 1e-4,
            max_iter: 2000,
            seed: 0,
        }
    }
}

/// A trained linear SVM: `score(x) = w . x + bias`.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearSvm {
    /// Weights, one per feature.
    pub w: Vec<f64>,
    /// Bias.
    pub bias: f64,
    /// Passes over the data the solver made.
    pub iterations: usize,
}

impl LinearSvm {
    /// The decision value of one feature row.
    pub fn score(&self, x: &[f32]) -> f64 {
        self.w
            .iter()
            .zip(x)
            .map(|(w, &v)| w * v as f64)
            .sum::<f64>()
            + self.bias
    }
}

/// Fits an L2-regularized squared-hinge SVM to rows `rows` of `x` (`dim` values each) with
/// labels `positive`, cost `c` (times `positive_weight` for positives), by dual coordinate
/// descent: minimizes `0.5 |w|^2 + sum_i C_i max(0, 1 - y_i w.x_i)^2` (bias included in `w`).
pub fn fit(
    x: &[f32],
    dim: usize,
    rows: &[usize],
    positive: &[bool],
    c: f64,
    cfg: &SvmConfig,
    seed: u64,
) -> LinearSvm {
    let n = rows.len();
    let mut w = vec![0.0f64; dim + 1];
    let mut alpha = vec![0.0f64; n];
    let y: Vec<f64> = rows
        .iter()
        .map(|&r| if positive[r] { 1.0 } else { -1.0 })
        .collect();
    // D_ii = 1 / (2 C_i) for the squared hinge.
    let diag: Vec<f64> = y
        .iter()
        .map(|&yi| 0.5 / (c * if yi > 0.0 { cfg.positive_weight } else { 1.0 }))
        .collect();
    let qd: Vec<f64> = rows
        .iter()
        .zip(&diag)
        .map(|(&r, d)| {
            x[r * dim..(r + 1) * dim]
                .iter()
                .map(|&v| (v as f64) * (v as f64))
                .sum::<f64>()
                + 1.0
                + d
        })
        .collect();
    // Coordinates whose projected gradient says they will stay at zero are set aside
    // (liblinear's shrinking) and brought back for a final check before stopping.
    let mut index: Vec<usize> = (0..n).collect();
    let mut active = n;
    // (The upper-bound half of liblinear's test never applies: the squared hinge has no C bound.)
    let mut pg_max_old = f64::INFINITY;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut iterations = 0;
    while iterations < cfg.max_iter {
        index[..active].shuffle(&mut rng);
        let (mut pg_max, mut pg_min) = (f64::NEG_INFINITY, f64::INFINITY);
        let mut s = 0;
        while s < active {
            let i = index[s];
            let xi = &x[rows[i] * dim..(rows[i] + 1) * dim];
            let wx: f64 = w.iter().zip(xi).map(|(w, &v)| w * v as f64).sum::<f64>() + w[dim];
            let g = y[i] * wx - 1.0 + alpha[i] * diag[i];
            let pg = if alpha[i] == 0.0 {
                if g > pg_max_old {
                    active -= 1;
                    index.swap(s, active);
                    continue;
                }
                g.min(0.0)
            } else {
                g
            };
            pg_max = pg_max.max(pg);
            pg_min = pg_min.min(pg);
            if pg.abs() > 1e-12 {
                let old = alpha[i];
                alpha[i] = (alpha[i] - g / qd[i]).max(0.0);
                let step = (alpha[i] - old) * y[i];
                for (wj, &v) in w.iter_mut().zip(xi) {
                    *wj += step * v as f64;
                }
                w[dim] += step;
            }
            s += 1;
        }
        iterations += 1;
        if pg_max - pg_min <= cfg.tol {
            if active == n {
                break;
            }
            active = n;
            pg_max_old = f64::INFINITY;
            continue;
        }
        pg_max_old = if pg_max <= 0.0 { f64::INFINITY } else { pg_max };
    }
    let bias = w.pop().unwrap_or(0.0);
    LinearSvm {
        w,
        bias,
        iterations,
    }
}

/// Rows L2-normalized as VISSL does (`x / (|x| + 1e-5)`).
pub fn normalize_rows(f: &Features) -> Features {
    let mut out = f.clone();
    for row in out.data.chunks_mut(f.dim.max(1)) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        row.iter_mut().for_each(|v| *v /= norm + 1e-5);
    }
    out
}

/// One-vs-rest targets of single-label data: `targets[c][i]` is whether image `i` has class `c`.
pub fn one_vs_rest(labels: &[u32], num_classes: usize) -> Vec<Vec<bool>> {
    (0..num_classes)
        .map(|c| labels.iter().map(|&l| l as usize == c).collect())
        .collect()
}

/// Stratified folds: positives and negatives each dealt in index order to `k` contiguous
/// blocks (as scikit-learn's `StratifiedKFold` without shuffling, up to how it rounds).
pub fn stratified_folds(positive: &[bool], k: usize) -> Vec<usize> {
    let mut fold = vec![0; positive.len()];
    for class in [true, false] {
        let idx: Vec<usize> = (0..positive.len())
            .filter(|&i| positive[i] == class)
            .collect();
        let m = idx.len();
        for (j, &i) in idx.iter().enumerate() {
            fold[i] = (j * k / m.max(1)).min(k - 1);
        }
    }
    fold
}

/// One class's outcome.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ClassResult {
    /// Class index.
    pub class: usize,
    /// Cross-validated AP for each cost of the sweep.
    pub cv_ap: Vec<f64>,
    /// The cost with the best cross-validated AP.
    pub best_cost: f64,
    /// Test AP of the SVM refit with that cost (`None` without test positives).
    pub test_ap: Option<f64>,
}

/// The VOC07 SVM benchmark's outcome.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SvmReport {
    /// Per-class results.
    pub classes: Vec<ClassResult>,
    /// Mean test AP over the classes that have test positives, in percent.
    pub map: f64,
}

/// Runs the protocol: `train_targets[c]` / `test_targets[c]` say which images have class `c`
/// (several per image for multi-label data).
pub fn voc07(
    train: &Features,
    train_targets: &[Vec<bool>],
    test: &Features,
    test_targets: &[Vec<bool>],
    cfg: &SvmConfig,
) -> SvmReport {
    let train = normalize_rows(train);
    let test = normalize_rows(test);
    let d = train.dim;
    let all: Vec<usize> = (0..train.n).collect();
    let jobs: Vec<(usize, usize)> = (0..train_targets.len())
        .flat_map(|c| (0..cfg.costs.len()).map(move |k| (c, k)))
        .collect();
    // Cross-validated AP of every (class, cost).
    let cv: Vec<f64> = jobs
        .par_iter()
        .map(|&(c, k)| {
            let pos = &train_targets[c];
            let folds = stratified_folds(pos, cfg.folds);
            let mut aps = Vec::new();
            for f in 0..cfg.folds {
                let fit_rows: Vec<usize> = all.iter().copied().filter(|&i| folds[i] != f).collect();
                let held: Vec<usize> = all.iter().copied().filter(|&i| folds[i] == f).collect();
                let svm = fit(
                    &train.data,
                    d,
                    &fit_rows,
                    pos,
                    cfg.costs[k],
                    cfg,
                    cfg.seed ^ (c * 1000 + k * 10 + f) as u64,
                );
                let scores: Vec<f32> = held
                    .iter()
                    .map(|&i| svm.score(train.row(i)) as f32)
                    .collect();
                let labels: Vec<bool> = held.iter().map(|&i| pos[i]).collect();
                aps.push(step_ap(&scores, &labels).unwrap_or(0.0));
            }
            aps.iter().sum::<f64>() / aps.len() as f64
        })
        .collect();
    let classes: Vec<ClassResult> = (0..train_targets.len())
        .into_par_iter()
        .map(|c| {
            let cv_ap = cv[c * cfg.costs.len()..(c + 1) * cfg.costs.len()].to_vec();
            // First best, as numpy's argmax.
            let best = (0..cv_ap.len()).fold(0, |b, k| if cv_ap[k] > cv_ap[b] { k } else { b });
            let svm = fit(
                &train.data,
                d,
                &all,
                &train_targets[c],
                cfg.costs[best],
                cfg,
                cfg.seed ^ (c as u64 + 7) << 20,
            );
            let scores: Vec<f32> = (0..test.n).map(|i| svm.score(test.row(i)) as f32).collect();
            ClassResult {
                class: c,
                cv_ap,
                best_cost: cfg.costs[best],
                test_ap: voc_ap(&scores, &test_targets[c]),
            }
        })
        .collect();
    let scored: Vec<f64> = classes.iter().filter_map(|c| c.test_ap).collect();
    let map = 100.0 * scored.iter().sum::<f64>() / scored.len().max(1) as f64;
    SvmReport { classes, map }
}

/// Reads a multi-label file: one line per image (in the split's order), its class indices
/// separated by spaces or commas (an empty line: no class). Returns the per-image label lists;
/// errors name the file and line.
pub fn read_label_file(path: &std::path::Path, images: usize) -> crate::Result<Vec<Vec<usize>>> {
    use crate::Error;
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let rows: Vec<Vec<usize>> = text
        .lines()
        .enumerate()
        .map(|(i, line)| {
            line.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|t| !t.is_empty())
                .map(|t| {
                    t.parse::<usize>().map_err(|_| {
                        Error::format(path, format!("line {}: '{t}' is not a class index", i + 1))
                    })
                })
                .collect()
        })
        .collect::<crate::Result<_>>()?;
    if rows.len() != images {
        return Err(Error::format(
            path,
            format!(
                "has {} lines for {images} images (one line per image)",
                rows.len()
            ),
        ));
    }
    Ok(rows)
}

/// Per-class targets (`targets[c][i]`) of per-image label lists, for `classes` classes.
pub fn multi_label_targets(labels: &[Vec<usize>], classes: usize) -> Vec<Vec<bool>> {
    (0..classes)
        .map(|c| labels.iter().map(|l| l.contains(&c)).collect())
        .collect()
}
