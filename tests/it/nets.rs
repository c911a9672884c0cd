//! Backbones: output shapes, parameter counts against torchvision's published numbers, and
//! checkpoint tensor names against torchvision's state-dict keys.

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
            ..Default::default()
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
            ..Default::default()
        },
        3,
        &device,
    );
    assert_eq!(trainable_params(&r50), 25_557_032 - 2_049_000);
    let names = checkpoint::collect(&r50);
    assert!(
        names.contains_key("layer3.5.conv3.weight")
            && names.contains_key("layer1.0.downsample.0.weight")
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
            ..Default::default()
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
            ..Default::default()
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

/// Turns selfsup's own CPU kernels back on when dropped (also when a test fails).
struct KernelsOn;

impl Drop for KernelsOn {
    fn drop(&mut self) {
        selfsup::nn::set_own_cpu_kernels(true);
    }
}

/// Outputs, input gradient and every weight's gradient of `loss = Σ r * forward(x)`, with
/// selfsup's kernels on or off.
fn outputs_and_grads(
    b: &Backbone,
    x: &Tensor<4>,
    r: &Tensor<2>,
    kernels: bool,
) -> (Vec<f32>, Vec<f32>, Vec<Vec<f32>>) {
    selfsup::nn::set_own_cpu_kernels(kernels);
    let x = x.clone().require_grad();
    let y = b.forward(x.clone());
    let grads = (y.clone() * r.clone()).sum().backward();
    let mut weights = Vec::new();
    let mut collect = |w: Option<Tensor<4>>| weights.push(selfsup::device::host_values(w.unwrap()));
    match b {
        Backbone::ConvNet(n) => n
            .blocks
            .iter()
            .for_each(|blk| collect(blk.conv.weight.grad(&grads))),
        Backbone::ResNet(n) => {
            collect(n.conv1.weight.grad(&grads));
            for blk in n.layer2.iter() {
                collect(blk.conv1.weight.grad(&grads));
                collect(blk.conv2.weight.grad(&grads));
                if let Some(d) = &blk.downsample {
                    collect(d.conv.weight.grad(&grads));
                }
            }
        }
        Backbone::Vit(n) => collect(n.patch_embed.weight.grad(&grads)),
    }
    (
        selfsup::device::host_values(y),
        selfsup::device::host_values(x.grad(&grads).unwrap()),
        weights,
    )
}

fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    let scale = b.iter().fold(1e-12f32, |m, v| m.max(v.abs()));
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= tol * scale,
        "{what}: max difference {worst} against scale {scale}"
    );
}

/// The GEMM convolution, fused BatchNorm(+ReLU) and 2x2 max pooling of
/// `selfsup::nn::{conv, batch_norm, max_pool}` give burn's outputs and gradients (training
/// mode: batch statistics) for the ConvNet (3x3 stride 1 and 2, pooling of 14 and 7 px maps,
/// the odd one dropping a row and column) and a CIFAR ResNet-18 (1x1 stride-2 shortcuts, residual BN without ReLU), within
/// f32 summation-order differences, relative to the largest value: outputs 1e-4; gradients 1e-4
/// for the ConvNet (measured: 1e-6) and 5e-2 for the ResNet, whose 20 BatchNorms over small
/// maps amplify the rounding on the way down (measured at 16 px, batch 6: 3e-6 in layer2,
/// 2.6e-3 at the stem, 1.3e-2 for the input). A wrong stride, padding, ReLU gate or statistic
/// gives differences of order 1.
#[test]
fn own_cpu_kernels_match_burns_convolution_and_batch_norm() {
    let _on = KernelsOn;
    let dev = Device::flex().autodiff();
    for (kind, ch, side, tol) in [
        (BackboneKind::ConvNet, 1, 28, 1e-4),
        (BackboneKind::ResNet18, 3, 16, 5e-2),
    ] {
        dev.seed(3);
        let cfg = BackboneConfig {
            kind,
            ..Default::default()
        };
        let b = Backbone::new(&cfg, ch, &dev);
        let x = Tensor::<4>::random(
            [6, ch, side, side],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &dev,
        );
        let r = Tensor::<2>::random(
            [6, b.feature_dim()],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &dev,
        );
        let (y0, dx0, w0) = outputs_and_grads(&b, &x, &r, false);
        let (y1, dx1, w1) = outputs_and_grads(&b, &x, &r, true);
        assert_close(&y1, &y0, 1e-4, &format!("{kind:?} output"));
        assert_close(&dx1, &dx0, tol, &format!("{kind:?} input gradient"));
        for (i, (a, r)) in w1.iter().zip(&w0).enumerate() {
            assert_close(a, r, tol, &format!("{kind:?} weight gradient {i}"));
        }
    }
}

