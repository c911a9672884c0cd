//! ResNet-18 and ResNet-50 (He et al. 2016, "Deep Residual Learning for Image Recognition"),
//! with torchvision's parameter names and an optional CIFAR stem (3x3 stride-1 conv, no
//! max-pool), as used by SimCLR and solo-learn for 32 px images.

use super::batch_norm::{batch_norm, batch_norm_relu};
use super::conv::conv2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d, Relu};
use burn::prelude::*;

fn conv(cin: usize, cout: usize, k: usize, stride: usize, device: &Device) -> Conv2d {
    let p = k / 2;
    Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_bias(false)
        .init(device)
}

/// The 1x1 projection shortcut used when a block changes shape.
#[derive(Module, Debug)]
pub struct Downsample {
    /// 1x1 strided convolution.
    pub conv: Conv2d,
    /// Batch normalization.
    pub bn: BatchNorm,
}

/// A residual block: basic (two 3x3 convs) or bottleneck (1x1, 3x3, 1x1 with `conv3`).
#[derive(Module, Debug)]
pub struct Block {
    /// First convolution (3x3 basic, 1x1 bottleneck).
    pub conv1: Conv2d,
    /// BN after `conv1`.
    pub bn1: BatchNorm,
    /// Second convolution (3x3, carries the stride).
    pub conv2: Conv2d,
    /// BN after `conv2`.
    pub bn2: BatchNorm,
    /// Bottleneck expansion 1x1 convolution.
    pub conv3: Option<Conv2d>,
    /// BN after `conv3`.
    pub bn3: Option<BatchNorm>,
    /// Shortcut projection when the shape changes.
    pub downsample: Option<Downsample>,
    act: Relu,
}

impl Block {
    fn basic(cin: usize, cout: usize, stride: usize, device: &Device) -> Self {
        let downsample = (stride != 1 || cin != cout).then(|| Downsample {
            conv: conv(cin, cout, 1, stride, device),
            bn: BatchNormConfig::new(cout).init(device),
        });
        Block {
            conv1: conv(cin, cout, 3, stride, device),
            bn1: BatchNormConfig::new(cout).init(device),
            conv2: conv(cout, cout, 3, 1, device),
            bn2: BatchNormConfig::new(cout).init(device),
            conv3: None,
            bn3: None,
            downsample,
            act: Relu::new(),
        }
    }

    fn bottleneck(cin: usize, planes: usize, stride: usize, device: &Device) -> Self {
        let cout = planes * 4;
        let downsample = (stride != 1 || cin != cout).then(|| Downsample {
            conv: conv(cin, cout, 1, stride, device),
            bn: BatchNormConfig::new(cout).init(device),
        });
        Block {
            conv1: conv(cin, planes, 1, 1, device),
            bn1: BatchNormConfig::new(planes).init(device),
            conv2: conv(planes, planes, 3, stride, device),
            bn2: BatchNormConfig::new(planes).init(device),
            conv3: Some(conv(planes, cout, 1, 1, device)),
            bn3: Some(BatchNormConfig::new(cout).init(device)),
            downsample,
            act: Relu::new(),
        }
    }

    /// Applies the block.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.downsample {
            Some(d) => batch_norm(&d.bn, conv2d(&d.conv, x.clone())),
            None => x.clone(),
        };
        let mut y = batch_norm_relu(&self.bn1, conv2d(&self.conv1, x));
        y = batch_norm(&self.bn2, conv2d(&self.conv2, y));
        if let (Some(c3), Some(b3)) = (&self.conv3, &self.bn3) {
            y = batch_norm(b3, conv2d(c3, self.act.forward(y)));
        }
        self.act.forward(y + identity)
    }
}

/// A ResNet: stem, four stages of blocks, global average pooling.
#[derive(Module, Debug)]
pub struct ResNet {
    /// Stem convolution (7x7 stride 2, or 3x3 stride 1 with the CIFAR stem).
    pub conv1: Conv2d,
    /// Stem BN.
    pub bn1: BatchNorm,
    /// Stage 1 (64 planes).
    pub layer1: Vec<Block>,
    /// Stage 2 (128 planes, stride 2).
    pub layer2: Vec<Block>,
    /// Stage 3 (256 planes, stride 2).
    pub layer3: Vec<Block>,
    /// Stage 4 (512 planes, stride 2).
    pub layer4: Vec<Block>,
    maxpool: Option<MaxPool2d>,
    act: Relu,
    out_dim: usize,
}

impl ResNet {
    fn build(
        in_channels: usize,
        cifar_stem: bool,
        depths: [usize; 4],
        bottleneck: bool,
        device: &Device,
    ) -> Self {
        let (conv1, maxpool) = if cifar_stem {
            (conv(in_channels, 64, 3, 1, device), None)
        } else {
            let pool = MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init();
            (conv(in_channels, 64, 7, 2, device), Some(pool))
        };
        let expansion = if bottleneck { 4 } else { 1 };
        let mut cin = 64;
        let mut stages = Vec::new();
        for (i, &d) in depths.iter().enumerate() {
            let planes = 64 << i;
            let mut blocks = Vec::new();
            for j in 0..d {
                let stride = if i > 0 && j == 0 { 2 } else { 1 };
                blocks.push(if bottleneck {
                    Block::bottleneck(cin, planes, stride, device)
                } else {
                    Block::basic(cin, planes, stride, device)
                });
                cin = planes * expansion;
            }
            stages.push(blocks);
        }
        let layer4 = stages.pop().unwrap();
        let layer3 = stages.pop().unwrap();
        let layer2 = stages.pop().unwrap();
        let layer1 = stages.pop().unwrap();
        ResNet {
            conv1,
            bn1: BatchNormConfig::new(64).init(device),
            layer1,
            layer2,
            layer3,
            layer4,
            maxpool,
            act: Relu::new(),
            out_dim: cin,
        }
    }

    /// ResNet-18.
    pub fn resnet18(in_channels: usize, cifar_stem: bool, device: &Device) -> Self {
        Self::build(in_channels, cifar_stem, [2, 2, 2, 2], false, device)
    }

    /// ResNet-50.
    pub fn resnet50(in_channels: usize, cifar_stem: bool, device: &Device) -> Self {
        Self::build(in_channels, cifar_stem, [3, 4, 6, 3], true, device)
    }

    /// Channels of the last stage.
    pub fn feature_dim(&self) -> usize {
        self.out_dim
    }

    /// Stem output, then each stage's output.
    pub fn forward_stages(&self, x: Tensor<4>) -> Vec<Tensor<4>> {
        let mut x = batch_norm_relu(&self.bn1, conv2d(&self.conv1, x));
        if let Some(p) = &self.maxpool {
            x = p.forward(x);
        }
        let mut out = vec![x.clone()];
        for stage in [&self.layer1, &self.layer2, &self.layer3, &self.layer4] {
            for b in stage {
                x = b.forward(x);
            }
            out.push(x.clone());
        }
        out
    }
}
