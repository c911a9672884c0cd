//! SimCLR: "A Simple Framework for Contrastive Learning of Visual Representations"
//! (Chen, Kornblith, Norouzi & Hinton, ICML 2020).
//!
//! Two augmented views of each image go through the backbone and a projection MLP; NT-Xent
//! pulls the two projections of an image together and pushes the other `2B - 2` away. Both
//! views go through the network as one batch of `2B`, so BatchNorm statistics are shared
//! across views, like SimCLR's global BN.
//!
//! Data-parallel: each rank gathers every rank's projections, so its images meet the
//! negatives of the whole global batch, and gets back the exact gradient of its projections
//! ([`crate::dist::GatheredRows`]).

use crate::config::RunConfig;
use crate::data::loader::{HostBatch, ViewSpec};
use crate::dist;
use crate::error::Result;
use crate::losses::{nt_xent, nt_xent_anchors};
use crate::methods::{Method, MethodInfo, StepOutput};
use crate::nn::{Backbone, heads::Mlp};
use crate::train::optim::Optimizer;
use crate::train::step::finite_scalar;
use burn::optim::GradientsParams;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// Registry entry.
pub const INFO: MethodInfo = MethodInfo {
    name: "simclr",
    paper: "Chen et al. 2020, A Simple Framework for Contrastive Learning of Visual Representations",
    summary: "two augmented views, projection MLP, NT-Xent over the 2B views of a batch",
    settings: crate::methods::complete_settings::<SimClrConfig>,
    trained_readout: crate::methods::global_readout,
    build,
};

/// SimCLR's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimClrConfig {
    /// NT-Xent temperature.
    pub temperature: f32,
    /// Hidden width of the projection MLP.
    pub proj_hidden: usize,
    /// Output width of the projection MLP.
    pub proj_dim: usize,
}

impl crate::methods::Settings for SimClrConfig {
    fn validate(&self, _run: &RunConfig) -> Result<()> {
        if self.temperature > 0.0 {
            Ok(())
        } else {
            Err(crate::Error::Config(format!(
                "simclr.temperature = {} must be positive",
                self.temperature
            )))
        }
    }
}

impl Default for SimClrConfig {
    fn default() -> Self {
        SimClrConfig {
            temperature: 0.2,
            proj_hidden: 512,
            proj_dim: 128,
        }
    }
}

/// Backbone plus projection head.
#[derive(Module, Debug)]
pub struct SimClrModel {
    /// The representation.
    pub backbone: Backbone,
    /// The projection MLP (discarded after pretraining).
    pub projector: Mlp,
}

/// The SimCLR method.
pub struct SimClr {
    model: SimClrModel,
    cfg: SimClrConfig,
    views: ViewSpec,
    device: Device,
}

fn build(run: &RunConfig, in_channels: usize, device: &Device) -> Result<Box<dyn Method>> {
    let cfg: SimClrConfig = crate::methods::settings(run)?;
    let backbone = Backbone::new(&run.backbone, in_channels, device);
    let projector = Mlp::on_backbone(
        &backbone,
        &run.backbone,
        cfg.proj_hidden,
        cfg.proj_dim,
        device,
    );
    Ok(Box::new(SimClr {
        model: SimClrModel {
            backbone,
            projector,
        },
        cfg,
        views: ViewSpec {
            views: vec![run.views.clone(), run.views.clone()],
        },
        device: device.clone(),
    }))
}

impl Method for SimClr {
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
        let value;
        let x = Tensor::cat(
            vec![
                batch.views[0].to_tensor(&self.device),
                batch.views[1].to_tensor(&self.device),
            ],
            0,
        );
        let z = self.model.projector.forward(self.model.backbone.forward(x));
        let z1 = z.clone().narrow(0, 0, b);
        let z2 = z.narrow(0, b, b);
        let grads = if dist::world_size() == 1 {
            let loss = nt_xent(z1, z2, self.cfg.temperature);
            value = finite_scalar(&loss, step, "NT-Xent loss")?;
            loss.backward()
        } else {
            // Negatives from every rank: this rank scores its own images against the gathered
            // batch; the gradient of the gathered rows comes back summed over the ranks.
            let (g1, g2) = (
                dist::gather_rows_with_grad(z1),
                dist::gather_rows_with_grad(z2),
            );
            let mine = dist::rank() * b..(dist::rank() + 1) * b;
            let share = nt_xent_anchors(
                g1.gathered.clone(),
                g2.gathered.clone(),
                self.cfg.temperature,
                mine,
            );
            value = finite_scalar(&share, step, "NT-Xent loss")?;
            let grads = share.backward();
            let grad_of = |g: &dist::GatheredRows| {
                g.gathered
                    .grad(&grads)
                    .expect("the gathered rows are in the loss")
            };
            let (d1, d2) = (grad_of(&g1), grad_of(&g2));
            (g1.surrogate(d1) + g2.surrogate(d2)).backward()
        };
        let grads = GradientsParams::from_grads(grads, &self.model);
        self.model = opt.step(lr, self.model.clone(), grads);
        Ok(StepOutput {
            loss: value,
            terms: vec![],
        })
    }

    fn backbone(&self) -> Backbone {
        self.model.backbone.clone()
    }

    crate::methods::model_checkpoint!(model);
}