/// One convolution's input and weight gradients, by burn and through selfsup's extension,
/// against `conv::kernels::backward` on the host values (itself checked against an f64
/// adjoint in its unit tests).
#[test]
fn gemm_convolution_gradients_through_autodiff_match_the_kernel() {
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use selfsup::nn::conv::kernels;
    let _on = KernelsOn;
    let dev = Device::flex().autodiff();
    dev.seed(5);
    for (side, stride) in [(10, 2), (9, 1), (28, 2)] {
        let conv = Conv2dConfig::new([2, 3], [3, 3])
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .with_bias(false)
            .init(&dev);
        let x = Tensor::<4>::random(
            [2, 2, side, side],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &dev,
        );
        let g = kernels::Geometry::new(
            [2, 2, side, side],
            [3, 3, 3],
            [stride, stride],
            [(1, 1), (1, 1)],
        )
        .unwrap();
        let r = Tensor::<4>::random(
            [2, 3, g.ho, g.wo],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &dev,
        );
        let (want_dx, want_dw) = kernels::backward(
            &g,
            &selfsup::device::host_values(x.clone()),
            &selfsup::device::host_values(conv.weight.val()),
            &selfsup::device::host_values(r.clone()),
            true,
        );
        for on in [false, true] {
            selfsup::nn::set_own_cpu_kernels(on);
            let xg = x.clone().detach().require_grad();
            let y = selfsup::nn::conv::conv2d(&conv, xg.clone());
            let grads = (y * r.clone()).sum().backward();
            let dx = selfsup::device::host_values(xg.grad(&grads).unwrap());
            let dw = selfsup::device::host_values(conv.weight.grad(&grads).unwrap());
            assert_close(
                &dx,
                want_dx.as_ref().unwrap(),
                1e-5,
                &format!("kernels {on}, {side} px stride {stride}: dX"),
            );
            assert_close(
                &dw,
                &want_dw,
                1e-5,
                &format!("kernels {on}, {side} px stride {stride}: dW"),
            );
        }
    }
}

fn resnet(kind: BackboneKind, cifar_stem: bool) -> Backbone {
    let cfg = BackboneConfig {
        kind,
        cifar_stem,
        width: 1.0,
        norm: selfsup::nn::Norm::Batch,
        ..Default::default()
    };
    Backbone::new(&cfg, 3, &Device::flex())
}

/// `name dtype [shape]` lines of a safetensors file, sorted.
fn safetensors_keys(bytes: &[u8]) -> Vec<String> {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let mut keys: Vec<String> = st
        .tensors()
        .into_iter()
        .map(|(name, v)| {
            let dtype = match v.dtype() {
                safetensors::Dtype::F32 => "float32",
                safetensors::Dtype::I64 => "int64",
                d => panic!("{name}: unexpected dtype {d:?}"),
            };
            format!("{name} {dtype} {:?}", v.shape())
        })
        .collect();
    keys.sort();
    keys
}

/// A selfsup ResNet checkpoint (ImageNet stem) holds exactly torchvision's state-dict keys,
/// dtypes and shapes but the classifier's (`fc.weight`, `fc.bias`): what
/// `torchvision.models.resnet18().load_state_dict(backbone, strict=False)` needs to report no
/// unexpected and no missing keys but `fc.*`. The key lists are torchvision's own, written by
/// `bench/torchvision_keys.py`.
#[test]
fn resnet_checkpoints_carry_torchvision_state_dict_keys() {
    for (kind, file) in [
        (BackboneKind::ResNet18, "resnet18.txt"),
        (BackboneKind::ResNet50, "resnet50.txt"),
    ] {
        let listed = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/torchvision")
                .join(file),
        )
        .unwrap();
        let mut want: Vec<String> = listed
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("fc."))
            .map(str::to_string)
            .collect();
        want.sort();
        assert!(want.len() > 100, "{file}");
        let tensors = checkpoint::collect(&resnet(kind, false));
        let meta = [("step".to_string(), "7".to_string())].into();
        let bytes = checkpoint::to_safetensors(&tensors, meta).unwrap();
        assert_eq!(safetensors_keys(&bytes), want, "{file}");
        // The counter holds the step.
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(
            st.tensor("layer4.1.bn2.num_batches_tracked")
                .unwrap()
                .data(),
            7i64.to_le_bytes()
        );
    }
    // The CIFAR stem differs in conv1's shape only.
    let cifar = checkpoint::collect(&resnet(BackboneKind::ResNet18, true));
    let imagenet = checkpoint::collect(&resnet(BackboneKind::ResNet18, false));
    assert!(cifar.keys().eq(imagenet.keys()));
    let differ: Vec<&String> = cifar
        .iter()
        .filter(|(k, v)| v.shape != imagenet[*k].shape)
        .map(|(k, _)| k)
        .collect();
    assert_eq!(differ, ["conv1.weight"]);
}

