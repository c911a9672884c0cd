//! SwAV: "Unsupervised Learning of Visual Features by Contrasting Cluster Assignments"
//! (Caron et al., NeurIPS 2020).
//!
//! Every crop is embedded (backbone + MLP head, L2-normalized) and scored against K learnable
//! prototypes. The codes of each *global* crop are computed by Sinkhorn-Knopp on the batch
//! scores (without gradient, equipartitioned over the prototypes); every other crop predicts
//! them from its own scores (swapped prediction). Multi-crop adds small local crops that are
//! cheap to compute and only ever predict. A queue of past global embeddings enlarges the
//! batch that Sinkhorn sees, and the prototypes are frozen for the first steps.
//!
//! Data-parallel: Sinkhorn's sums run over the rows of all ranks
//! ([`crate::dist::sinkhorn_sharded`]), so each rank's codes are those of the global batch;
//! each rank keeps its own queue, as in the paper's code.

use crate::augment::ViewConfig;
use crate::config::RunConfig;
use crate::data::loader::{HostBatch, ViewSpec};
use crate::device::host_values;
use crate::error::{Error, Result};
use crate::losses::{l2_normalize, swapped_prediction};
use crate::methods::{Method, MethodInfo, StepOutput};
use crate::nn::{Backbone, heads::Mlp};
use crate::train::checkpoint::{self, HostParam};
use crate::train::optim::Optimizer;
use crate::train::step::finite_scalar;
use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Registry entry.
pub const INFO: MethodInfo = MethodInfo {
    name: "swav",
    paper: "Caron et al. 2020, Unsupervised Learning of Visual Features by Contrasting Cluster Assignments",
    summary: "online clustering: Sinkhorn codes of global crops predicted from other crops (multi-crop)",
    settings: crate::methods::complete_settings::<SwavConfig>,
    trained_readout: crate::methods::global_readout,
    build,
};

/// SwAV's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SwavConfig {
    /// Number of prototypes K.
    pub prototypes: usize,
    /// Softmax temperature of the predictions.
    pub temperature: f32,
    /// Sinkhorn entropy regularization epsilon.
    pub epsilon: f64,
    /// Sinkhorn iterations.
    pub sinkhorn_iterations: usize,
    /// Hidden width of the MLP head.
    pub proj_hidden: usize,
    /// Output width of the MLP head.
    pub proj_dim: usize,
    /// Number of small local crops per image (0 disables multi-crop).
    pub local_crops: usize,
    /// Side of the local crops in pixels.
    pub local_size: usize,
    /// Area range of the local crops.
    pub local_scale: (f32, f32),
    /// Area range of the two global crops.
    pub global_scale: (f32, f32),
    /// Past global embeddings kept per global crop for Sinkhorn (0 disables the queue).
    pub queue_length: usize,
    /// Epoch from which the queue is used.
    pub queue_start_epoch: usize,
    /// Steps during which the prototypes are not updated.
    pub freeze_prototypes_steps: u64,
}

impl crate::methods::Settings for SwavConfig {}

impl Default for SwavConfig {
    fn default() -> Self {
        SwavConfig {
            prototypes: 300,
            temperature: 0.1,
            epsilon: 0.05,
            sinkhorn_iterations: 3,
            proj_hidden: 512,
            proj_dim: 128,
            local_crops: 6,
            local_size: 12,
            local_scale: (0.05, 0.3),
            global_scale: (0.3, 1.0),
            queue_length: 0,
            queue_start_epoch: 1,
            freeze_prototypes_steps: 50,
        }
    }
}

/// Backbone, MLP head and prototypes.
#[derive(Module, Debug)]
pub struct SwavModel {
    /// The representation.
    pub backbone: Backbone,
    /// The MLP head.
    pub projector: Mlp,
    /// Prototypes: a bias-free linear layer whose K columns are kept at unit norm.
    pub prototypes: Linear,
}

