//! VICReg: "VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised
//! Learning" (Bardes, Ponce & LeCun, ICLR 2022).
//!
//! Two views go through the same encoder (backbone + projection MLP). Three terms: the views'
//! embeddings must agree (invariance: mean squared error), each dimension must keep a standard
//! deviation of at least 1 over the batch (variance: a hinge), and the dimensions must be
//! decorrelated (covariance: the squared off-diagonal covariances), weighted 25 / 25 / 1 as in
//! the paper (eqs. 1-6). The three terms are logged.
//!
//! Data-parallel: variance and covariance are statistics of the whole batch, so every rank
//! gathers the embeddings of all ranks and computes the global batch's loss
//! ([`update_on_whole_batch`]), as the paper's code does (`FullGatherLayer`).

use crate::config::RunConfig;
use crate::data::loader::{HostBatch, ViewSpec};
use crate::error::{Error, Result};
use crate::losses::vicreg_terms;
use crate::methods::two_view::{Encoder, two_views};
use crate::methods::{Method, MethodInfo, StepOutput};
use crate::nn::Backbone;
use crate::train::optim::Optimizer;
use crate::train::step::update_on_whole_batch;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// Registry entry.
pub const INFO: MethodInfo = MethodInfo {
    name: "vicreg",
    paper: "Bardes et al. 2022, VICReg: Variance-Invariance-Covariance Regularization",
    summary: "two views agree, each dimension keeps its variance, dimensions decorrelate",
    settings: crate::methods::complete_settings::<VicRegConfig>,
    trained_readout: crate::methods::global_readout,
    build,
};

/// VICReg's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VicRegConfig {
    /// Hidden width of the projection MLP.
    pub proj_hidden: usize,
    /// Output width of the projection MLP.
    pub proj_dim: usize,
    /// Weight of the invariance term (the paper: 25).
    pub sim_weight: f32,
    /// Weight of the variance term (the paper: 25).
    pub var_weight: f32,
    /// Weight of the covariance term (the paper: 1).
    pub cov_weight: f32,
}

impl Default for VicRegConfig {
    fn default() -> Self {
        VicRegConfig {
            proj_hidden: 512,
            proj_dim: 512,
            sim_weight: 25.0,
            var_weight: 25.0,
            cov_weight: 1.0,
        }
    }
}

impl crate::methods::Settings for VicRegConfig {
    fn validate(&self, _run: &RunConfig) -> Result<()> {
        let w = [self.sim_weight, self.var_weight, self.cov_weight];
        if w.iter().any(|w| !(*w >= 0.0 && w.is_finite())) {
            return Err(Error::Config(format!(
                "vicreg.sim_weight, var_weight and cov_weight = {w:?} must be non-negative"
            )));
        }
        Ok(())
    }
}

/// The VICReg method.
pub struct VicReg {
    model: Encoder,
    cfg: VicRegConfig,
    views: ViewSpec,
    device: Device,
}

fn build(run: &RunConfig, in_channels: usize, device: &Device) -> Result<Box<dyn Method>> {
    let c: VicRegConfig = crate::methods::settings(run)?;
    Ok(Box::new(VicReg {
        model: Encoder::new(run, c.proj_hidden, c.proj_dim, in_channels, device),
        cfg: c,
        views: two_views(run),
        device: device.clone(),
    }))
}

impl Method for VicReg {
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
        let c = &self.cfg;
        let mut terms = Vec::new();
        let loss_of = |z: Vec<Tensor<2>>| {
            let (inv, var, cov) = vicreg_terms(z[0].clone(), z[1].clone());
            terms = vec![
                ("invariance".to_string(), inv.clone().into_scalar()),
                ("variance".to_string(), var.clone().into_scalar()),
                ("covariance".to_string(), cov.clone().into_scalar()),
            ];
            inv * c.sim_weight + var * c.var_weight + cov * c.cov_weight
        };
        let (model, value) = update_on_whole_batch(
            self.model.clone(),
            vec![z1, z2],
            loss_of,
            opt,
            lr,
            step,
            "VICReg loss",
        )?;
        self.model = model;
        Ok(StepOutput { loss: value, terms })
    }

    fn backbone(&self) -> Backbone {
        self.model.backbone.clone()
    }

    crate::methods::model_checkpoint!(model);
}