/// A checkpoint written with burn's names (before the PyTorch names: `bn1.gamma`,
/// `downsample.conv.weight`, no `tensor_names` metadata) still loads, to the same tensors.
#[test]
fn checkpoints_with_burn_names_still_load() {
    let model = resnet(BackboneKind::ResNet18, true);
    let tensors = checkpoint::collect(&model);
    let old_name = |k: &str| {
        k.replace(".downsample.0.", ".downsample.conv.")
            .replace(".downsample.1.", ".downsample.bn.")
    };
    let bn: Vec<String> = tensors
        .keys()
        .filter_map(|k| k.strip_suffix(".running_var").map(str::to_string))
        .collect();
    let mut old = Vec::new();
    for (k, v) in &tensors {
        let mut name = old_name(k);
        for p in &bn {
            if *k == format!("{p}.weight") {
                name = old_name(&format!("{p}.gamma"));
            } else if *k == format!("{p}.bias") {
                name = old_name(&format!("{p}.beta"));
            }
        }
        old.push((name, v));
    }
    assert!(old.iter().any(|(k, _)| k == "layer2.0.downsample.bn.gamma"));
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = old
        .iter()
        .map(|(k, v)| {
            let b = v.data.iter().flat_map(|x| x.to_le_bytes()).collect();
            (k.clone(), b, v.shape.clone())
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(k, b, s)| {
            let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b);
            (k.clone(), v.unwrap())
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.safetensors");
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    let (back, _) = checkpoint::load(&path).unwrap();
    let fresh = resnet(BackboneKind::ResNet18, true);
    let loaded = checkpoint::apply(fresh, &back, &path).unwrap();
    assert_eq!(checkpoint::collect(&loaded), tensors);
}

/// ViT-Tiny: its transformer blocks have exactly timm's parameter count (`vit_tiny_patch16_224`,
/// 5,717,416, minus its 1000-way head, patch embedding, position embedding, class token and
/// final norm: 5,338,368), its features are 192-d at any size (the position embedding is
/// interpolated), and it has one stage per block after the patch embedding.
#[test]
fn vit_tiny_matches_timm_and_takes_any_size() {
    let device = Device::flex();
    let cfg = BackboneConfig {
        kind: BackboneKind::VitTiny,
        ..Default::default()
    };
    let vit = Backbone::new(&cfg, 3, &device);
    let blocks: usize = checkpoint::collect(&vit)
        .iter()
        .filter(|(k, _)| k.starts_with("blocks."))
        .map(|(_, p)| p.data.len())
        .sum();
    assert_eq!(blocks, 5_717_416 - 193_000 - 147_648 - 37_824 - 192 - 384);
    assert_eq!(vit.feature_dim(), 192);
    for side in [32, 28, 12] {
        let y = vit.forward(Tensor::<4>::zeros([2, 3, side, side], &device));
        assert_eq!(y.dims(), [2, 192], "{side} px");
    }
    let stages = vit.forward_stages(Tensor::<4>::zeros([1, 3, 32, 32], &device));
    assert_eq!(stages.len(), 13);
    assert_eq!(stages[12].dims(), [1, 192, 8, 8]);
    assert_eq!(vit.stage_names().len(), 13);
    // Evaluation's default readout: the last three blocks, each pooled to 3x3 (3 x 192 x 9
    // values), the first 1,728 of them block 10's tokens averaged over the 3x3 cells of the
    // 8x8 grid (adaptive pooling: rows 0-2, 2-5 and 5-7), checked by hand on the top-left
    // cell.
    let x = Tensor::<4>::random(
        [1, 3, 32, 32],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let f = vit.features(x.clone(), &Default::default());
    assert_eq!(f.dims(), [1, 3 * 192 * 9]);
    let block10 = selfsup::device::host_values(vit.forward_stages(x)[10].clone());
    let read = selfsup::device::host_values(f);
    for c in [0, 77, 191] {
        let cell: f32 = (0..3)
            .flat_map(|i| (0..3).map(move |j| (i, j)))
            .map(|(i, j)| block10[c * 64 + i * 8 + j])
            .sum::<f32>()
            / 9.0;
        let got = read[c * 9];
        assert!(
            (got - cell).abs() < 1e-4 * (1.0 + cell.abs()),
            "channel {c}: {got} vs {cell}"
        );
    }
}

/// selfsup's transformer block (`nn::transformer::Block`: 2-D linear layers, one fused QKV
/// GEMM, its own GELU kernel) computes what burn's pre-norm `TransformerEncoderLayer` with the
/// same weights computes: outputs, input gradient and the weight gradients of the attention's
/// query and the MLP's first layer, relative to the largest value, within 1e-4 (f32 summation
/// order; measured 1e-6). It carries burn's parameter names, so checkpoints of either load into
/// the other. Also checked with the own kernels off (burn's GELU inside the same block).
#[test]
fn transformer_block_matches_burns_encoder_layer() {
    let _restore = KernelsOn;
    let device = Device::flex().autodiff();
    device.seed(3);
    let config = burn::nn::transformer::TransformerEncoderConfig::new(24, 96, 3, 1)
        .with_norm_first(true)
        .with_dropout(0.0);
    let burns = burn::nn::transformer::TransformerEncoderLayer::new(&config, &device);
    let ours = selfsup::nn::transformer::Block::from_burn(burns.clone());
    let names = |t: std::collections::BTreeMap<String, checkpoint::HostParam>| {
        t.into_keys().collect::<Vec<_>>()
    };
    assert_eq!(
        names(checkpoint::collect(&burns)),
        names(checkpoint::collect(&ours))
    );
    let normal = burn::tensor::Distribution::Normal(0.0, 1.0);
    let x = Tensor::<3>::random([5, 7, 24], normal, &device);
    let r = Tensor::<3>::random([5, 7, 24], normal, &device);
    let run = |ours_block: bool| {
        let x = x.clone().require_grad();
        let y = if ours_block {
            ours.forward(x.clone())
        } else {
            burns.forward(x.clone(), None, None)
        };
        let g = (y.clone() * r.clone()).sum().backward();
        let (q, inner) = if ours_block {
            (
                ours.mha.query.weight.grad(&g),
                ours.pwff.linear_inner.weight.grad(&g),
            )
        } else {
            (
                burns.mha.query.weight.grad(&g),
                burns.pwff.linear_inner.weight.grad(&g),
            )
        };
        [
            selfsup::device::host_values(y),
            selfsup::device::host_values(x.grad(&g).unwrap()),
            selfsup::device::host_values(q.unwrap()),
            selfsup::device::host_values(inner.unwrap()),
        ]
    };
    let reference = run(false);
    for kernels in [true, false] {
        selfsup::nn::set_own_cpu_kernels(kernels);
        let got = run(true);
        for (what, (a, b)) in ["output", "dx", "d query", "d linear_inner"]
            .iter()
            .zip(got.iter().zip(&reference))
        {
            assert_close(a, b, 1e-4, &format!("{what} (own kernels {kernels})"));
        }
    }
}

/// The fused attention kernel (`nn::attention`, on the CPU) gives burn's attention on the same
/// fused projection: context and gradient, relative to the largest value within 1e-4 (f32
/// summation order; measured 1e-6), for one token, head widths that are and are not a
/// multiple of the 8 lanes, and MAE's decoder shape. A wrong scale, softmax axis or head
/// offset gives differences of order 1.
#[test]
fn fused_attention_matches_burns_attention() {
    let _restore = KernelsOn;
    let device = Device::flex().autodiff();
    device.seed(5);
    for (b, l, d, h) in [(3, 1, 16, 2), (4, 7, 24, 3), (2, 5, 20, 4), (2, 49, 128, 4)] {
        let normal = burn::tensor::Distribution::Normal(0.0, 1.0);
        let qkv = Tensor::<2>::random([b * l, 3 * d], normal, &device);
        let r = Tensor::<2>::random([b * l, d], normal, &device);
        let run = |fused: bool| {
            selfsup::nn::set_own_cpu_kernels(fused);
            let x = qkv.clone().require_grad();
            let y = selfsup::nn::attention::attention(x.clone(), (b, l, h));
            let g = (y.clone() * r.clone()).sum().backward();
            [
                selfsup::device::host_values(y),
                selfsup::device::host_values(x.grad(&g).unwrap()),
            ]
        };
        let (ours, burns) = (run(true), run(false));
        assert_close(
            &ours[0],
            &burns[0],
            1e-4,
            &format!("context {b}x{l}x{d}/{h}"),
        );
        assert_close(
            &ours[1],
            &burns[1],
            1e-4,
            &format!("gradient {b}x{l}x{d}/{h}"),
        );
    }
}