/// The SwAV method.
pub struct Swav {
    model: SwavModel,
    cfg: SwavConfig,
    views: ViewSpec,
    device: Device,
    /// Past global embeddings, one `[queue_length, proj_dim]` host buffer per global crop, newest first.
    queue: Vec<Vec<f32>>,
    queue_filled: usize,
    /// Prototypes that received the largest code of some sample in the last step.
    pub prototypes_used: usize,
}

fn build(run: &RunConfig, in_channels: usize, device: &Device) -> Result<Box<dyn Method>> {
    let c: &SwavConfig = &crate::methods::settings(run)?;
    if c.prototypes < 2
        || c.epsilon <= 0.0
        || c.temperature <= 0.0
        || c.sinkhorn_iterations == 0
        || c.local_size == 0
    {
        return Err(Error::Config(
            "swav: prototypes >= 2, epsilon, temperature, sinkhorn_iterations and local_size > 0"
                .into(),
        ));
    }
    let backbone = Backbone::new(&run.backbone, in_channels, device);
    let projector = Mlp::on_backbone(&backbone, &run.backbone, c.proj_hidden, c.proj_dim, device);
    let prototypes = normalize_prototypes(
        LinearConfig::new(c.proj_dim, c.prototypes)
            .with_bias(false)
            .init(device),
    );
    let global = ViewConfig {
        crop_scale: c.global_scale,
        ..run.views.clone()
    };
    let local = ViewConfig {
        size: c.local_size,
        crop_scale: c.local_scale,
        ..run.views.clone()
    };
    let mut views = vec![global.clone(), global];
    views.extend(std::iter::repeat_n(local, c.local_crops));
    Ok(Box::new(Swav {
        model: SwavModel {
            backbone,
            projector,
            prototypes,
        },
        cfg: c.clone(),
        views: ViewSpec { views },
        device: device.clone(),
        queue: vec![vec![0.0; c.queue_length * c.proj_dim]; 2],
        queue_filled: 0,
        prototypes_used: 0,
    }))
}

/// Rescales each prototype (column of the `[D, K]` weight) to unit norm, outside autograd.
fn normalize_prototypes(p: Linear) -> Linear {
    let w = p.weight.val();
    let require = w.is_require_grad();
    let inner = w.inner();
    let norm = inner
        .clone()
        .powi_scalar(2)
        .sum_dim(0)
        .sqrt()
        .clamp_min(1e-12);
    let mut t = Tensor::from_inner(inner / norm);
    if require {
        t = t.require_grad();
    }
    Linear {
        weight: Param::initialized(p.weight.id, t),
        bias: None,
    }
}

