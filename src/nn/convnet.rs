//! The small ConvNet for 28-32 px images: four 3x3 conv-BN-ReLU blocks with widths
//! 32-64-128-256 (the 4-layer network of lightly's small benchmarks). The first convolution
//! has stride 2 and the second and third blocks end with 2x2 max-pooling (28 -> 14 -> 7 -> 3).
//!
//! Why stride 2 first: measured on 2 cores with burn's flex backend, a SimCLR step is about
//! 1.8x faster than with a stride-1 first block followed by max-pooling (the memory-bound BN,
//! ReLU and pooling at full resolution dominated the step), and in the 64-step learning test
//! its features gained more over random init (+4.0 vs +1.2 k-NN points). Moving the pooling
//! before BN (conv-pool-BN-ReLU) was as fast but learned worse (-1.4 points).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d, Relu};
use burn::prelude::*;

/// One conv-BN-ReLU block (conv-ReLU with a bias when built without normalization).
#[derive(Module, Debug)]
pub struct ConvBlock {
    /// 3x3 convolution, without bias when BatchNorm follows.
    pub conv: Conv2d,
    /// Batch normalization (absent with `backbone.norm = "none"`).
    pub bn: Option<BatchNorm>,
    /// ReLU.
    pub act: Relu,
}

impl ConvBlock {
    /// A block from `cin` to `cout` channels; `stride` 2 halves the resolution; with
    /// `batch_norm` false the convolution has a bias and no BatchNorm follows.
    pub fn new(cin: usize, cout: usize, stride: usize, batch_norm: bool, device: &Device) -> Self {
        ConvBlock {
            conv: Conv2dConfig::new([cin, cout], [3, 3])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(!batch_norm)
                .init(device),
            bn: batch_norm.then(|| BatchNormConfig::new(cout).init(device)),
            act: Relu::new(),
        }
    }

    /// Applies conv, BN and ReLU.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = super::conv::conv2d(&self.conv, x);
        match &self.bn {
            Some(bn) => super::batch_norm::batch_norm_relu(bn, y),
            None => self.act.forward(y),
        }
    }
}

/// Four [`ConvBlock`]s; widths `32w, 64w, 128w, 256w`.
#[derive(Module, Debug)]
pub struct ConvNet {
    /// The blocks, in order.
    pub blocks: Vec<ConvBlock>,
    pool: MaxPool2d,
}

impl ConvNet {
    /// Builds the network for `in_channels` input channels and width multiplier `width`, with
    /// or without BatchNorm.
    pub fn new(in_channels: usize, width: f32, batch_norm: bool, device: &Device) -> Self {
        let widths: Vec<usize> = [32.0, 64.0, 128.0, 256.0]
            .iter()
            .map(|w| ((w * width) as usize).max(1))
            .collect();
        let mut blocks = Vec::new();
        let mut cin = in_channels;
        for (i, &w) in widths.iter().enumerate() {
            blocks.push(ConvBlock::new(
                cin,
                w,
                if i == 0 { 2 } else { 1 },
                batch_norm,
                device,
            ));
            cin = w;
        }
        ConvNet {
            blocks,
            pool: MaxPool2dConfig::new([2, 2]).init(),
        }
    }

    /// Channels of the last block. (Read from the lazy shape: materializing a weight here
    /// would draw it out of turn and change every seeded initialization.)
    pub fn feature_dim(&self) -> usize {
        self.blocks
            .last()
            .map_or(0, |b| b.conv.weight.lazy_shape().dims::<4>()[0])
    }

    /// Output of each block (after pooling, for the first three).
    pub fn forward_stages(&self, mut x: Tensor<4>) -> Vec<Tensor<4>> {
        let n = self.blocks.len();
        let mut out = Vec::with_capacity(n);
        for (i, b) in self.blocks.iter().enumerate() {
            x = b.forward(x);
            if i > 0 && i + 1 < n {
                x = super::max_pool::max_pool2d(&self.pool, x);
            }
            out.push(x.clone());
        }
        out
    }
}
