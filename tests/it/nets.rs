//! Backbones: output shapes and parameter counts against torchvision's published numbers.

use burn::prelude::*;
use selfsup::nn::{Backbone, BackboneConfig, BackboneKind};
use selfsup::train::checkpoint;

fn trainable_params(b: &Backbone) -> usize {
    checkpoint::collect(b)
        .iter()
        .filter(|(k, _)| !k.ends_with("running_mean") && !k.ends_with("running_var"))
        .map(|(_, p)| p.data.len())
        .sum()
}

#[test]
fn resnets_match_torchvision_parameter_counts() {
    let device = Device::flex();
    // torchvision: resnet18 11,689,512 and resnet50 25,557,032 parameters, minus the
    // 1000-way fc layer (513,000 and 2,049,000).
    let r18 = Backbone::new(
        &BackboneConfig {
            kind: BackboneKind::ResNet18,
            cifar_stem: false,
            width: 1.0,
            norm: selfsup::nn::Norm::Batch,
        },
        3,
        &device,
    );
    assert_eq!(trainable_params(&r18), 11_689_512 - 513_000);
    let r50 = Backbone::new(
        &BackboneConfig {
            kind: BackboneKind::ResNet50,
            cifar_stem: false,
            width: 1.0,
            norm: selfsup::nn::Norm::Batch,
        },
        3,
        &device,
    );
    assert_eq!(trainable_params(&r50), 25_557_032 - 2_049_000);
    let names = checkpoint::collect(&r50);
    assert!(
        names.contains_key("layer3.5.conv3.weight")
            && names.contains_key("layer1.0.downsample.conv.weight")
    );
}

#[test]
fn backbone_output_shapes() {
    let device = Device::flex();
    let x = Tensor::<4>::zeros([2, 3, 32, 32], &device);
    let r18 = Backbone::new(
        &BackboneConfig {
            kind: BackboneKind::ResNet18,
            cifar_stem: true,
            width: 1.0,
            norm: selfsup::nn::Norm::Batch,
        },
        3,
        &device,
    );
    assert_eq!(r18.forward(x.clone()).dims(), [2, 512]);
    let stages = r18.forward_stages(x.clone());
    assert_eq!(stages.len(), 5);
    assert_eq!(stages[4].dims(), [2, 512, 4, 4]);
    let r18i = Backbone::new(
        &BackboneConfig {
            kind: BackboneKind::ResNet18,
            cifar_stem: false,
            width: 1.0,
            norm: selfsup::nn::Norm::Batch,
        },
        3,
        &device,
    );
    assert_eq!(r18i.forward_stages(x.clone())[4].dims(), [2, 512, 1, 1]);
    let c = Backbone::new(&BackboneConfig::default(), 1, &device);
    let s = c.forward_stages(Tensor::<4>::zeros([2, 1, 28, 28], &device));
    assert_eq!(
        s.iter().map(|t| t.dims()).collect::<Vec<_>>(),
        vec![
            [2, 32, 14, 14],
            [2, 64, 7, 7],
            [2, 128, 3, 3],
            [2, 256, 3, 3]
        ]
    );
    assert_eq!(c.feature_dim(), 256);
}
