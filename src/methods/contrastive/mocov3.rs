//! MoCo v3: "An Empirical Study of Training Self-Supervised Vision Transformers" (Chen, Xie &
//! He, ICCV 2021).
//!
//! MoCo without a queue: a query encoder (backbone, projection MLP, prediction MLP) and a key
//! encoder (backbone, projection MLP) that is an exponential moving average of the query's,
//! momentum ramped from `momentum` to 1 by a half cosine. Each view's query is classified
//! among the keys of the other view of every image of the batch (InfoNCE, the other images'
//! keys as negatives), symmetrized: `ctr(q1, k2) + ctr(q2, k1)` (Algorithm 1).
//!
//! Data-parallel: the keys of every rank are gathered (no gradient), so each query meets the
//! negatives of the whole global batch, as the paper's `concat_all_gather`.

use crate::config::RunConfig;
use crate::data::loader::{HostBatch, ViewSpec};
use crate::dist;
use crate::error::{Error, Result};
use crate::losses::moco_v3_contrastive;
use crate::memory::ema::{cosine_momentum, ema_update};
use crate::methods::siamese::embed_two_views;
use crate::methods::{Method, MethodInfo, StepInfo, StepOutput};
use crate::nn::{Backbone, heads::Mlp};
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
    readout: crate::methods::global_readout,
    build,
};

/// MoCo v3's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MocoV3Config {
    /// InfoNCE temperature (the paper: 0.2 for ViT, 1.0 for ResNet-50).
    pub temperature: f32,
    /// Hidden width of the projection and prediction MLPs.
    pub proj_hidden: usize,
    /// Output width of the projection MLP (the key dimension).
    pub proj_dim: usize,
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

/// Backbone plus projection MLP: the query encoder's, and (as a moving average) the keys'.
#[derive(Module, Debug)]
pub struct MocoV3Encoder {
    /// The representation.
    pub backbone: Backbone,
    /// The projection MLP.
    pub projector: Mlp,
}

/// The query side: encoder and predictor, trained by backpropagation.
#[derive(Module, Debug)]
pub struct MocoV3Query {
    /// The encoder whose backbone evaluation reads.
    pub encoder: MocoV3Encoder,
    /// The prediction MLP.
    pub predictor: Mlp,
}

/// Query side and key encoder in one module, so one checkpoint holds both.
#[derive(Module, Debug)]
pub struct MocoV3Model {
    /// Trained by backpropagation.
    pub query: MocoV3Query,
    /// Moving average of the query encoder.
    pub key: MocoV3Encoder,
}

/// The MoCo v3 method.
pub struct MocoV3 {
    model: MocoV3Model,
    cfg: MocoV3Config,
    views: ViewSpec,
    device: Device,
}

fn encoder(run: &RunConfig, c: &MocoV3Config, channels: usize, device: &Device) -> MocoV3Encoder {
    let backbone = Backbone::new(&run.backbone, channels, device);
    let projector = Mlp::on_backbone(&backbone, &run.backbone, c.proj_hidden, c.proj_dim, device);
    MocoV3Encoder {
        backbone,
        projector,
    }
}

fn build(run: &RunConfig, in_channels: usize, device: &Device) -> Result<Box<dyn Method>> {
    let c: MocoV3Config = crate::methods::settings(run)?;
    let query = encoder(run, &c, in_channels, device);
    let bn = run.backbone.batch_norm();
    let predictor = Mlp::with_norm(c.proj_dim, c.proj_hidden, c.proj_dim, bn, device);
    // A separately built encoder (own BatchNorm state), then set equal to the query's.
    let key = ema_update(encoder(run, &c, in_channels, device), &query, 0.0);
    Ok(Box::new(MocoV3 {
        model: MocoV3Model {
            query: MocoV3Query {
                encoder: query,
                predictor,
            },
            key,
        },
        cfg: c,
        views: ViewSpec {
            views: vec![run.views.clone(), run.views.clone()],
        },
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
        let (query, key) = (&self.model.query, &self.model.key);
        let (z1, z2) = embed_two_views(
            &query.encoder.backbone,
            &query.encoder.projector,
            batch,
            &self.device,
        );
        let (q1, q2) = (query.predictor.forward(z1), query.predictor.forward(z2));
        let (k1, k2) = embed_two_views(&key.backbone, &key.projector, batch, &self.device);
        // Keys of the whole global batch, without gradient; this rank's images come first at
        // `offset`.
        let (k1, k2) = (dist::gather_rows(k1), dist::gather_rows(k2));
        let offset = dist::rank() * batch.indices.len();
        let t = self.cfg.temperature;
        let loss = moco_v3_contrastive(q1, k2, offset, t) + moco_v3_contrastive(q2, k1, offset, t);
        let (q, value) = update(
            self.model.query.clone(),
            loss,
            opt,
            lr,
            step,
            "MoCo v3 loss",
        )?;
        self.model.query = q;
        Ok(StepOutput {
            loss: value,
            terms: vec![],
        })
    }

    fn after_step(&mut self, info: &StepInfo) {
        let m = if self.cfg.cosine_momentum {
            cosine_momentum(self.cfg.momentum, info.step, info.total_steps)
        } else {
            self.cfg.momentum
        };
        self.model.key = ema_update(self.model.key.clone(), &self.model.query.encoder, m);
    }

    fn backbone_prefix(&self) -> &'static str {
        "query.encoder.backbone."
    }

    fn backbone(&self) -> Backbone {
        self.model.query.encoder.backbone.clone()
    }

    crate::methods::model_checkpoint!(model);
}
