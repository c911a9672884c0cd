//! MoCo v3: "An Empirical Study of Training Self-Supervised Vision Transformers" (Chen, Xie &
//! He, ICCV 2021).
//!
//! MoCo without a queue: a query encoder (backbone, projection MLP, prediction MLP) and a key
//! encoder (backbone, projection MLP) that is an exponential moving average of the query's,
//! momentum ramped from `momentum` to 1 by a half cosine. Each view's query is classified
//! among the keys of the other view of every image of the batch (InfoNCE, the other images'
//! keys as negatives), symmetrized: `ctr(q1, k2) + ctr(q2, k1)` (Algorithm 1). The query side
//! and the key encoder are a [`MomentumPair`]'s online network and target.
//!
//! Data-parallel: the keys of every rank are gathered (no gradient), so each query meets the
//! negatives of the whole global batch, as the paper's `concat_all_gather`.

use crate::config::RunConfig;
use crate::data::loader::{HostBatch, ViewSpec};
use crate::dist;
use crate::error::{Error, Result};
use crate::losses::moco_v3_contrastive;
use crate::methods::two_view::{MOMENTUM_PAIR_BACKBONE, MomentumPair, two_views};
use crate::methods::{Method, MethodInfo, StepInfo, StepOutput};
use crate::nn::Backbone;
use crate::train::optim::Optimizer;
use crate::train::step::update;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// Registry entry.
pub const INFO: MethodInfo = MethodInfo {
    name: "mocov3",
    paper: "Chen, Xie & He 2021, An Empirical Study of Training Self-Supervised Vision Transformers",
    summary: "query with predictor vs momentum keys of the other view, in-batch InfoNCE, no queue",
    settings: crate::methods::complete_settings::<MocoV3Config>,
    trained_readout: crate::methods::global_readout,
    build,
};

/// MoCo v3's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MocoV3Config {
    /// InfoNCE temperature (the paper: 0.2 for ViT, 1.0 for ResNet-50).
    pub temperature: f32,
    /// Hidden width of the projection MLP.
    pub proj_hidden: usize,
    /// Output width of the projection MLP (the key dimension).
    pub proj_dim: usize,
    /// Hidden width of the prediction MLP.
    pub pred_hidden: usize,
    /// Momentum of the key encoder at the start (the paper: 0.99, ramped to 1).
    pub momentum: f64,
    /// Ramp the momentum to 1 with a half cosine over the run (the paper).
    pub cosine_momentum: bool,
}

impl Default for MocoV3Config {
    fn default() -> Self {
        MocoV3Config {
            temperature: 0.2,
            proj_hidden: 512,
            proj_dim: 128,
            pred_hidden: 512,
            momentum: 0.99,
            cosine_momentum: true,
        }
    }
}

impl crate::methods::Settings for MocoV3Config {
    fn validate(&self, _run: &RunConfig) -> Result<()> {
        if !(self.temperature > 0.0) || !(0.0..=1.0).contains(&self.momentum) {
            return Err(Error::Config(format!(
                "mocov3.temperature = {} must be positive and mocov3.momentum = {} in [0, 1]",
                self.temperature, self.momentum
            )));
        }
        Ok(())
    }
}

/// The MoCo v3 method: an online network and its momentum target.
pub struct MocoV3 {
    model: MomentumPair,
    cfg: MocoV3Config,
    views: ViewSpec,
    device: Device,
}

fn build(run: &RunConfig, in_channels: usize, device: &Device) -> Result<Box<dyn Method>> {
    let c: MocoV3Config = crate::methods::settings(run)?;
    let widths = [c.proj_hidden, c.proj_dim, c.pred_hidden];
    Ok(Box::new(MocoV3 {
        model: MomentumPair::new(run, widths, in_channels, device),
        cfg: c,
        views: two_views(run),
        device: device.clone(),
    }))
}

impl Method for MocoV3 {
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
        let [_, _, q1, q2] = self.model.online.forward(batch, &self.device);
        // Keys of the whole global batch, without gradient; this rank's images come first at
        // `offset`.
        let (k1, k2) = self.model.target_views(batch, &self.device);
        let (k1, k2) = (dist::gather_rows(k1), dist::gather_rows(k2));
        let offset = dist::rank() * batch.indices.len();
        let t = self.cfg.temperature;
        let loss = moco_v3_contrastive(q1, k2, offset, t) + moco_v3_contrastive(q2, k1, offset, t);
        let terms = vec![];
        let (online, value) = update(
            self.model.online.clone(),
            loss,
            opt,
            lr,
            step,
            "MoCo v3 loss",
        )?;
        self.model.online = online;
        Ok(StepOutput { loss: value, terms })
    }

    fn after_step(&mut self, info: &StepInfo) {
        let c = &self.cfg;
        self.model
            .update_target(c.momentum, c.cosine_momentum, info);
    }

    fn backbone_prefix(&self) -> &'static str {
        MOMENTUM_PAIR_BACKBONE
    }

    fn backbone(&self) -> Backbone {
        self.model.online.encoder.backbone.clone()
    }

    crate::methods::model_checkpoint!(model);
}
