//! Weighted k-nearest-neighbour classification (Wu et al. 2018, "Unsupervised Feature Learning
//! via Non-Parametric Instance Discrimination"; the protocol of solo-learn and NPID): features
//! are L2-normalized, the k most cosine-similar training features vote for their class with
//! weight `exp(similarity / temperature)`.

use super::Features;
use burn::prelude::*;
use rayon::prelude::*;

/// Queries whose similarities to every training feature are computed at once (a block of
/// 512 x 60,000 similarities is 123 MB).
const QUERY_BLOCK: usize = 512;

/// k-NN settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KnnConfig {
    /// Neighbours that vote.
    pub k: usize,
    /// Temperature of the vote weights.
    pub temperature: f32,
}

impl Default for KnnConfig {
    fn default() -> Self {
        KnnConfig {
            k: 200,
            temperature: 0.07,
        }
    }
}

fn normalized(f: &Features) -> Vec<f32> {
    let mut out = f.data.clone();
    out.par_chunks_mut(f.dim.max(1)).for_each(|r| {
        let n = r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        r.iter_mut().for_each(|v| *v /= n);
    });
    out
}

/// Predicts a class for each row of `test` from the labeled rows of `train`.
pub fn predict(
    train: &Features,
    train_labels: &[u32],
    test: &Features,
    cfg: KnnConfig,
) -> Vec<u32> {
    predict_many(train, train_labels, test, &[cfg.k], cfg.temperature)
        .pop()
        .expect("one k")
}

/// [`predict`] for several `ks` at once: the similarities are computed once and the top
/// `max(ks)` neighbours sorted once; returns one prediction vector per k, in order.
pub fn predict_many(
    train: &Features,
    train_labels: &[u32],
    test: &Features,
    ks: &[usize],
    temperature: f32,
) -> Vec<Vec<u32>> {
    assert_eq!(
        train.dim, test.dim,
        "train and test features must have the same dimension"
    );
    let classes = train_labels
        .iter()
        .copied()
        .max()
        .map_or(1, |m| m as usize + 1);
    let tr = normalized(train);
    let te = normalized(test);
    let d = train.dim;
    let kmax = ks.iter().copied().max().unwrap_or(1).min(train.n).max(1);
    // Similarities by blocks of queries through the backend's matrix product (a GEMM), then
    // each query's top `kmax` on the host.
    let device = burn::tensor::Device::flex();
    let train_t: Tensor<2> =
        Tensor::<2>::from_data(TensorData::new(tr, [train.n, d]), &device).transpose();
    let mut per_query: Vec<Vec<u32>> = Vec::with_capacity(test.n);
    for start in (0..test.n).step_by(QUERY_BLOCK) {
        let end = (start + QUERY_BLOCK).min(test.n);
        let q = Tensor::<2>::from_data(
            TensorData::new(te[start * d..end * d].to_vec(), [end - start, d]),
            &device,
        );
        let sims: Vec<f32> = q
            .matmul(train_t.clone())
            .into_data()
            .try_to_vec()
            .expect("f32 similarities");
        per_query.par_extend(sims.par_chunks(train.n.max(1)).map(|row| {
            let mut sims: Vec<(f32, u32)> = row
                .iter()
                .zip(train_labels)
                .map(|(&s, &l)| (s, l))
                .collect();
            sims.select_nth_unstable_by(kmax - 1, |a, b| b.0.total_cmp(&a.0));
            let top = &mut sims[..kmax];
            top.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
            ks.iter()
                .map(|&k| {
                    let mut votes = vec![0.0f64; classes];
                    for &(s, l) in &top[..k.clamp(1, kmax)] {
                        votes[l as usize] += ((s / temperature) as f64).exp();
                    }
                    votes
                        .iter()
                        .enumerate()
                        .max_by(|a, b| a.1.total_cmp(b.1))
                        .map_or(0, |(c, _)| c as u32)
                })
                .collect::<Vec<u32>>()
        }));
    }
    (0..ks.len())
        .map(|i| per_query.iter().map(|p| p[i]).collect())
        .collect()
}
