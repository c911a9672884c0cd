//! A convolutional decoder: from a backbone's last feature map back to an image-sized map, by
//! upsampling (bilinear) and 3x3 conv-BN-ReLU blocks, then a 1x1 convolution to the output
//! channels. Inpainting reconstructs pixels with it, colorization predicts ab-bin scores.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::prelude::*;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

/// One upsampling block: resize, then conv-BN-ReLU.
#[derive(Module, Debug)]
pub struct UpBlock {
    /// 3x3 convolution.
    pub conv: Conv2d,
    /// Batch normalization.
    pub bn: BatchNorm,
    act: Relu,
}

/// The decoder: an optional fully connected stem (decoding from a feature vector),
/// `blocks.len()` upsampling blocks and the output projection.
#[derive(Module, Debug)]
pub struct Decoder {
    /// Vector decoders: features to a `stem_width x stem_side x stem_side` map.
    pub stem: Option<Linear>,
    /// Side of the stem's map.
    pub stem_side: usize,
    /// Channels of the stem's map.
    pub stem_width: usize,
    /// Upsampling blocks, coarse to fine.
    pub blocks: Vec<UpBlock>,
    /// 1x1 convolution to the output channels.
    pub out: Conv2d,
}

impl Decoder {
    /// A decoder from `cin` channels through `widths` (one block each) to `cout` channels.
    pub fn new(cin: usize, widths: &[usize], cout: usize, device: &Device) -> Decoder {
        let mut blocks = Vec::new();
        let mut c = cin;
        for &w in widths {
            blocks.push(UpBlock {
                conv: Conv2dConfig::new([c, w], [3, 3])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .with_bias(false)
                    .init(device),
                bn: BatchNormConfig::new(w).init(device),
                act: Relu::new(),
            });
            c = w;
        }
        Decoder {
            stem: None,
            stem_side: 0,
            stem_width: 0,
            blocks,
            out: Conv2dConfig::new([c, cout], [1, 1]).init(device),
        }
    }

    /// A decoder from feature vectors of `features` dimensions: a fully connected layer to a
    /// `widths[0] x side x side` map, then as [`Decoder::new`]. Everything it paints must
    /// pass through the vector (the context encoder's fully connected bottleneck).
    pub fn from_vector(
        features: usize,
        side: usize,
        widths: &[usize],
        cout: usize,
        device: &Device,
    ) -> Decoder {
        let c0 = widths.first().copied().unwrap_or(cout);
        Decoder {
            stem: Some(LinearConfig::new(features, c0 * side * side).init(device)),
            stem_side: side,
            stem_width: c0,
            ..Decoder::new(c0, widths, cout, device)
        }
    }

    /// Decodes feature vectors `[B, features]` (a [`Decoder::from_vector`] decoder) to
    /// `[B, cout, out, out]`.
    pub fn forward_vector(&self, x: Tensor<2>, out: usize) -> Tensor<4> {
        let stem = self
            .stem
            .as_ref()
            .expect("a decoder built with from_vector");
        let b = x.dims()[0];
        let map = burn::tensor::activation::relu(stem.forward(x)).reshape([
            b,
            self.stem_width,
            self.stem_side,
            self.stem_side,
        ]);
        self.forward(map, out)
    }

    /// Decodes `x` (`[B, C, h, w]`) to `[B, cout, out, out]`: block `i` of `n` works at side
    /// `ceil(out / 2^(n-1-i))`, so the last one works at the output size.
    pub fn forward(&self, mut x: Tensor<4>, out: usize) -> Tensor<4> {
        let n = self.blocks.len();
        for (i, b) in self.blocks.iter().enumerate() {
            let side = out.div_ceil(1 << (n - 1 - i));
            x = resize(x, side);
            x = super::batch_norm::batch_norm_relu(&b.bn, super::conv::conv2d(&b.conv, x));
        }
        self.out.forward(resize(x, out))
    }
}

/// Bilinear resize of a feature map to `side x side` (a no-op when it is that size).
pub fn resize(x: Tensor<4>, side: usize) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    if h == side && w == side {
        return x;
    }
    interpolate(
        x,
        InterpolateOptions::new(InterpolateMode::Bilinear).with_output_size([side, side]),
    )
}
