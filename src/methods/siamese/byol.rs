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
use crate::memory::ema::{cosine_momentum, ema_update};
use crate::methods::siamese::{embed_two_views, normalized_std};
use crate::methods::{Method, MethodInfo, StepInfo, StepOutput};
use crate::nn::{Backbone, heads::Mlp};
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
    readout: crate::methods::global_readout,
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

/// Backbone plus projection MLP: the online encoder, and (as a moving average) the target.
#[derive(Module, Debug)]
pub struct ByolEncoder {
    /// The representation.
    pub backbone: Backbone,
    /// The projection MLP.
    pub projector: Mlp,
}

/// The online network: encoder and predictor.
#[derive(Module, Debug)]
pub struct ByolOnline {
    /// Trained by backpropagation; its backbone is the one evaluation reads.
    pub encoder: ByolEncoder,
    /// The prediction MLP `q`.
    pub predictor: Mlp,
}

/// Online network and target in one module, so one checkpoint holds both.
#[derive(Module, Debug)]
pub struct ByolModel {
    /// The online network.
    pub online: ByolOnline,
    /// Moving average of the online encoder.
    pub target: ByolEncoder,
}

/// The BYOL method.
pub struct Byol {
    model: ByolModel,
    cfg: ByolConfig,
    views: ViewSpec,
    device: Device,
}

fn encoder(run: &RunConfig, c: &ByolConfig, in_channels: usize, device: &Device) -> ByolEncoder {
    let backbone = Backbone::new(&run.backbone, in_channels, device);
    let projector = Mlp::on_backbone(&backbone, &run.backbone, c.proj_hidden, c.proj_dim, device);
    ByolEncoder {
        backbone,
        projector,
    }
}

fn build(run: &RunConfig, in_channels: usize, device: &Device) -> Result<Box<dyn Method>> {
    let c: ByolConfig = crate::methods::settings(run)?;
    let online = encoder(run, &c, in_channels, device);
    let bn = run.backbone.batch_norm();
    let predictor = Mlp::with_norm(c.proj_dim, c.pred_hidden, c.proj_dim, bn, device);
    // A separately built encoder (own BatchNorm state), then set equal to the online one.
    let target = ema_update(encoder(run, &c, in_channels, device), &online, 0.0);
    Ok(Box::new(Byol {
        model: ByolModel {
            online: ByolOnline {
                encoder: online,
                predictor,
            },
            target,
        },
        cfg: c,
        views: ViewSpec {
            views: vec![run.views.clone(), run.views.clone()],
        },
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
        let (online, target) = (&self.model.online, &self.model.target);
        let (z1, z2) = embed_two_views(
            &online.encoder.backbone,
            &online.encoder.projector,
            batch,
            &self.device,
        );
        let (p1, p2) = (
            online.predictor.forward(z1.clone()),
            online.predictor.forward(z2),
        );
        let (t1, t2) = embed_two_views(&target.backbone, &target.projector, batch, &self.device);
        let z_std = normalized_std(&z1);
        let loss = normalized_mse(p1, t2.detach()) + normalized_mse(p2, t1.detach());
        let (online, value) = update(self.model.online.clone(), loss, opt, lr, step, "BYOL loss")?;
        self.model.online = online;
        Ok(StepOutput {
            loss: value,
            terms: vec![("z_std".into(), z_std)],
        })
    }

    fn after_step(&mut self, info: &StepInfo) {
        let m = if self.cfg.cosine_momentum {
            cosine_momentum(self.cfg.momentum, info.step, info.total_steps)
        } else {
            self.cfg.momentum
        };
        self.model.target = ema_update(self.model.target.clone(), &self.model.online.encoder, m);
    }

    fn backbone_prefix(&self) -> &'static str {
        "online.encoder.backbone."
    }

    fn backbone(&self) -> Backbone {
        self.model.online.encoder.backbone.clone()
    }

    crate::methods::model_checkpoint!(model);
}
