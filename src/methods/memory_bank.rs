//! The memory bank of NPID and PIRL: one L2-normalized embedding per training image, updated
//! as a moving average of the embeddings the network produced for that image.

use crate::augment::ViewConfig;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::train::checkpoint::HostParam;
use burn::prelude::*;
use rand::Rng;
use std::path::Path;

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

    /// Overwrites the bank with `embed` of every image of `data` (preprocessed by `view`
    /// without augmentation), normalized: a start that agrees with the network instead of
    /// random targets, which a short run cannot outgrow.
    pub fn fill_from(
        &mut self,
        data: &Dataset,
        view: &ViewConfig,
        batch: usize,
        device: &Device,
        embed: impl Fn(Tensor<4>) -> Tensor<2>,
    ) {
        let view = view.eval_only();
        for start in (0..data.len()).step_by(batch.max(1)) {
            let end = (start + batch).min(data.len());
            let x = crate::eval::plain_batch(data, &view, start..end).to_tensor(device);
            let e: Vec<f32> = embed(x)
                .detach()
                .into_data()
                .convert::<f32>()
                .try_to_vec()
                .expect("f32 embeddings");
            let idx: Vec<usize> = (start..end).collect();
            self.update(&idx, &e, 0.0);
        }
    }

    /// The bank as a checkpoint tensor.
    pub fn to_host(&self) -> HostParam {
        HostParam {
            shape: vec![self.len(), self.dim],
            data: self.data.clone(),
        }
    }

    /// Restores the bank from a checkpoint tensor of the same shape.
    pub fn load_host(&mut self, t: Option<&HostParam>, path: &Path) -> Result<()> {
        match t {
            Some(t) if t.shape == [self.len(), self.dim] => {
                self.data = t.data.clone();
                Ok(())
            }
            Some(t) => Err(Error::Checkpoint {
                path: path.to_path_buf(),
                message: format!(
                    "memory bank has shape {:?}, this run needs [{}, {}] (another data set?)",
                    t.shape,
                    self.len(),
                    self.dim
                ),
            }),
            None => Err(Error::Checkpoint {
                path: path.to_path_buf(),
                message: "no memory_bank tensor".into(),
            }),
        }
    }
}
