//! MoCo v2: "Momentum Contrast for Unsupervised Visual Representation Learning" (He et al.,
//! CVPR 2020) with the v2 improvements of Chen et al. 2020 (MLP head, stronger views, cosine
//! schedule).
//!
//! A query encoder (backbone + MLP head) is trained so that the query of one view matches the
//! key of the other view, against a FIFO queue of keys from past batches (InfoNCE). The key
//! encoder is an exponential moving average of the query encoder, updated outside autograd.
//! The paper trains on 8 GPUs, each with BatchNorm over its own 32 images; this is emulated on
//! one device by running both encoders on `shuffle_groups` sub-batches: the query encoder on
//! them in order, the key encoder after shuffling the batch (shuffling BN, the paper's trick
//! against BN leaking the positive: a query and its key never share batch statistics).
//!
//! Data-parallel: the key images of all ranks are shuffled together and each rank encodes a
//! share, the keys are gathered, and every rank enqueues the keys of the whole global batch,
//! so all ranks hold the same queue.

use crate::config::RunConfig;
use crate::data::loader::{HostBatch, ViewSpec, mix_seed};
use crate::dist;
use crate::error::Result;
use crate::losses::{info_nce_with_queue, l2_normalize};
use crate::memory::ema::{cosine_momentum, ema_update};
use crate::memory::queue::FifoQueue;
use crate::methods::{Method, MethodInfo, StepInfo, StepOutput};
use crate::nn::{Backbone, heads::Mlp};
use crate::train::checkpoint::{self, HostParam};
use crate::train::optim::Optimizer;
use crate::train::step::update;
use burn::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Registry entry.
pub const INFO: MethodInfo = MethodInfo {
    name: "moco",
    paper: "He et al. 2020, Momentum Contrast; Chen et al. 2020, Improved Baselines with Momentum Contrastive Learning (v2)",
    summary: "query encoder vs momentum key encoder, InfoNCE against a FIFO queue of keys",
    settings: crate::methods::complete_settings::<MocoConfig>,
    trained_readout: crate::methods::global_readout,
    build,
};

/// MoCo's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MocoConfig {
    /// InfoNCE temperature.
    pub temperature: f32,
    /// Momentum of the key encoder's moving average (at the start, with `cosine_momentum`).
    pub momentum: f64,
    /// Ramp the momentum from `momentum` to 1 with a half cosine over the run.
    pub cosine_momentum: bool,
    /// Keys kept in the queue (negatives per query).
    pub queue_size: usize,
    /// Hidden width of the MLP head.
    pub proj_hidden: usize,
    /// Output width of the MLP head (key dimension).
    pub proj_dim: usize,
    /// Also predict view 1's key from view 2's query and average the two losses.
    pub symmetric: bool,
    /// Sub-batches with BatchNorm statistics of their own, as the paper's GPUs: the query
    /// encoder runs on them in order, the key encoder after shuffling (1 = one batch, no
    /// shuffle). Over all ranks of a data-parallel run.
    pub shuffle_groups: usize,
}

impl crate::methods::Settings for MocoConfig {
    fn validate(&self, _run: &RunConfig) -> Result<()> {
        if self.queue_size == 0 || self.shuffle_groups == 0 || !(0.0..=1.0).contains(&self.momentum)
        {
            return Err(crate::Error::Config(
                "moco.queue_size and moco.shuffle_groups must be positive, moco.momentum in [0, 1]"
                    .into(),
            ));
        }
        if self.temperature <= 0.0 {
            return Err(crate::Error::Config(format!(
                "moco.temperature = {} must be positive",
                self.temperature
            )));
        }
        Ok(())
    }
}

impl Default for MocoConfig {
    fn default() -> Self {
        MocoConfig {
            temperature: 0.2,
            momentum: 0.99,
            cosine_momentum: false,
            queue_size: 4096,
            proj_hidden: 512,
            proj_dim: 128,
            symmetric: false,
            shuffle_groups: 4,
        }
    }
}

/// Backbone plus MLP head: the query encoder, and (as a copy) the key encoder.
#[derive(Module, Debug)]
pub struct MocoEncoder {
    /// The representation.
    pub backbone: Backbone,
    /// The MLP head.
    pub projector: Mlp,
}

