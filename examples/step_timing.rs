//! Times the forward, backward and optimizer parts of one SimCLR step of the default ConvNet
//! on random input: `cargo run --release --features dev-tools --example step_timing -- [BATCH]`.

use burn::optim::GradientsParams;
use burn::prelude::*;
use selfsup::losses::nt_xent;
use selfsup::methods::contrastive::simclr::SimClrModel;
use selfsup::nn::{Backbone, BackboneConfig, heads::Mlp};
use std::time::Instant;

fn main() {
    let dev = Device::flex().autodiff();
    dev.seed(0);
    let b: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(256);
    let backbone = Backbone::new(&BackboneConfig::default(), 1, &dev);
    let projector = Mlp::new(backbone.feature_dim(), 512, 128, &dev);
    let mut m = SimClrModel {
        backbone,
        projector,
    };
    let x = Tensor::<4>::random(
        [2 * b, 1, 28, 28],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &dev,
    );
    let mut opt = selfsup::train::optim::Optimizer::new(Default::default());
    for it in 0..6 {
        let t0 = Instant::now();
        let z = m.projector.forward(m.backbone.forward(x.clone()));
        let loss = nt_xent(z.clone().narrow(0, 0, b), z.narrow(0, b, b), 0.2);
        let _v: f32 = loss.clone().into_scalar();
        let t1 = Instant::now();
        let g = loss.backward();
        let grads = GradientsParams::from_grads(g, &m);
        let t2 = Instant::now();
        m = opt.step(0.1, m, grads);
        let _ = m.backbone.clone().valid();
        let t3 = Instant::now();
        println!(
            "it {it}: fwd {:.0} ms, bwd {:.0} ms, opt {:.0} ms, total {:.0} ms => {:.0} img/s",
            (t1 - t0).as_secs_f64() * 1e3,
            (t2 - t1).as_secs_f64() * 1e3,
            (t3 - t2).as_secs_f64() * 1e3,
            (t3 - t0).as_secs_f64() * 1e3,
            b as f64 / (t3 - t0).as_secs_f64()
        );
    }
}
