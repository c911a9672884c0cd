//! SimSiam: "Exploring Simple Siamese Representation Learning" (Chen & He, CVPR 2021).
//!
//! Two views go through the same encoder (backbone + projection MLP); a prediction MLP maps
//! one view's embedding to the other's, and the loss is the negative cosine similarity of the
//! prediction with the *stopped* embedding of the other view, symmetrized:
//! `L = D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2` (eq. 1-2). No negatives, no momentum encoder:
//! the stop-gradient alone keeps the embeddings from collapsing (section 4.1); `z_std` in the
//! metrics is the paper's collapse monitor.
//!
//! Data-parallel: the loss is a mean over the rank's own images; gradients are averaged.

use crate::config::RunConfig;
use crate::data::loader::{HostBatch, ViewSpec};
use crate::error::Result;
use crate::losses::negative_cosine;
use crate::methods::two_view::{OnlineNetwork, normalized_std, two_views};
use crate::methods::{Method, MethodInfo, StepOutput};
use crate::nn::Backbone;
use crate::train::optim::Optimizer;
use crate::train::step::update;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// Registry entry.
pub const INFO: MethodInfo = MethodInfo {
    name: "simsiam",
    paper: "Chen & He 2021, Exploring Simple Siamese Representation Learning",
    summary: "two views, predictor MLP, negative cosine against the other view's stopped embedding",
    settings: crate::methods::complete_settings::<SimSiamConfig>,
    trained_readout: crate::methods::global_readout,
    build,
};

/// SimSiam's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimSiamConfig {
    /// Hidden width of the projection MLP.
    pub proj_hidden: usize,
    /// Output width of the projection MLP (the embedding).
    pub proj_dim: usize,
    /// Hidden (bottleneck) width of the prediction MLP (the paper: a quarter of `proj_dim`).
    pub pred_hidden: usize,
}

impl Default for SimSiamConfig {
    fn default() -> Self {
        SimSiamConfig {
            proj_hidden: 512,
            proj_dim: 512,
            pred_hidden: 128,
        }
    }
}

impl crate::methods::Settings for SimSiamConfig {}

/// The SimSiam method: one online network (encoder + predictor), no target network.
pub struct SimSiam {
    model: OnlineNetwork,
    views: ViewSpec,
    device: Device,
}

fn build(run: &RunConfig, in_channels: usize, device: &Device) -> Result<Box<dyn Method>> {
    let c: SimSiamConfig = crate::methods::settings(run)?;
    let widths = [c.proj_hidden, c.proj_dim, c.pred_hidden];
    Ok(Box::new(SimSiam {
        model: OnlineNetwork::new(run, widths, in_channels, device),
        views: two_views(run),
        device: device.clone(),
    }))
}

impl Method for SimSiam {
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
        let z_std = normalized_std(&z1);
        let loss = negative_cosine(p1, z2.detach()) / 2.0 + negative_cosine(p2, z1.detach()) / 2.0;
        let (model, value) = update(self.model.clone(), loss, opt, lr, step, "SimSiam loss")?;
        self.model = model;
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

    crate::methods::model_checkpoint!(model);
}