impl MocoEncoder {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        l2_normalize(self.projector.forward(self.backbone.forward(x)))
    }

    /// [`MocoEncoder::forward`] on `groups` consecutive sub-batches of `x` (the last may be
    /// smaller), each with its own BatchNorm statistics, as on `groups` devices.
    fn forward_in_groups(&self, x: Tensor<4>, groups: usize) -> Tensor<2> {
        let b = x.dims()[0];
        let chunk = b.div_ceil(groups.clamp(1, b.max(1)));
        if chunk >= b {
            return self.forward(x);
        }
        let parts: Vec<Tensor<2>> = (0..b)
            .step_by(chunk)
            .map(|s| self.forward(x.clone().narrow(0, s, chunk.min(b - s))))
            .collect();
        Tensor::cat(parts, 0)
    }
}

/// Query and key encoders in one module, so one checkpoint holds both.
#[derive(Module, Debug)]
pub struct MocoModel {
    /// Trained by backpropagation.
    pub query: MocoEncoder,
    /// Moving average of `query`.
    pub key: MocoEncoder,
}

/// The MoCo method.
pub struct Moco {
    model: MocoModel,
    /// Queue of keys, `[queue_size, proj_dim]`, L2-normalized.
    queue: FifoQueue,
    cfg: MocoConfig,
    views: ViewSpec,
    device: Device,
    seed: u64,
}

fn build(run: &RunConfig, in_channels: usize, device: &Device) -> Result<Box<dyn Method>> {
    let c: &MocoConfig = &crate::methods::settings(run)?;
    let backbone = Backbone::new(&run.backbone, in_channels, device);
    let projector = Mlp::on_backbone(&backbone, &run.backbone, c.proj_hidden, c.proj_dim, device);
    let query = MocoEncoder {
        backbone,
        projector,
    };
    // A separately built encoder (own BatchNorm state), then set equal to the query encoder.
    let fresh_backbone = Backbone::new(&run.backbone, in_channels, device);
    let fresh = MocoEncoder {
        projector: Mlp::on_backbone(
            &fresh_backbone,
            &run.backbone,
            c.proj_hidden,
            c.proj_dim,
            device,
        ),
        backbone: fresh_backbone,
    };
    let key = ema_update(fresh, &query, 0.0);
    let queue = FifoQueue::random_unit("queue", c.queue_size, c.proj_dim, device);
    Ok(Box::new(Moco {
        model: MocoModel { query, key },
        queue,
        cfg: c.clone(),
        views: ViewSpec {
            views: vec![run.views.clone(), run.views.clone()],
        },
        device: device.clone(),
        seed: run.seed,
    }))
}

impl Moco {
    /// Keys of `x` from the key encoder, computed on shuffled sub-batches ("shuffling BN"):
    /// this rank's keys in the original order, and the keys of the whole global batch (rank
    /// order), which every rank enqueues. In a data-parallel run the images of all ranks are
    /// gathered, shuffled by one permutation every rank draws from the shared seed, and each
    /// rank encodes its share of the shuffled batch (in `shuffle_groups / ranks` groups), as
    /// the paper's `batch_shuffle_ddp`; with `shuffle_groups` a multiple of the ranks, the keys
    /// are those of a single process with the same global batch. The permutation is drawn
    /// from the seed and `step` (steps done, this one included).
    fn keys(&self, x: Tensor<4>, step: u64) -> (Tensor<2>, Tensor<2>) {
        let (rank, world) = (dist::rank(), dist::world_size());
        let [b, c, h, w] = x.dims();
        let n = b * world;
        let x = if world == 1 {
            x
        } else {
            let all = dist::all_gather(&crate::device::host_values(x));
            Tensor::<4>::from_data(TensorData::new(all, [n, c, h, w]), &self.device)
        };
        let g = (self.cfg.shuffle_groups / world).min(b).max(1);
        if g == 1 && world == 1 {
            let k = self.model.key.forward(x).detach().inner();
            return (k.clone(), k);
        }
        let mut perm: Vec<usize> = (0..n).collect();
        perm.shuffle(&mut ChaCha8Rng::seed_from_u64(mix_seed(&[
            self.seed, step, 0x5B,
        ])));
        let mut inv = vec![0usize; n];
        for (i, &p) in perm.iter().enumerate() {
            inv[p] = i;
        }
        let idx = |v: &[usize], d: &Device| {
            Tensor::<1, Int>::from_data(
                TensorData::new(v.iter().map(|&i| i as i64).collect::<Vec<_>>(), [v.len()]),
                d,
            )
        };
        let mine = &perm[rank * b..(rank + 1) * b];
        let shuffled = x.select(0, idx(mine, &self.device));
        let parts = self
            .model
            .key
            .forward_in_groups(shuffled, g)
            .detach()
            .inner();
        let k = dist::gather_rows(parts);
        let all = k.clone().select(0, idx(&inv, &k.device()));
        (all.clone().narrow(0, rank * b, b), all)
    }
}

