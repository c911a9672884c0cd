//! Times the ConvNet's forward and backward with burn's conv2d against selfsup's GEMM
//! convolution (`selfsup::nn::conv`), and compares their gradients:
//! `cargo run --release --features dev-tools --example conv_timing -- [BATCH] [resnet18]`.
use burn::prelude::*;
use selfsup::nn::{Backbone, BackboneConfig, BackboneKind, global_avg_pool};
use std::time::Instant;

fn main() {
    let dev = Device::flex().autodiff();
    dev.seed(0);
    let args: Vec<String> = std::env::args().collect();
    let b: usize = args.get(1).map(|s| s.parse().unwrap()).unwrap_or(256);
    let resnet = args.get(2).is_some_and(|s| s == "resnet18");
    let cfg = BackboneConfig {
        kind: if resnet {
            BackboneKind::ResNet18
        } else {
            BackboneKind::ConvNet
        },
        ..Default::default()
    };
    let (ch, side) = if resnet { (3, 32) } else { (1, 28) };
    let backbone = Backbone::new(&cfg, ch, &dev);
    let x = Tensor::<4>::random(
        [b, ch, side, side],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &dev,
    );
    for it in 0..4 {
        let mut report = String::new();
        let mut first_grads = Vec::new();
        for gemm in [false, true] {
            if !gemm && std::env::var("ONLY_GEMM").is_ok() {
                continue;
            }
            selfsup::nn::set_own_cpu_kernels(gemm);
            let t0 = Instant::now();
            let y = global_avg_pool(backbone.forward_stages(x.clone()).pop().unwrap());
            let l = y.powi_scalar(2).sum();
            let _v: f32 = l.clone().into_scalar();
            let t1 = Instant::now();
            let g = l.backward();
            let grads: Vec<Tensor<4>> = match &backbone {
                Backbone::ConvNet(n) => n
                    .blocks
                    .iter()
                    .map(|b| b.conv.weight.grad(&g).unwrap())
                    .collect(),
                Backbone::ResNet(n) => vec![n.conv1.weight.grad(&g).unwrap()],
            };
            let t2 = Instant::now();
            report += &format!(
                "{}: fwd {:.0} bwd {:.0} ms ({:.0} img/s)  ",
                if gemm { "gemm" } else { "burn" },
                (t1 - t0).as_secs_f64() * 1e3,
                (t2 - t1).as_secs_f64() * 1e3,
                b as f64 / (t2 - t0).as_secs_f64()
            );
            if gemm && !first_grads.is_empty() {
                let d: Vec<String> = grads
                    .iter()
                    .zip(&first_grads)
                    .map(|(a, r): (&Tensor<4>, &Tensor<4>)| {
                        let rel = (a.clone() - r.clone()).abs().max().into_scalar::<f32>()
                            / r.clone().abs().max().into_scalar::<f32>();
                        format!("{rel:.1e}")
                    })
                    .collect();
                report += &format!("rel dW diff {}", d.join(" "));
            } else {
                first_grads = grads;
            }
        }
        println!("it {it}: {report}");
    }
}
