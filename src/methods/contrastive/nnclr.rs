//! NNCLR: "With a Little Help from My Friends: Nearest-Neighbor Contrastive Learning of
//! Visual Representations" (Dwibedi et al., ICCV 2021).
//!
//! SimCLR with a nearest neighbour as the positive: the embedding `z1` of one view is replaced
//! by its nearest neighbour `NN(z1)` in a support set (a FIFO queue of past embeddings), which
//! must pick out the prediction `p2` of its own image's other view among the batch's
//! predictions (InfoNCE, eq. 2), symmetrized over the views; then the batch's `z1` are
//! enqueued. Neighbours bring other images of the same kind in as positives, beyond what
//! augmentations make (section 3). Like the paper, an online network with a prediction MLP;
//! no momentum encoder.
//!
//! Data-parallel: every rank finds its own images' neighbours in the support set, then the
//! neighbours and predictions of all ranks are gathered, so each neighbour meets the whole
//! global batch's predictions as negatives ([`update_on_whole_batch`]), and every rank
//! enqueues the embeddings of the whole global batch: all ranks hold the same support set.

use crate::config::RunConfig;
use crate::data::loader::{HostBatch, ViewSpec};
use crate::dist;
use crate::error::{Error, Result};
use crate::losses::contrastive::{nnclr, support_set_nearest};
use crate::losses::l2_normalize;
use crate::memory::queue::FifoQueue;
use crate::methods::two_view::{OnlineNetwork, normalized_std, two_views};
use crate::methods::{Method, MethodInfo, StepOutput};
use crate::nn::Backbone;
use crate::train::checkpoint::{self, HostParam};
use crate::train::optim::Optimizer;
use crate::train::step::update_on_whole_batch;
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Registry entry.
pub const INFO: MethodInfo = MethodInfo {
    name: "nnclr",
    paper: "Dwibedi et al. 2021, With a Little Help from My Friends (NNCLR)",
    summary: "InfoNCE with the nearest neighbour from a support set of past embeddings as positive",
    settings: crate::methods::complete_settings::<NnclrConfig>,
    trained_readout: crate::methods::global_readout,
    build,
};

/// NNCLR's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NnclrConfig {
    /// Hidden width of the projection MLP.
    pub proj_hidden: usize,
    /// Output width of the projection MLP (the embedding).
    pub proj_dim: usize,
    /// Hidden width of the prediction MLP.
    pub pred_hidden: usize,
    /// Embeddings kept in the support set (the paper: 98,304 for ImageNet).
    pub support_size: usize,
    /// Softmax temperature (the paper: 0.1).
    pub temperature: f32,
}

impl Default for NnclrConfig {
    fn default() -> Self {
        NnclrConfig {
            proj_hidden: 512,
            proj_dim: 128,
            pred_hidden: 512,
            support_size: 4096,
            temperature: 0.1,
        }
    }
}

impl crate::methods::Settings for NnclrConfig {
    fn validate(&self, _run: &RunConfig) -> Result<()> {
        if self.support_size == 0 || !(self.temperature > 0.0) {
            return Err(Error::Config(format!(
                "nnclr.support_size = {} must be positive and nnclr.temperature = {} positive",
                self.support_size, self.temperature
            )));
        }
        Ok(())
    }
}

/// The NNCLR method: an online network and its support set.
pub struct Nnclr {
    model: OnlineNetwork,
    /// Support set, `[support_size, proj_dim]`, L2-normalized rows; random unit vectors
    /// until filled.
    support: FifoQueue,
    cfg: NnclrConfig,
    views: ViewSpec,
    device: Device,
}

fn build(run: &RunConfig, in_channels: usize, device: &Device) -> Result<Box<dyn Method>> {
    let c: NnclrConfig = crate::methods::settings(run)?;
    let widths = [c.proj_hidden, c.proj_dim, c.pred_hidden];
    let support = FifoQueue::random_unit("support_set", c.support_size, c.proj_dim, device);
    Ok(Box::new(Nnclr {
        model: OnlineNetwork::new(run, widths, in_channels, device),
        support,
        cfg: c,
        views: two_views(run),
        device: device.clone(),
    }))
}

impl Method for Nnclr {
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
        let step = batch.step + 1;
        let [z1, z2, p1, p2] = self.model.forward(batch, &self.device);
        let support = Tensor::from_inner(self.support.rows.clone());
        // Without gradient, as in the paper; gathered over the ranks (unchanged in one process).
        let nn1 = dist::gather_rows(support_set_nearest(z1.clone(), support.clone()));
        let nn2 = dist::gather_rows(support_set_nearest(z2, support));
        let z_std = normalized_std(&z1);
        let fresh = dist::gather_rows(l2_normalize(z1.detach())).inner();
        let t = self.cfg.temperature;
        let (model, value) = update_on_whole_batch(
            self.model.clone(),
            vec![p1, p2],
            |p| (nnclr(nn1, p[1].clone(), t) + nnclr(nn2, p[0].clone(), t)) / 2.0,
            opt,
            lr,
            step,
            "NNCLR loss",
        )?;
        self.model = model;
        self.support.push(fresh);
        Ok(StepOutput {
            loss: value,
            terms: vec![("z_std".into(), z_std)],
        })
    }

    fn backbone_prefix(&self) -> &'static str {
        "encoder.backbone."
    }

    fn backbone(&self) -> Backbone {
        self.model.encoder.backbone.clone()
    }

    fn tensors(&self) -> BTreeMap<String, HostParam> {
        let mut t = checkpoint::collect(&self.model);
        self.support.save_into(&mut t);
        t
    }

    fn load_tensors(&mut self, tensors: &HashMap<String, HostParam>, path: &Path) -> Result<()> {
        let mut model_tensors = tensors.clone();
        self.support.take_from(&mut model_tensors, path)?;
        self.model = checkpoint::apply(self.model.clone(), &model_tensors, path)?;
        Ok(())
    }
}