impl Method for Swav {
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
        let b = batch.indices.len();
        let (k, d) = (self.cfg.prototypes, self.cfg.proj_dim);
        // Crops of one size go through the backbone together (global crops, then local
        // crops); the head then sees all crops in one pass, so its BatchNorm statistics are
        // those of every crop, as in the paper's code.
        let features: Vec<Tensor<2>> = batch
            .views_by_shape()
            .iter()
            .map(|g| self.model.backbone.forward(batch.stacked(g, &self.device)))
            .collect();
        let z = l2_normalize(self.model.projector.forward(Tensor::cat(features, 0))); // [V * B, D], view-major
        let scores = self.model.prototypes.forward(z.clone()); // [V * B, K]
        let n_views = batch.views.len();
        let use_queue = self.cfg.queue_length > 0
            && batch.epoch >= self.cfg.queue_start_epoch
            && self.queue_filled >= self.cfg.queue_length;
        let mut loss = Tensor::<1>::zeros([1], &self.device);
        let mut used = std::collections::HashSet::new();
        let mut terms = 0;
        for g in 0..2 {
            let s = host_values(scores.clone().narrow(0, g * b, b));
            let (mut all, mut rows) = (s, b);
            if use_queue {
                let ql = self.cfg.queue_length;
                let w_plain = self.model.prototypes.weight.val().inner(); // [D, K]
                let past = Tensor::<2>::from_data(
                    TensorData::new(self.queue[g].clone(), [ql, d]),
                    &w_plain.device(),
                );
                all.extend(host_values(past.matmul(w_plain.clone())));
                rows += ql;
            }
            // Over all ranks' rows in a data-parallel run (each rank's queue included).
            let q = crate::dist::sinkhorn_sharded(
                &all,
                rows,
                k,
                self.cfg.epsilon,
                self.cfg.sinkhorn_iterations,
            );
            let q = &q[..b * k];
            for row in q.chunks(k) {
                used.insert(
                    row.iter()
                        .enumerate()
                        .max_by(|a, c| a.1.total_cmp(c.1))
                        .map_or(0, |(j, _)| j),
                );
            }
            let codes = Tensor::<2>::from_data(TensorData::new(q.to_vec(), [b, k]), &self.device);
            for v in (0..n_views).filter(|&v| v != g) {
                loss = loss
                    + swapped_prediction(
                        codes.clone(),
                        scores.clone().narrow(0, v * b, b),
                        self.cfg.temperature,
                    );
                terms += 1;
            }
        }
        let loss = loss / terms as f32;
        let value = finite_scalar(&loss, step, "SwAV swapped-prediction loss")?;
        self.prototypes_used = used.len();
        let mut grads = GradientsParams::from_grads(loss.backward(), &self.model);
        if step <= self.cfg.freeze_prototypes_steps {
            let _ = grads.remove::<2>(self.model.prototypes.weight.id);
        }
        self.model = opt.step(lr, self.model.clone(), grads);
        self.model.prototypes = normalize_prototypes(self.model.prototypes.clone());
        if self.cfg.queue_length > 0 {
            let ql = self.cfg.queue_length;
            for g in 0..2 {
                let fresh = host_values(z.clone().narrow(0, g * b, b));
                let keep = ql.saturating_sub(b);
                let mut next = fresh[..b.min(ql) * d].to_vec();
                next.extend_from_slice(&self.queue[g][..keep * d]);
                self.queue[g] = next;
            }
            self.queue_filled = (self.queue_filled + b).min(ql);
        }
        Ok(StepOutput {
            loss: value,
            terms: vec![("prototypes_used".into(), self.prototypes_used as f32)],
        })
    }

    fn backbone(&self) -> Backbone {
        self.model.backbone.clone()
    }

    fn tensors(&self) -> BTreeMap<String, HostParam> {
        let mut t = checkpoint::collect(&self.model);
        if self.cfg.queue_length > 0 {
            for (g, q) in self.queue.iter().enumerate() {
                t.insert(
                    format!("queue.{g}"),
                    HostParam {
                        shape: vec![self.cfg.queue_length, self.cfg.proj_dim],
                        data: q.clone(),
                    },
                );
            }
            t.insert(
                "queue_filled".into(),
                HostParam {
                    shape: vec![1],
                    data: vec![self.queue_filled as f32],
                },
            );
        }
        t
    }

    fn load_tensors(&mut self, tensors: &HashMap<String, HostParam>, path: &Path) -> Result<()> {
        let mut model_tensors = tensors.clone();
        let queues: Vec<Option<HostParam>> = (0..2)
            .map(|g| model_tensors.remove(&format!("queue.{g}")))
            .collect();
        let filled = model_tensors.remove("queue_filled");
        self.model = checkpoint::apply(self.model.clone(), &model_tensors, path)?;
        if self.cfg.queue_length > 0 {
            let want = self.cfg.queue_length * self.cfg.proj_dim;
            for (g, q) in queues.into_iter().enumerate() {
                match q {
                    Some(q) if q.data.len() == want => self.queue[g] = q.data,
                    _ => {
                        return Err(Error::Checkpoint {
                            path: path.to_path_buf(),
                            message: "SwAV queue missing or of another size".into(),
                        });
                    }
                }
            }
            self.queue_filled = filled.map_or(0, |f| f.data[0] as usize);
        }
        Ok(())
    }
}
