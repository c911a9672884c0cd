//! Low-shot evaluation: k labelled images per class drawn from the training features, a
//! classifier fit on them alone, top-1 on the whole test split; several draws per k, reported
//! as mean and standard deviation (the protocol of Goyal et al. 2019, on single-label data).

use super::svm::{self, SvmConfig};
use super::{Features, accuracy, linear};
use crate::data::loader::mix_seed;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// The classifier fit on the few labelled images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum LowShotModel {
    /// One-vs-rest linear SVMs (L2-normalized features, squared hinge), prediction by the
    /// highest decision value.
    Svm,
    /// The linear probe (logistic regression on standardized features).
    Linear,
}

/// One row of the low-shot table.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LowShotRow {
    /// Labelled images per class.
    pub k: usize,
    /// Top-1 (%) of each draw.
    pub accuracies: Vec<f64>,
    /// Mean top-1 (%).
    pub mean: f64,
    /// Standard deviation of top-1 over the draws (points).
    pub std: f64,
}

/// `k` images per class (fewer if a class has fewer), drawn with `seed`.
pub fn sample_per_class(labels: &[u32], k: usize, seed: u64) -> Vec<usize> {
    let classes = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut picked = Vec::new();
    for c in 0..classes {
        let mut idx: Vec<usize> = (0..labels.len())
            .filter(|&i| labels[i] as usize == c)
            .collect();
        idx.shuffle(&mut rng);
        picked.extend(idx.into_iter().take(k));
    }
    picked.sort_unstable();
    picked
}

fn subset(f: &Features, rows: &[usize]) -> Features {
    Features {
        data: rows
            .iter()
            .flat_map(|&i| f.row(i).iter().copied())
            .collect(),
        n: rows.len(),
        dim: f.dim,
    }
}

/// What [`run`] does.
#[derive(Clone, Debug, PartialEq)]
pub struct LowShotConfig {
    /// Labelled images per class, one table row each.
    pub shots: Vec<usize>,
    /// Draws per row.
    pub seeds: usize,
    /// The classifier.
    pub model: LowShotModel,
    /// The SVM cost (too few images to cross-validate a sweep at small k).
    pub cost: f64,
}

/// Runs low-shot evaluation: one [`LowShotRow`] per entry of `cfg.shots`.
pub fn run(
    train: &Features,
    train_labels: &[u32],
    test: &Features,
    test_labels: &[u32],
    cfg: &LowShotConfig,
) -> Vec<LowShotRow> {
    let (seeds, model, cost) = (cfg.seeds, cfg.model, cfg.cost);
    let classes = train_labels
        .iter()
        .copied()
        .max()
        .map_or(0, |m| m as usize + 1);
    cfg.shots
        .iter()
        .map(|&k| {
            let accuracies: Vec<f64> = (0..seeds)
                .map(|s| {
                    let rows =
                        sample_per_class(train_labels, k, mix_seed(&[s as u64, k as u64, 0x10]));
                    let x = subset(train, &rows);
                    let y: Vec<u32> = rows.iter().map(|&i| train_labels[i]).collect();
                    let pred = match model {
                        LowShotModel::Linear => {
                            let probe = linear::LinearProbeConfig {
                                weight_decays: vec![1e-3],
                                epochs: 100,
                                seed: s as u64,
                                ..Default::default()
                            };
                            linear::fit_predict(&x, &y, test, &probe).predictions
                        }
                        LowShotModel::Svm => {
                            let xn = svm::normalize_rows(&x);
                            let tn = svm::normalize_rows(test);
                            let all: Vec<usize> = (0..xn.n).collect();
                            let svm_cfg = SvmConfig {
                                seed: s as u64,
                                ..SvmConfig::default()
                            };
                            let models: Vec<svm::LinearSvm> = svm::one_vs_rest(&y, classes)
                                .iter()
                                .map(|pos| {
                                    svm::fit(&xn.data, xn.dim, &all, pos, cost, &svm_cfg, s as u64)
                                })
                                .collect();
                            (0..tn.n)
                                .map(|i| {
                                    let scores = models.iter().map(|m| m.score(tn.row(i)));
                                    scores
                                        .enumerate()
                                        .fold(
                                            (0, f64::MIN),
                                            |b, (c, v)| if v > b.1 { (c, v) } else { b },
                                        )
                                        .0 as u32
                                })
                                .collect()
                        }
                    };
                    accuracy(&pred, test_labels)
                })
                .collect();
            let (mean, std) = super::mean_sd(&accuracies);
            LowShotRow {
                k,
                accuracies,
                mean,
                std,
            }
        })
        .collect()
}
