//! The GPU code path (`--features wgpu` or `vulkan`): burn's CubeCL kernels, device transfers
//! and the `--device` plumbing, checked against the CPU backend. On a machine without a GPU
//! they run on Mesa's lavapipe (`wgpu:cpu` or `vulkan:cpu`, Debian `mesa-vulkan-drivers`),
//! slowly; set `SELFSUP_TEST_GPU=wgpu` (or `vulkan`) to run them on a real GPU. `.ci/gpu`
//! runs this group.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use selfsup::nn::vit::VitConfig;
use selfsup::nn::{Backbone, BackboneConfig, BackboneKind};
use selfsup::train::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use selfsup::train::{self, checkpoint};
use std::collections::BTreeMap;

/// The GPU device under test: `SELFSUP_TEST_GPU`, or the build's API on a CPU driver.
fn gpu_name() -> String {
    let default = if cfg!(feature = "wgpu") {
        "wgpu:cpu"
    } else {
        "vulkan:cpu"
    };
    std::env::var("SELFSUP_TEST_GPU").unwrap_or_else(|_| default.into())
}

fn gpu() -> Device {
    selfsup::device::parse(&gpu_name()).unwrap()
}

/// Uniform values in [-1, 1), seeded.
fn uniform(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// The largest difference between `a` and `b`, relative to `b`'s largest magnitude.
fn relative_gap(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
        / scale
}

/// One training step of `net` on `device`: the features of `x`, then SGD on
/// `sum(features * r)`. Returns the features and the change of every tensor the step made.
fn one_step(
    net: Backbone,
    x: &TensorData,
    r: &TensorData,
    device: &Device,
) -> (Vec<f32>, BTreeMap<String, Vec<f32>>) {
    let net = net.fork(device);
    let before = checkpoint::collect(&net);
    let x = Tensor::<4>::from_data(x.clone(), device);
    let y = net.forward(x);
    let features = selfsup::device::host_values(y.clone());
    let r = Tensor::<2>::from_data(r.clone(), device);
    let grads = GradientsParams::from_grads((y * r).sum().backward(), &net);
    assert!(!grads.is_empty(), "the step has gradients");
    let mut opt = Optimizer::new(OptimizerConfig {
        kind: OptimizerKind::Sgd,
        momentum: 0.9,
        weight_decay: 0.0,
        ..OptimizerConfig::default()
    });
    let after = checkpoint::collect(&opt.step(0.1, net, grads));
    let change = after
        .into_iter()
        .map(|(k, a)| {
            let d = a.data.iter().zip(&before[&k].data).map(|(a, b)| a - b);
            (k, d.collect())
        })
        .collect();
    (features, change)
}

/// The backbones' forward, backward and an SGD step on the GPU device equal the CPU
/// backend's: features within 1e-3 of their largest value, and each tensor's change (weights,
/// BatchNorm running statistics) within 1e-2 of its largest value, or within twice the
/// largest gap between selfsup's and burn's CPU kernels where those two differ more (float
/// sums run in another order on each).
#[test]
fn backbones_forward_backward_and_step_match_the_cpu() {
    let cases = [
        (
            "convnet",
            BackboneConfig {
                width: 0.25,
                ..Default::default()
            },
            1,
            28,
        ),
        (
            "resnet18 (CIFAR stem)",
            BackboneConfig {
                kind: BackboneKind::ResNet18,
                width: 0.25,
                ..Default::default()
            },
            3,
            32,
        ),
        (
            "resnet18 (ImageNet stem)",
            BackboneConfig {
                kind: BackboneKind::ResNet18,
                width: 0.25,
                cifar_stem: false,
                ..Default::default()
            },
            3,
            64,
        ),
        (
            "vit (64-d, 2 blocks)",
            BackboneConfig {
                kind: BackboneKind::VitTiny,
                vit: VitConfig {
                    dim: 64,
                    depth: 2,
                    heads: 2,
                    ..Default::default()
                },
                ..Default::default()
            },
            3,
            32,
        ),
    ];
    let cpu = Device::flex().autodiff();
    let gpu = gpu().autodiff();
    for (name, cfg, channels, side) in cases {
        let t = std::time::Instant::now();
        cpu.seed(7);
        let net = Backbone::new(&cfg, channels, &cpu);
        // A copy through its tensors: a clone would share the BatchNorm running statistics
        // (burn keeps them behind one lock), and the first step would move both.
        let tensors: std::collections::HashMap<_, _> =
            checkpoint::collect(&net).into_iter().collect();
        let twin = checkpoint::apply(
            Backbone::new(&cfg, channels, &cpu),
            &tensors,
            std::path::Path::new("copy"),
        )
        .unwrap();
        let n = 32;
        let x = TensorData::new(
            uniform(n * channels * side * side, 1),
            [n, channels, side, side],
        );
        let r = TensorData::new(uniform(n * net.feature_dim(), 2), [n, net.feature_dim()]);
        let (y_cpu, d_cpu) = one_step(net, &x, &r, &cpu);
        // The same step with burn's own CPU kernels instead of selfsup's: how far two correct
        // float32 implementations drift apart (BatchNorm's backward over 32 images cancels
        // digits in ResNet-18's last stage: up to 11 % there).
        selfsup::nn::set_own_cpu_kernels(false);
        let copy = checkpoint::apply(
            Backbone::new(&cfg, channels, &cpu),
            &tensors,
            std::path::Path::new("copy"),
        )
        .unwrap();
        let (_, d_burn) = one_step(copy, &x, &r, &cpu);
        selfsup::nn::set_own_cpu_kernels(true);
        let (y_gpu, d_gpu) = one_step(twin, &x, &r, &gpu);
        let gap = relative_gap(&y_gpu, &y_cpu);
        assert!(gap < 1e-3, "{name}: features differ by {gap}");
        assert_eq!(d_cpu.len(), d_gpu.len(), "{name}");
        // The drift between the CPU's two kernel sets, over the whole network: rounding
        // differences spread through the layers, so one tensor's own gap is too narrow a bound.
        // Tensors the step leaves still up to rounding are skipped: attention's key bias, to
        // which the softmax is invariant (its gradient is 0).
        let largest = |d: &Vec<f32>| d.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let scale = d_cpu.values().map(largest).fold(0.0f32, f32::max);
        let moved: Vec<(&String, &Vec<f32>)> = d_cpu
            .iter()
            .filter(|(_, d)| largest(d) > 1e-5 * scale)
            .collect();
        let cpu_gap = moved
            .iter()
            .map(|(k, d)| relative_gap(&d_burn[*k], d))
            .fold(0.0f32, f32::max);
        let mut worst = (0.0f32, String::new());
        for (k, d) in moved {
            let gap = relative_gap(&d_gpu[k], d);
            assert!(
                gap < 1e-2f32.max(2.0 * cpu_gap),
                "{name}: the step changes {k} by {gap} off the CPU's (the CPU's two kernel sets \
                 differ by up to {cpu_gap})"
            );
            if gap > worst.0 {
                worst = (gap, k.clone());
            }
        }
        println!(
            "{name}: features {gap:.1e}, step {:.1e} ({}; CPU kernel sets {cpu_gap:.1e}), {:.1} s",
            worst.0,
            worst.1,
            t.elapsed().as_secs_f64()
        );
    }
}

/// SimCLR, MoCo (its queue) and SwAV (its queue and prototypes) trained 2 steps on the CPU,
/// then resumed from that checkpoint on the GPU device, take the same next 4 steps as the
/// run that stays on the CPU: the losses within 1e-2 relative, and the checkpoint the GPU
/// run writes loads back on the CPU with the same tensors.
#[test]
fn pretraining_resumed_on_the_gpu_continues_the_cpu_run() {
    for method in ["simclr", "moco", "swav"] {
        let t = std::time::Instant::now();
        let (cfg, data) = crate::resume::resume_case(method);
        let (straight, split) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let cpu_losses = crate::resume::run(&cfg, &data, straight.path(), 6, false);
        crate::resume::run(&cfg, &data, split.path(), 2, false);
        let on_gpu = selfsup::config::RunConfig {
            device: gpu_name(),
            ..cfg.clone()
        };
        let gpu_losses = crate::resume::run(&on_gpu, &data, split.path(), 6, true);
        for (i, (g, c)) in gpu_losses.iter().zip(&cpu_losses[2..]).enumerate() {
            assert!(
                (g - c).abs() <= 1e-2 * c.abs().max(1.0),
                "{method}: step {}: loss {g} on the GPU device, {c} on the CPU",
                i + 3
            );
        }
        let (a, _) = checkpoint::load(&straight.path().join(train::TRAIN_CKPT)).unwrap();
        let (b, _) = checkpoint::load(&split.path().join(train::TRAIN_CKPT)).unwrap();
        assert_eq!(a.len(), b.len(), "{method}");
        for (k, v) in &a {
            let gap = relative_gap(&b[k].data, &v.data);
            assert!(gap < 5e-2, "{method}: {k} differs by {gap}");
        }
        println!(
            "{method}: CPU {cpu_losses:?}, GPU {gpu_losses:?}, {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
}

/// A run pretrained through the CLI on the GPU device falls in loss, and `embed` of its
/// checkpoint on the GPU device and on the CPU writes the same features.
#[test]
fn cli_pretrains_and_embeds_on_the_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let bin = env!("CARGO_BIN_EXE_selfsup");
    let out = std::process::Command::new(bin)
        .args([
            "pretrain",
            "--method",
            "simclr",
            "--device",
            &gpu_name(),
            "--train-limit",
            "256",
            "--batch-size",
            "64",
            "--epochs",
            "3",
            "--set",
            "backbone.width=0.25",
            "--set",
            "log_every=1",
            "--quiet",
            "--out",
        ])
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let losses = crate::logged_losses(&run);
    assert_eq!(losses.len(), 12, "{losses:?}");
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    assert!(
        mean(&losses[8..]) < mean(&losses[..4]) - 0.05,
        "the loss should fall: {losses:?}"
    );
    let embed = |device: &str, file: &str| {
        let path = dir.path().join(file);
        let out = std::process::Command::new(bin)
            .args(["embed", "--checkpoint"])
            .arg(run.join("last.safetensors"))
            .args(["--set", &format!("device=\"{device}\""), "--out"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{device}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bytes = std::fs::read(&path).unwrap();
        let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
        npy.into_vec::<f32>().unwrap()
    };
    let (on_gpu, on_cpu) = (embed(&gpu_name(), "gpu.npy"), embed("cpu", "cpu.npy"));
    assert_eq!(on_gpu.len(), on_cpu.len());
    let gap = relative_gap(&on_gpu, &on_cpu);
    assert!(gap < 1e-3, "embed differs by {gap} between the devices");
}
