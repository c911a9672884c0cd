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
use crate::methods::siamese::{embed_two_views, normalized_std};
use crate::methods::{Method, MethodInfo, StepOutput};
use crate::nn::{Backbone, heads::Mlp};
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
    readout: crate::methods::global_readout,
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

/// Backbone, projection MLP and prediction MLP.
#[derive(Module, Debug)]
pub struct SimSiamModel {
    /// The representation.
    pub backbone: Backbone,
    /// The projection MLP.
    pub projector: Mlp,
    /// The prediction MLP `h`.
    pub predictor: Mlp,
}

/// The SimSiam method.
pub struct SimSiam {
    model: SimSiamModel,
    views: ViewSpec,
    device: Device,
}

fn build(run: &RunConfig, in_channels: usize, device: &Device) -> Result<Box<dyn Method>> {
    let c: SimSiamConfig = crate::methods::settings(run)?;
    let backbone = Backbone::new(&run.backbone, in_channels, device);
    let bn = run.backbone.batch_norm();
    let projector = Mlp::on_backbone(&backbone, &run.backbone, c.proj_hidden, c.proj_dim, device);
    let predictor = Mlp::with_norm(c.proj_dim, c.pred_hidden, c.proj_dim, bn, device);
    Ok(Box::new(SimSiam {
        model: SimSiamModel {
            backbone,
            projector,
            predictor,
        },
        views: ViewSpec {
            views: vec![run.views.clone(), run.views.clone()],
        },
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
        let m = &self.model;
        let (z1, z2) = embed_two_views(&m.backbone, &m.projector, batch, &self.device);
        let (p1, p2) = (
            m.predictor.forward(z1.clone()),
            m.predictor.forward(z2.clone()),
        );
        let z_std = normalized_std(&z1);
        let loss = negative_cosine(p1, z2.detach()) / 2.0 + negative_cosine(p2, z1.detach()) / 2.0;
        let (model, value) = update(self.model.clone(), loss, opt, lr, step, "SimSiam loss")?;
        self.model = model;
        Ok(StepOutput {
            loss: value,
            terms: vec![("z_std".into(), z_std)],
        })
    }

    fn backbone(&self) -> Backbone {
        self.model.backbone.clone()
    }

    crate::methods::model_checkpoint!(model);
}