impl Moco {
    /// This rank's share of the `shuffle_groups` sub-batches the query encoder runs on.
    fn query_groups(&self) -> usize {
        (self.cfg.shuffle_groups / dist::world_size()).max(1)
    }
}

impl Method for Moco {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn views(&self) -> ViewSpec {
        self.views.clone()
    }

    fn train_step(
        &mut self,
        batch: &HostBatch,
        opt: &mut Optimizer,
        lr: f64,
    ) -> Result<StepOutput> {
        // Steps done, this one included: keyed to the batch, so a resume draws the same.
        let step = batch.step + 1;
        let x1 = batch.views[0].to_tensor(&self.device);
        let x2 = batch.views[1].to_tensor(&self.device);
        let (k2, all_k2) = self.keys(x2.clone(), step);
        let queue = Tensor::from_inner(self.queue.rows.clone());
        let groups = self.query_groups();
        let q1 = self.model.query.forward_in_groups(x1.clone(), groups);
        let mut loss = info_nce_with_queue(
            q1,
            Tensor::from_inner(k2),
            queue.clone(),
            self.cfg.temperature,
        );
        let mut new_keys = all_k2;
        if self.cfg.symmetric {
            let (k1, all_k1) = self.keys(x1, step);
            let q2 = self.model.query.forward_in_groups(x2, groups);
            loss = (loss
                + info_nce_with_queue(
                    q2,
                    Tensor::from_inner(k1.clone()),
                    queue,
                    self.cfg.temperature,
                ))
                / 2.0;
            new_keys = Tensor::cat(vec![new_keys, all_k1], 0);
        }
        let (model, value) = update(
            self.model.query.clone(),
            loss,
            opt,
            lr,
            step,
            "MoCo InfoNCE loss",
        )?;
        self.model.query = model;
        self.queue.push(new_keys);
        Ok(StepOutput {
            loss: value,
            terms: vec![],
        })
    }

    fn after_step(&mut self, info: &StepInfo) {
        let m = if self.cfg.cosine_momentum {
            cosine_momentum(self.cfg.momentum, info.step, info.total_steps)
        } else {
            self.cfg.momentum
        };
        self.model.key = ema_update(self.model.key.clone(), &self.model.query, m);
    }

    fn backbone_prefix(&self) -> &'static str {
        "query.backbone."
    }

    fn backbone(&self) -> Backbone {
        self.model.query.backbone.clone()
    }

    fn tensors(&self) -> BTreeMap<String, HostParam> {
        let mut t = checkpoint::collect(&self.model);
        self.queue.save_into(&mut t);
        t
    }

    fn load_tensors(&mut self, tensors: &HashMap<String, HostParam>, path: &Path) -> Result<()> {
        let mut model_tensors = tensors.clone();
        self.queue.take_from(&mut model_tensors, path)?;
        self.model = checkpoint::apply(self.model.clone(), &model_tensors, path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// In training, a sub-batch's queries depend on its own images only (BatchNorm statistics
    /// per group, as per GPU in the paper), while one full-batch pass mixes all images.
    #[test]
    fn queries_in_groups_see_their_own_group_only() {
        let device = crate::device::training(&Device::flex());
        let mut run = RunConfig::default();
        run.backbone.width = 0.25;
        let backbone = Backbone::new(&run.backbone, 1, &device);
        let projector = Mlp::on_backbone(&backbone, &run.backbone, 16, 8, &device);
        let enc = MocoEncoder {
            backbone,
            projector,
        };
        let x = Tensor::<4>::random([8, 1, 28, 28], Distribution::Normal(0.0, 1.0), &device);
        let other = Tensor::cat(
            vec![
                x.clone().narrow(0, 0, 4),
                x.clone().narrow(0, 4, 4) * 3.0 + 1.0,
            ],
            0,
        );
        let first = |t: Tensor<2>| crate::device::host_values(t.narrow(0, 0, 4));
        let grouped = first(enc.forward_in_groups(x.clone(), 2));
        let max_diff = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0f32, f32::max)
        };
        let same = max_diff(&grouped, &first(enc.forward_in_groups(other.clone(), 2)));
        assert!(
            same < 1e-5,
            "group 1 changed by {same} when group 2 changed"
        );
        let mixed = max_diff(&first(enc.forward(x)), &first(enc.forward(other)));
        assert!(
            mixed > 1e-3,
            "a full-batch pass should mix the groups ({mixed})"
        );
    }
}
