//! What the two-view joint-embedding methods share (BYOL, SimSiam, Barlow Twins, VICReg,
//! MoCo v3), like solo-learn's base and momentum-base methods: an encoder (backbone +
//! projection MLP) that embeds both views of a batch, an online network (encoder + prediction
//! MLP), and an online network paired with a momentum copy of its encoder.

use crate::config::RunConfig;
use crate::data::loader::{HostBatch, ViewSpec};
use crate::memory::ema::{cosine_momentum, ema_update};
use crate::methods::StepInfo;
use crate::nn::{Backbone, heads::Mlp};
use burn::prelude::*;

/// Two views of each image, both the run's view pipeline.
pub fn two_views(run: &RunConfig) -> ViewSpec {
    ViewSpec {
        views: vec![run.views.clone(), run.views.clone()],
    }
}

/// Backbone plus projection MLP.
#[derive(Module, Debug)]
pub struct Encoder {
    /// The representation.
    pub backbone: Backbone,
    /// The projection MLP.
    pub projector: Mlp,
}

impl Encoder {
    /// A fresh encoder: `run`'s backbone for `channels`-channel images, and a projection MLP
    /// through `hidden` to `dim` (with BatchNorm if the backbone has it).
    pub fn new(
        run: &RunConfig,
        hidden: usize,
        dim: usize,
        channels: usize,
        device: &Device,
    ) -> Self {
        let backbone = Backbone::new(&run.backbone, channels, device);
        let projector = Mlp::on_backbone(&backbone, &run.backbone, hidden, dim, device);
        Encoder {
            backbone,
            projector,
        }
    }

    /// The embeddings `(z1, z2)` (`[B, dim]` each) of the batch's two views, run as one batch
    /// of `2B` so that BatchNorm sees both views.
    pub fn embed_views(&self, batch: &HostBatch, device: &Device) -> (Tensor<2>, Tensor<2>) {
        let b = batch.indices.len();
        let x = Tensor::cat(
            vec![
                batch.views[0].to_tensor(device),
                batch.views[1].to_tensor(device),
            ],
            0,
        );
        let z = self.projector.forward(self.backbone.forward(x));
        (z.clone().narrow(0, 0, b), z.narrow(0, b, b))
    }
}

/// An encoder and a prediction MLP on its embeddings.
#[derive(Module, Debug)]
pub struct OnlineNetwork {
    /// The encoder, whose backbone evaluation reads.
    pub encoder: Encoder,
    /// The prediction MLP, from the embedding through `pred_hidden` back to its width.
    pub predictor: Mlp,
}

impl OnlineNetwork {
    /// A fresh online network (see [`Encoder::new`]) with a predictor through `pred_hidden`.
    pub fn new(
        run: &RunConfig,
        [hidden, dim, pred_hidden]: [usize; 3],
        channels: usize,
        device: &Device,
    ) -> Self {
        let bn = run.backbone.batch_norm();
        OnlineNetwork {
            encoder: Encoder::new(run, hidden, dim, channels, device),
            predictor: Mlp::with_norm(dim, pred_hidden, dim, bn, device),
        }
    }

    /// The embeddings `(z1, z2)` of the two views and the predictions `(p1, p2)` from them.
    pub fn forward(&self, batch: &HostBatch, device: &Device) -> [Tensor<2>; 4] {
        let (z1, z2) = self.encoder.embed_views(batch, device);
        let (p1, p2) = (
            self.predictor.forward(z1.clone()),
            self.predictor.forward(z2.clone()),
        );
        [z1, z2, p1, p2]
    }
}

/// Name prefix of the online backbone's tensors in a [`MomentumPair`].
pub const MOMENTUM_PAIR_BACKBONE: &str = "online.encoder.backbone.";

/// An online network and a target encoder that is an exponential moving average of the
/// online encoder, never trained by backpropagation; one module, so one checkpoint holds both.
#[derive(Module, Debug)]
pub struct MomentumPair {
    /// Trained by backpropagation.
    pub online: OnlineNetwork,
    /// Moving average of `online.encoder`.
    pub target: Encoder,
}

impl MomentumPair {
    /// A fresh online network (see [`OnlineNetwork::new`]) and a target equal to its encoder
    /// (built separately, with its own BatchNorm state, then set equal).
    pub fn new(run: &RunConfig, widths: [usize; 3], channels: usize, device: &Device) -> Self {
        let online = OnlineNetwork::new(run, widths, channels, device);
        let fresh = Encoder::new(run, widths[0], widths[1], channels, device);
        let target = ema_update(fresh, &online.encoder, 0.0);
        MomentumPair { online, target }
    }

    /// The target's embeddings of the two views, without gradient.
    pub fn target_views(&self, batch: &HostBatch, device: &Device) -> (Tensor<2>, Tensor<2>) {
        let (t1, t2) = self.target.embed_views(batch, device);
        (t1.detach(), t2.detach())
    }

    /// Moves the target towards the online encoder after step `info`: momentum `base`, or
    /// with `cosine` the half-cosine ramp from `base` to 1 over the run (BYOL, MoCo v3).
    pub fn update_target(&mut self, base: f64, cosine: bool, info: &StepInfo) {
        let m = if cosine {
            cosine_momentum(base, info.step, info.total_steps)
        } else {
            base
        };
        self.target = ema_update(self.target.clone(), &self.online.encoder, m);
    }
}

/// Mean over dimensions of the standard deviation over the batch of the L2-normalized rows of
/// `z`: about `1/sqrt(D)` for spread embeddings, 0 when they collapse to one point (SimSiam's
/// collapse monitor, section 4.1 of the paper).
pub fn normalized_std(z: &Tensor<2>) -> f32 {
    let n = crate::losses::l2_normalize(z.clone().detach());
    let centred = n.clone() - n.mean_dim(0);
    centred
        .powi_scalar(2)
        .mean_dim(0)
        .sqrt()
        .mean()
        .into_scalar()
}
