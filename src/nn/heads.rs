//! Heads that sit on top of a backbone during pretraining.

use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, Relu};
use burn::prelude::*;

/// The projection MLP of SimCLR (Chen et al. 2020): `Linear -> BN -> ReLU -> Linear`, the
/// loss is computed on its output and the head is thrown away after pretraining.
#[derive(Module, Debug)]
pub struct Mlp {
    /// Hidden layer.
    pub fc1: Linear,
    /// BN on the hidden layer (SimCLR v2, solo-learn); absent with `backbone.norm = "none"`.
    pub bn1: Option<BatchNorm>,
    /// Output layer.
    pub fc2: Linear,
    act: Relu,
}

impl Mlp {
    /// A head from `d_in` through `hidden` to `d_out` dimensions.
    pub fn new(d_in: usize, hidden: usize, d_out: usize, device: &Device) -> Self {
        Self::with_norm(d_in, hidden, d_out, true, device)
    }

    /// [`Mlp::new`], with BN on the hidden layer only if `batch_norm` (else the
    /// hidden layer has a bias).
    pub fn with_norm(
        d_in: usize,
        hidden: usize,
        d_out: usize,
        batch_norm: bool,
        device: &Device,
    ) -> Self {
        Mlp {
            fc1: LinearConfig::new(d_in, hidden)
                .with_bias(!batch_norm)
                .init(device),
            bn1: batch_norm.then(|| BatchNormConfig::new(hidden).init(device)),
            fc2: LinearConfig::new(hidden, d_out).init(device),
            act: Relu::new(),
        }
    }

    /// A head on `backbone`'s features (`cfg` its settings: BN in the head if the backbone
    /// has BN), through `hidden` to `d_out` dimensions.
    pub fn on_backbone(
        backbone: &crate::nn::Backbone,
        cfg: &crate::nn::BackboneConfig,
        hidden: usize,
        d_out: usize,
        device: &Device,
    ) -> Self {
        Self::with_norm(
            backbone.feature_dim(),
            hidden,
            d_out,
            cfg.batch_norm(),
            device,
        )
    }

    /// Projects features `[B, d_in]` to `[B, d_out]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let h = self.fc1.forward(x);
        let h = match &self.bn1 {
            Some(bn) => bn.forward(h),
            None => h,
        };
        self.fc2.forward(self.act.forward(h))
    }
}
