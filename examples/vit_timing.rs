//! Times the pieces of a ViT-Tiny block (forward and backward, on the autodiff CPU backend) at
//! the shape of an MAE step's encoder (256 images x 12 visible tokens x 192), burn's
//! `TransformerEncoderLayer` against selfsup's `transformer::Block` with the same weights:
//! `cargo run --release --features dev-tools --example vit_timing -- [BATCH] [TOKENS] [DIM] [HEADS]`.
use burn::nn::transformer::TransformerEncoderConfig;
use burn::nn::{LayerNormConfig, LinearConfig};
use burn::prelude::*;
use std::time::Instant;

fn time<F: FnMut() -> Tensor<1>>(name: &str, mut f: F) {
    let mut best = f64::MAX;
    let mut fwd_best = f64::MAX;
    for _ in 0..5 {
        let t0 = Instant::now();
        let l = f();
        let _v: f32 = l.clone().into_scalar();
        let t1 = Instant::now();
        let _g = l.backward();
        let t2 = Instant::now();
        best = best.min((t2 - t0).as_secs_f64());
        fwd_best = fwd_best.min((t1 - t0).as_secs_f64());
    }
    println!(
        "{name:>28}: fwd {:7.1} ms, fwd + bwd {:7.1} ms",
        fwd_best * 1e3,
        best * 1e3
    );
}

fn main() {
    let dev = Device::flex().autodiff();
    dev.seed(0);
    let args: Vec<String> = std::env::args().collect();
    let b: usize = args.get(1).map(|s| s.parse().unwrap()).unwrap_or(256);
    let l: usize = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(12);
    let d: usize = args.get(3).map(|s| s.parse().unwrap()).unwrap_or(192);
    let heads: usize = args.get(4).map(|s| s.parse().unwrap()).unwrap_or(3);
    let x = Tensor::<3>::random(
        [b, l, d],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &dev,
    )
    .require_grad();
    let h = Tensor::<3>::random(
        [b, l, 4 * d],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &dev,
    )
    .require_grad();
    let layer = TransformerEncoderConfig::new(d, 4 * d, heads, 1)
        .with_norm_first(true)
        .with_dropout(0.0);
    let block = burn::nn::transformer::TransformerEncoderLayer::new(&layer, &dev);
    let ours = selfsup::nn::transformer::Block::from_burn(block.clone());
    let norm = LayerNormConfig::new(d).init(&dev);
    let lin = LinearConfig::new(d, 4 * d).init(&dev);
    let gelu = burn::nn::Gelu::new();
    let mha = burn::nn::attention::MultiHeadAttentionConfig::new(d, heads)
        .with_dropout(0.0)
        .init(&dev);
    println!("shape [{b}, {l}, {d}]");
    time("burn block", || block.forward(x.clone(), None, None).sum());
    time("selfsup block", || ours.forward(x.clone()).sum());
    let w = Tensor::<3>::random(
        [b, l, d],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &dev,
    );
    let ya = block.forward(x.clone(), None, None);
    let yb = ours.forward(x.clone());
    let dy = (ya.clone() - yb.clone()).abs().max().into_scalar::<f32>();
    let ga = (ya * w.clone()).sum().backward();
    let gb = (yb * w).sum().backward();
    let dgx = (x.grad(&ga).unwrap() - x.grad(&gb).unwrap())
        .abs()
        .max()
        .into_scalar::<f32>();
    let dgw = (block.pwff.linear_inner.weight.grad(&ga).unwrap()
        - ours.pwff.linear_inner.weight.grad(&gb).unwrap())
    .abs()
    .max()
    .into_scalar::<f32>();
    let dgq = (block.mha.query.weight.grad(&ga).unwrap()
        - ours.mha.query.weight.grad(&gb).unwrap())
    .abs()
    .max()
    .into_scalar::<f32>();
    println!(
        "max |difference|: output {dy:.2e}, dx {dgx:.2e}, d linear_inner {dgw:.2e}, d query {dgq:.2e}"
    );
    let x2 = Tensor::<2>::random(
        [b * l, d],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &dev,
    )
    .require_grad();
    time("selfsup attention", || {
        ours.mha.forward(x2.clone(), (b, l)).sum()
    });
    time("selfsup mlp", || ours.pwff.forward(x2.clone()).sum());
    time("layer norm 2-d", || ours.norm_1.forward(x2.clone()).sum());
    time("selfsup gelu", || selfsup::nn::gelu::gelu(h.clone()).sum());
    time("layer norm", || norm.forward(x.clone()).sum());
    time("linear 192 -> 768", || lin.forward(x.clone()).sum());
    time("gelu [.., 768]", || gelu.forward(h.clone()).sum());
    time("multi-head attention", || {
        mha.forward(burn::nn::attention::MhaInput::self_attn(x.clone()))
            .context
            .sum()
    });
    time("sum only", || x.clone().sum());
}
