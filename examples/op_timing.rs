use burn::prelude::*;
use burn::nn::conv::Conv2dConfig;
use burn::nn::{BatchNormConfig, PaddingConfig2d};
use burn::nn::pool::MaxPool2dConfig;
use std::time::Instant;

fn t<F: FnMut() -> Tensor<4>>(name: &str, mut f: F) {
    let _ = f().into_data();
    let t0 = Instant::now();
    for _ in 0..3 { let _ : Vec<f32> = f().into_data().convert::<f32>().try_to_vec().unwrap(); }
    println!("{name}: {:.1} ms", t0.elapsed().as_secs_f64() * 1e3 / 3.0);
}

fn main() {
    let autodiff = std::env::args().nth(1).is_some();
    let dev = if autodiff { Device::flex().autodiff() } else { Device::flex() };
    let n = 512;
    for (cin, cout, hw) in [(1usize, 32usize, 28usize), (32, 64, 14), (64, 128, 7), (128, 256, 3)] {
        let x = Tensor::<4>::random([n, cin, hw, hw], burn::tensor::Distribution::Normal(0.0, 1.0), &dev);
        let conv = Conv2dConfig::new([cin, cout], [3, 3]).with_padding(PaddingConfig2d::Explicit(1,1,1,1)).with_bias(false).init(&dev);
        let bn = BatchNormConfig::new(cout).init(&dev);
        let y = conv.forward(x.clone());
        let gflop = 2.0 * (n * cout * hw * hw * cin * 9) as f64 / 1e9;
        let t0 = Instant::now();
        for _ in 0..3 { let _ = conv.forward(x.clone()).into_data(); }
        let ms = t0.elapsed().as_secs_f64() * 1e3 / 3.0;
        println!("conv {cin}->{cout} @{hw}: {ms:.1} ms ({:.1} GFLOP/s)", gflop / ms * 1e3);
        t(&format!("  bn {cout}"), || bn.forward(y.clone()));
        t(&format!("  relu {cout}"), || burn::tensor::activation::relu(y.clone()));
        let pool = MaxPool2dConfig::new([2, 2]).init();
        t(&format!("  maxpool {cout}"), || pool.forward(y.clone()));
    }
}
