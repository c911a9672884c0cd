//! The memory bank of NPID and PIRL: one L2-normalized embedding per training image, updated
//! as a moving average of the embeddings the network produced for that image.

use crate::augment::ViewConfig;
use crate::data::Dataset;
use crate::data::loader::mix_seed;
use crate::error::{Error, Result};
use crate::train::checkpoint::HostParam;
use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Cosine similarities of unit embeddings `e` (`[B, D]`) with their own bank entries `own`
/// (`[B, D]`) and with the noise entries `noise` (`[m, D]`): `([B], [B, m])`.
pub fn similarities(e: Tensor<2>, own: Tensor<2>, noise: Tensor<2>) -> (Tensor<1>, Tensor<2>) {
    let b = e.dims()[0];
    let pos = (e.clone() * own).sum_dim(1).reshape([b]);
    (pos, e.matmul(noise.transpose()))
}

/// `n` rows of `dim` values, each of unit L2 norm.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryBank {
    /// Row-major entries, `n * dim`.
    pub data: Vec<f32>,
    /// Embedding dimension.
    pub dim: usize,
}

fn normalize_row(row: &mut [f32]) {
    let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    row.iter_mut().for_each(|x| *x /= norm);
}

impl MemoryBank {
    /// The bank of a method bound to `data`: random unit rows (seeded by `seed`), overwritten,
    /// on a fresh run, with `embed` of every image (see [`MemoryBank::for_items`]); a resumed
    /// run loads its bank from the checkpoint instead.
    pub fn for_data(
        data: &Dataset,
        dim: usize,
        seed: u64,
        fresh_run: bool,
        view: &ViewConfig,
        device: &Device,
        embed: impl Fn(Tensor<4>) -> Tensor<2>,
    ) -> MemoryBank {
        let view = view.eval_only();
        MemoryBank::for_items(data.len(), dim, mix_seed(&[seed, 0xBA4C]), fresh_run, |r| {
            embed(crate::eval::plain_batch(data, &view, r).to_tensor(device))
        })
    }

    /// A bank of `n` entries: random unit rows drawn from `rng_seed`, overwritten on a fresh
    /// run with `embed` of every item, 256 items at a time (`embed` gets the range of items and
    /// returns their embeddings, normalized here): a start that agrees with the network
    /// instead of random targets, which a short run cannot outgrow.
    pub fn for_items(
        n: usize,
        dim: usize,
        rng_seed: u64,
        fresh_run: bool,
        embed: impl Fn(std::ops::Range<usize>) -> Tensor<2>,
    ) -> MemoryBank {
        let mut bank = MemoryBank::random(n, dim, &mut ChaCha8Rng::seed_from_u64(rng_seed));
        if fresh_run {
            for start in (0..n).step_by(256) {
                let end = (start + 256).min(n);
                let idx: Vec<usize> = (start..end).collect();
                bank.update_from(&idx, embed(start..end), 0.0);
            }
        }
        bank
    }

    /// A bank of `n` random unit vectors (uniform in a cube, then normalized, as the NPID code).
    pub fn random<R: Rng>(n: usize, dim: usize, rng: &mut R) -> MemoryBank {
        let mut data: Vec<f32> = (0..n * dim)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        data.chunks_mut(dim).for_each(normalize_row);
        MemoryBank { data, dim }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.data.len() / self.dim.max(1)
    }

    /// Whether the bank has no entry.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Entry `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// The entries `idx` as a `[idx.len(), dim]` tensor on `device`.
    pub fn gather(&self, idx: &[usize], device: &Device) -> Tensor<2> {
        let mut out = Vec::with_capacity(idx.len() * self.dim);
        for &i in idx {
            out.extend_from_slice(self.row(i));
        }
        Tensor::from_data(TensorData::new(out, [idx.len(), self.dim]), device)
    }

    /// `m` indices drawn uniformly with replacement (the noise distribution of NCE).
    pub fn sample<R: Rng>(&self, m: usize, rng: &mut R) -> Vec<usize> {
        let n = self.len();
        (0..m).map(|_| rng.random_range(0..n)).collect()
    }

