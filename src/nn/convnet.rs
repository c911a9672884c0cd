//! The small ConvNet for 28-32 px images: four 3x3 conv-BN-ReLU blocks with widths
//! 32-64-128-256 (the 4-layer network of lightly's small benchmarks). The first convolution
//! has stride 2 and the second and third blocks end with 2x2 max-pooling (28 -> 14 -> 7 -> 3).
//!
//! Why stride 2 first: measured on 2 cores with burn's flex backend, a SimCLR step is about
//! 1.8x faster than with a stride-1 first block followed by max-pooling (the memory-bound BN,
//! ReLU and pooling at full resolution dominated the step), and in the 64-step learning test
//! its features gained more over random init (+4.0 vs +1.2 k-NN points). Moving the pooling
//! before BN (conv-pool-BN-ReLU) was as fast but learned worse (-1.4 points).

use super::Norm;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, GroupNorm, GroupNormConfig, PaddingConfig2d, Relu};
use burn::prelude::*;

/// One conv-BN-ReLU block (conv-LayerNorm-ReLU with `norm = "layer"`, conv-ReLU with a bias
/// without normalization).
#[derive(Module, Debug)]
pub struct ConvBlock {
    /// 3x3 convolution, without bias when BatchNorm follows.
    pub conv: Conv2d,
    /// Batch normalization (with `backbone.norm = "batch"`).
    pub bn: Option<BatchNorm>,
    /// Layer normalization over each image's channels and positions, a GroupNorm with one
    /// group (with `backbone.norm = "layer"`).
    pub ln: Option<GroupNorm>,
    /// ReLU.
    pub act: Relu,
}

impl ConvBlock {
    /// A block from `cin` to `cout` channels; `stride` 2 halves the resolution; with `norm`
    /// none the convolution has a bias and no normalization follows.
    pub fn new(cin: usize, cout: usize, stride: usize, norm: Norm, device: &Device) -> Self {
        ConvBlock {
            conv: Conv2dConfig::new([cin, cout], [3, 3])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(norm == Norm::None)
                .init(device),
            bn: (norm == Norm::Batch).then(|| BatchNormConfig::new(cout).init(device)),
            ln: (norm == Norm::Layer).then(|| GroupNormConfig::new(1, cout).init(device)),
            act: Relu::new(),
        }
    }

    /// Applies conv, the normalization and ReLU.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = super::conv::conv2d(&self.conv, x);
        match (&self.bn, &self.ln) {
            (Some(bn), _) => super::batch_norm::batch_norm_relu(bn, y),
            (None, Some(ln)) => self.act.forward(ln.forward(y)),
            (None, None) => self.act.forward(y),
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
    /// the normalization `norm`.
    pub fn new(in_channels: usize, width: f32, norm: Norm, device: &Device) -> Self {
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
                norm,
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// In training, BatchNorm mixes the images of a batch, LayerNorm does not: an image's
    /// features stay the same when the other images change (CPC v2's reason for LayerNorm).
    #[test]
    fn layer_norm_keeps_the_images_of_a_batch_apart() {
        let device = crate::device::training(&Device::flex());
        let x = Tensor::<4>::random([4, 1, 12, 12], Distribution::Normal(0.0, 1.0), &device);
        let other = Tensor::cat(
            vec![x.clone().narrow(0, 0, 1), x.clone().narrow(0, 1, 3) * 2.0],
            0,
        );
        let first_change = |norm: Norm| {
            let net = ConvNet::new(1, 0.25, norm, &device);
            let f = |t: Tensor<4>| {
                crate::device::host_values(net.forward_stages(t).pop().unwrap().narrow(0, 0, 1))
            };
            f(x.clone())
                .iter()
                .zip(f(other.clone()))
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max)
        };
        assert!(first_change(Norm::Layer) < 1e-5);
        assert!(first_change(Norm::Batch) > 1e-3);
    }
}
