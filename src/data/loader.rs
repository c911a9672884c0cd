//! The batch loader: a background thread that shuffles the data set each epoch and makes the
//! views a method asks for, a few batches ahead of the training step.
//!
//! Every random choice derives from `(seed, epoch, position)`, so a run restarted at any
//! step sees exactly the batches it would have seen without the interruption.

use super::Dataset;
use crate::augment::{Image, ViewConfig};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// What a method asks the loader to produce: one view pipeline per view of each image.
#[derive(Clone, Debug)]
pub struct ViewSpec {
    /// The pipelines, one per view (SimCLR: two copies of the same pipeline).
    pub views: Vec<ViewConfig>,
}

/// A batch of views in host memory, `[batch, channels, height, width]` per view.
#[derive(Clone, Debug)]
pub struct HostBatch {
    /// Pixels of each view, shape `[b, c, h, w]` row-major.
    pub views: Vec<HostTensor>,
    /// Index of each image in the data set.
    pub indices: Vec<usize>,
    /// The epoch this batch belongs to (0-based).
    pub epoch: usize,
    /// The batch's place in the run: `epoch * steps_per_epoch` + its place in the epoch
    /// (0-based). Methods key their own random draws and schedules to it, never to a counter
    /// of their own, so a resumed run draws what an uninterrupted one would.
    pub step: u64,
    /// Batches in one epoch.
    pub steps_per_epoch: u64,
}

impl HostBatch {
    /// The views in runs of one shape, as index lists in view order (multi-crop: the global
    /// crops, then the local ones), so that crops of one size go through a network together.
    pub fn views_by_shape(&self) -> Vec<Vec<usize>> {
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, v) in self.views.iter().enumerate() {
            match groups.last_mut() {
                Some(g) if self.views[g[0]].shape == v.shape => g.push(i),
                _ => groups.push(vec![i]),
            }
        }
        groups
    }

    /// The views of `group` stacked into one batch `[len * b, c, h, w]` on `device`.
    pub fn stacked(
        &self,
        group: &[usize],
        device: &burn::prelude::Device,
    ) -> burn::prelude::Tensor<4> {
        burn::prelude::Tensor::cat(
            group
                .iter()
                .map(|&i| self.views[i].to_tensor(device))
                .collect(),
            0,
        )
    }
}

/// A dense `f32` array in host memory with a 4-D shape.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// Row-major values.
    pub data: Vec<f32>,
    /// `[batch, channels, height, width]`.
    pub shape: [usize; 4],
}

/// Mixes integers into one well-spread 64-bit seed (SplitMix64 finalizer over a combination).
pub fn mix_seed(parts: &[u64]) -> u64 {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15;
    for &p in parts {
        h ^= p
            .wrapping_add(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(h << 6)
            .wrapping_add(h >> 2);
        let mut z = h;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h = z ^ (z >> 31);
    }
    h
}

/// The order in which `epoch` visits the `n` images.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(mix_seed(&[
        seed,
        epoch as u64,
        0xE90C,
    ])));
    order
}

/// Makes the views of the images at `indices` (deterministic given `seed`, `epoch` and the
/// position of each image in the epoch, `first_position + i`).
pub fn make_batch(
    data: &Dataset,
    spec: &ViewSpec,
    indices: &[usize],
    seed: u64,
    epoch: usize,
    first_position: usize,
) -> Vec<HostTensor> {
    let per_image: Vec<Vec<Image>> = indices
        .par_iter()
        .enumerate()
        .map(|(i, &idx)| {
            let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[
                seed,
                epoch as u64,
                (first_position + i) as u64,
            ]));
            let img = Image::from_u8(data.image(idx), data.channels, data.height, data.width);
            spec.views.iter().map(|v| v.make(&img, &mut rng)).collect()
        })
        .collect();
    (0..spec.views.len())
        .map(|v| {
            let first = &per_image[0][v];
            let shape = [indices.len(), first.channels, first.height, first.width];
            let mut out = Vec::with_capacity(shape.iter().product());
            for imgs in &per_image {
                out.extend_from_slice(&imgs[v].data);
            }
            HostTensor { data: out, shape }
        })
        .collect()
}

/// A running loader; iterate it to receive batches. Dropping it stops the worker.
pub struct Loader {
    rx: Receiver<HostBatch>,
    _worker: std::thread::JoinHandle<()>,
}

/// Where and how a [`Loader`] starts.
#[derive(Clone, Debug)]
pub struct LoaderConfig {
    /// Images per batch; the last incomplete batch of an epoch is dropped.
    pub batch_size: usize,
    /// The run's seed.
    pub seed: u64,
    /// Epoch to start at.
    pub start_epoch: usize,
    /// Batch within `start_epoch` to start at (for resuming).
    pub start_batch: usize,
    /// Batches prepared ahead of the consumer.
    pub prefetch: usize,
    /// Threads that make views.
    pub workers: usize,
    /// `(rank, world_size)` of a data-parallel run (`(0, 1)` for one process): each global
    /// batch of `batch_size` images is cut into `world_size` contiguous shards and this loader
    /// yields shard `rank`, with the views one process would make for those images. The
    /// order is seeded, so the ranks agree on it without talking; the union of their shards
    /// is the epoch. `batch_size` must be a multiple of `world_size`.
    pub shard: (usize, usize),
}

impl Loader {
    /// Batches per epoch for `n` images.
    pub fn batches_per_epoch(n: usize, batch_size: usize) -> usize {
        n / batch_size
    }

    /// Starts the worker thread. It runs until the loader is dropped.
    pub fn spawn(data: Arc<Dataset>, spec: ViewSpec, cfg: LoaderConfig) -> Loader {
        let (tx, rx) = sync_channel(cfg.prefetch.max(1));
        let worker = std::thread::spawn(move || run_worker(data, spec, cfg, tx));
        Loader {
            rx,
            _worker: worker,
        }
    }
}

fn run_worker(data: Arc<Dataset>, spec: ViewSpec, cfg: LoaderConfig, tx: SyncSender<HostBatch>) {
    let pool = match rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.workers.max(1))
        .build()
    {
        Ok(p) => p,
        Err(_) => return,
    };
    let per_epoch = Loader::batches_per_epoch(data.len(), cfg.batch_size);
    if per_epoch == 0 {
        return;
    }
    let (rank, world) = cfg.shard;
    let local = cfg.batch_size / world.max(1);
    let mut epoch = cfg.start_epoch;
    let mut b = cfg.start_batch;
    loop {
        let order = epoch_order(data.len(), cfg.seed, epoch);
        while b < per_epoch {
            let first = b * cfg.batch_size + rank * local;
            let idx = &order[first..first + local];
            let views = pool.install(|| make_batch(&data, &spec, idx, cfg.seed, epoch, first));
            let batch = HostBatch {
                views,
                indices: idx.to_vec(),
                epoch,
                step: (epoch * per_epoch + b) as u64,
                steps_per_epoch: per_epoch as u64,
            };
            if tx.send(batch).is_err() {
                return;
            }
            b += 1;
        }
        b = 0;
        epoch += 1;
    }
}

impl Iterator for Loader {
    type Item = HostBatch;
    fn next(&mut self) -> Option<HostBatch> {
        self.rx.recv().ok()
    }
}

impl HostTensor {
    /// Uploads to `device` as a `[b, c, h, w]` tensor.
    pub fn to_tensor(&self, device: &burn::prelude::Device) -> burn::prelude::Tensor<4> {
        burn::prelude::Tensor::from_data(
            burn::prelude::TensorData::new(self.data.clone(), self.shape),
            device,
        )
    }
}
