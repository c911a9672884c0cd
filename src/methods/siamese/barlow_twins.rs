//! Barlow Twins: "Barlow Twins: Self-Supervised Learning via Redundancy Reduction" (Zbontar,
//! Jing, Misra, LeCun & Deny, ICML 2021).
//!
//! Two views go through the same encoder (backbone + projection MLP). The cross-correlation
//! matrix of their batch-standardized embeddings is pushed to the identity: its diagonal to 1
//! (the views agree, dimension by dimension) and its off-diagonal to 0, weighted by `lambda`
//! (the dimensions carry different information) (eq. 1). No negatives, no predictor, no
//! momentum encoder.
//!
//! Data-parallel: the cross-correlation is a statistic of the whole batch, so every rank
//! gathers the embeddings of all ranks and computes the global batch's loss
//! ([`update_on_whole_batch`]).

use crate::config::RunConfig;
use crate::data::loader::{HostBatch, ViewSpec};
use crate::error::{Error, Result};
use crate::losses::barlow_twins;
use crate::methods::two_view::{Encoder, normalized_std, two_views};
use crate::methods::{Method, MethodInfo, StepOutput};
use crate::nn::Backbone;
use crate::train::optim::Optimizer;
use crate::train::step::update_on_whole_batch;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// Registry entry.
pub const INFO: MethodInfo = MethodInfo {
    name: "barlow_twins",
    paper: "Zbontar et al. 2021, Barlow Twins: Self-Supervised Learning via Redundancy Reduction",
    summary: "cross-correlation of two views' embeddings pushed to the identity",
    settings: crate::methods::complete_settings::<BarlowTwinsConfig>,
    trained_readout: crate::methods::global_readout,
    build,
};

/// Barlow Twins' settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BarlowTwinsConfig {
    /// Hidden width of the projection MLP.
    pub proj_hidden: usize,
    /// Output width of the projection MLP (the size of the cross-correlation matrix).
    pub proj_dim: usize,
    /// Weight of the off-diagonal (redundancy reduction) term (the paper: 0.0051).
    pub lambda: f32,
}

impl Default for BarlowTwinsConfig {
    fn default() -> Self {
        BarlowTwinsConfig {
            proj_hidden: 512,
            proj_dim: 512,
            lambda: 0.0051,
        }
    }
}

impl crate::methods::Settings for BarlowTwinsConfig {
    fn validate(&self, _run: &RunConfig) -> Result<()> {
        if !(self.lambda >= 0.0 && self.lambda.is_finite()) {
            return Err(Error::Config(format!(
                "barlow_twins.lambda = {} must be a non-negative number",
                self.lambda
            )));
        }
        Ok(())
    }
}

/// The Barlow Twins method.
pub struct BarlowTwins {
    model: Encoder,
    cfg: BarlowTwinsConfig,
    views: ViewSpec,
    device: Device,
}

fn build(run: &RunConfig, in_channels: usize, device: &Device) -> Result<Box<dyn Method>> {
    let c: BarlowTwinsConfig = crate::methods::settings(run)?;
    Ok(Box::new(BarlowTwins {
        model: Encoder::new(run, c.proj_hidden, c.proj_dim, in_channels, device),
        cfg: c,
        views: two_views(run),
        device: device.clone(),
    }))
}

impl Method for BarlowTwins {
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
        let (z1, z2) = self.model.embed_views(batch, &self.device);
        let z_std = normalized_std(&z1);
        let lambda = self.cfg.lambda;
        let (model, value) = update_on_whole_batch(
            self.model.clone(),
            vec![z1, z2],
            |z| barlow_twins(z[0].clone(), z[1].clone(), lambda),
            opt,
            lr,
            step,
            "Barlow Twins loss",
        )?;
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
