//! BYOL: "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning" (Grill et al.,
//! NeurIPS 2020).
//!
//! An online network (backbone, projection MLP, prediction MLP) predicts, from one view, the
//! target network's projection of the other view; the target is an exponential moving
//! average of the online encoder, never trained by backpropagation, with its momentum ramped
//! from `momentum` to 1 by a half cosine (section 3.1). The loss is the squared distance of
//! the L2-normalized prediction and target, `2 - 2 cos`, summed over both orders of the views
//! (eq. 2). `z_std` in the metrics watches for collapse.
//!
//! Data-parallel: the loss is a mean over the rank's own images; gradients are averaged, and
//! every rank applies the same moving average, so the targets stay equal.

use crate::config::RunConfig;
use crate::data::loader::{HostBatch, ViewSpec};
use crate::error::Result;
use crate::losses::normalized_mse;
use crate::methods::two_view::{MOMENTUM_PAIR_BACKBONE, MomentumPair, normalized_std, two_views};
use crate::methods::{Method, MethodInfo, StepInfo, StepOutput};
use crate::nn::Backbone;
use crate::train::optim::Optimizer;
use crate::train::step::update;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// Registry entry.
pub const INFO: MethodInfo = MethodInfo {
    name: "byol",
    paper: "Grill et al. 2020, Bootstrap Your Own Latent",
    summary: "online network predicts a momentum target's projection of the other view",
    settings: crate::methods::complete_settings::<ByolConfig>,
    trained_readout: crate::methods::global_readout,
    build,
};

/// BYOL's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ByolConfig {
    /// Hidden width of the projection MLP.
    pub proj_hidden: usize,
    /// Output width of the projection MLP.
    pub proj_dim: usize,
    /// Hidden width of the prediction MLP.
    pub pred_hidden: usize,
    /// Momentum of the target's moving average at the start (the paper: 0.996).
    pub momentum: f64,
    /// Ramp the momentum to 1 with a half cosine over the run (the paper).
    pub cosine_momentum: bool,
}

impl Default for ByolConfig {
    fn default() -> Self {
        ByolConfig {
            proj_hidden: 512,
            proj_dim: 128,
            pred_hidden: 512,
            momentum: 0.99,
            cosine_momentum: true,
        }
    }
}

impl crate::methods::Settings for ByolConfig {
    fn validate(&self, _run: &RunConfig) -> Result<()> {
        if !(0.0..=1.0).contains(&self.momentum) {
            return Err(crate::Error::Config(format!(
                "byol.momentum = {} must be in [0, 1]",
                self.momentum
            )));
        }
        Ok(())
    }
}

/// The BYOL method: an online network and its momentum target.
pub struct Byol {
    model: MomentumPair,
    cfg: ByolConfig,
    views: ViewSpec,
    device: Device,
}

fn build(run: &RunConfig, in_channels: usize, device: &Device) -> Result<Box<dyn Method>> {
    let c: ByolConfig = crate::methods::settings(run)?;
    let widths = [c.proj_hidden, c.proj_dim, c.pred_hidden];
    Ok(Box::new(Byol {
        model: MomentumPair::new(run, widths, in_channels, device),
        cfg: c,
        views: two_views(run),
        device: device.clone(),
    }))
}

impl Method for Byol {
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
        let [z1, _, p1, p2] = self.model.online.forward(batch, &self.device);
        let (t1, t2) = self.model.target_views(batch, &self.device);
        let terms = vec![("z_std".to_string(), normalized_std(&z1))];
        let loss = normalized_mse(p1, t2) + normalized_mse(p2, t1);
        let (online, value) = update(self.model.online.clone(), loss, opt, lr, step, "BYOL loss")?;
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