    /// Moves entry `idx[r]` towards row `r` of `fresh` (`[idx.len(), dim]`, row-major):
    /// `v <- normalize(momentum * v + (1 - momentum) * f)`.
    pub fn update(&mut self, idx: &[usize], fresh: &[f32], momentum: f32) {
        let d = self.dim;
        for (r, &i) in idx.iter().enumerate() {
            let row = &mut self.data[i * d..(i + 1) * d];
            for (x, &f) in row.iter_mut().zip(&fresh[r * d..(r + 1) * d]) {
                *x = momentum * *x + (1.0 - momentum) * f;
            }
            normalize_row(row);
        }
    }

    /// [`MemoryBank::update`] with the rows of the (autodiff) tensor `embeddings`.
    pub fn update_from(&mut self, idx: &[usize], embeddings: Tensor<2>, momentum: f32) {
        self.update(idx, &crate::device::host_values(embeddings), momentum);
    }

    /// [`MemoryBank::update_from`] with every rank's entries and embeddings (gathered in a
    /// data-parallel run), so that all ranks keep the same bank.
    pub fn update_from_all_ranks(&mut self, idx: &[usize], embeddings: Tensor<2>, momentum: f32) {
        let fresh = crate::dist::all_gather(&crate::device::host_values(embeddings));
        self.update(&crate::dist::all_gather_indices(idx), &fresh, momentum);
    }

    /// Adds the bank (`memory_bank`) and the NCE constant (`log_z`, once estimated) to a
    /// method's checkpoint tensors.
    pub fn save_into(&self, tensors: &mut BTreeMap<String, HostParam>, log_z: Option<f64>) {
        self.save_as(tensors, "memory_bank");
        save_scalar(tensors, "log_z", log_z);
    }

    /// Adds the bank to checkpoint tensors under `name`.
    pub fn save_as(&self, tensors: &mut BTreeMap<String, HostParam>, name: &str) {
        tensors.insert(
            name.into(),
            HostParam {
                shape: vec![self.len(), self.dim],
                data: self.data.clone(),
            },
        );
    }

    /// Takes the bank saved as `name` out of `tensors` (it must have this bank's shape).
    pub fn take_from(
        &mut self,
        tensors: &mut HashMap<String, HostParam>,
        name: &str,
        path: &Path,
    ) -> Result<()> {
        match tensors.remove(name) {
            Some(t) if t.shape == [self.len(), self.dim] => {
                self.data = t.data;
                Ok(())
            }
            Some(t) => Err(Error::Checkpoint {
                path: path.to_path_buf(),
                message: format!(
                    "{name} has shape {:?}, this run needs [{}, {}] (another data set?)",
                    t.shape,
                    self.len(),
                    self.dim
                ),
            }),
            None => Err(Error::Checkpoint {
                path: path.to_path_buf(),
                message: format!("no {name} tensor"),
            }),
        }
    }

    /// Restores what [`MemoryBank::save_into`] wrote (the bank must have this run's shape);
    /// returns the remaining (model) tensors and `log_z`.
    pub fn load_from(
        &mut self,
        tensors: &HashMap<String, HostParam>,
        path: &Path,
    ) -> Result<(HashMap<String, HostParam>, Option<f64>)> {
        let mut rest = tensors.clone();
        let log_z = take_scalar(&mut rest, "log_z");
        self.take_from(&mut rest, "memory_bank", path)?;
        Ok((rest, log_z))
    }
}

/// Adds a scalar (an NCE constant, once estimated) to checkpoint tensors under `name`.
pub fn save_scalar(tensors: &mut BTreeMap<String, HostParam>, name: &str, value: Option<f64>) {
    if let Some(v) = value {
        tensors.insert(
            name.into(),
            HostParam {
                shape: vec![1],
                data: vec![v as f32],
            },
        );
    }
}

/// Takes the scalar saved by [`save_scalar`] out of `tensors`.
pub fn take_scalar(tensors: &mut HashMap<String, HostParam>, name: &str) -> Option<f64> {
    tensors.remove(name).map(|z| z.data[0] as f64)
}

/// The NCE normalizing constant as NPID's and AVID's reference code estimate it once, from
/// the first batch: `ln(n * mean exp(s / temperature))` over the similarities `scores` (any
/// shape) with a bank of `n` entries.
pub fn estimate_log_z(scores: Tensor<2>, temperature: f32, n: usize) -> f64 {
    let mean: f32 = (scores.detach() / temperature).exp().mean().into_scalar();
    // In a data-parallel run, over every rank's batch, so that all ranks share one constant.
    (crate::dist::mean_f64(mean as f64) * n as f64).ln()
}
