//! `selfsup bench`: the same workloads in selfsup and in PyTorch (+ torchvision + lightly),
//! alternating, each repetition in a fresh process, with the median of the repetitions and
//! the speed ratio selfsup / PyTorch (above 1: selfsup is faster).
//!
//! The PyTorch side is `bench/torch_ref.py` run by a Python that has torch (this program
//! installs nothing). Each selfsup repetition runs `selfsup bench-worker WORKLOAD` so that
//! its peak memory is its own.

use crate::config::RunConfig;
use crate::data::Dataset;
use crate::data::loader::{HostBatch, HostTensor, Loader, LoaderConfig, ViewSpec};
use crate::error::{Error, Result};
use crate::nn::BackboneKind;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

/// Every workload, in the order the table lists them.
pub const WORKLOADS: &[&str] = &[
    "step-convnet",
    "step-resnet18",
    "step-mae",
    "views",
    "epoch",
    "knn",
];

/// What one run of a workload measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Measure {
    /// The workload's name.
    pub workload: String,
    /// The measured value.
    pub value: f64,
    /// `images/s` (higher is better) or `s` (lower is better).
    pub unit: String,
    /// Peak resident memory of the process, in MiB.
    pub peak_rss_mb: f64,
}

/// The size of the workloads, shared by both sides.
#[derive(Clone, Debug)]
pub struct WorkloadSize {
    /// Images per batch (two views each).
    pub batch: usize,
    /// Timed training steps of `step-convnet` (after one warm-up step).
    pub steps: usize,
    /// Timed training steps of `step-resnet18` and `step-mae` (after one warm-up step).
    pub resnet_steps: usize,
    /// Images of the `views` and `epoch` workloads (the first of the embedded Fashion-MNIST).
    pub images: usize,
    /// Threads: compute threads, and view workers.
    pub threads: usize,
    /// The selfsup device (`cpu`, `tch`).
    pub device: String,
}

/// The SimCLR views of the benchmark (SimCLR's recipe: crop 0.2-1, flip, jitter 0.8 x (0.4,
/// 0.4, 0.4, 0.1), grayscale 0.2, blur 0.5 with sigma 0.1-2), normalized with 0.5 / 0.5.
pub fn bench_views(side: usize, channels: usize) -> crate::augment::ViewConfig {
    crate::augment::ViewConfig {
        size: side,
        blur_prob: 0.5,
        mean: vec![0.5; channels],
        std: vec![0.5; channels],
        ..Default::default()
    }
}

/// The first `n` training images of the embedded Fashion-MNIST, grey or replicated to RGB.
pub fn bench_images(n: usize, rgb: bool) -> Result<Dataset> {
    let train = crate::data::embedded::fashion_mnist()?.train;
    let n = n.min(train.len());
    let grey = train.subset(&(0..n).collect::<Vec<_>>());
    if !rgb {
        return Ok(grey);
    }
    let plane = grey.height * grey.width;
    let mut pixels = Vec::with_capacity(3 * grey.pixels.len());
    for img in grey.pixels.chunks(plane) {
        for _ in 0..3 {
            pixels.extend_from_slice(img);
        }
    }
    Ok(Dataset {
        pixels,
        channels: 3,
        ..grey
    })
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// `method` on `kind` at the workload's batch, device and threads.
fn step_config(method: &str, kind: BackboneKind, size: &WorkloadSize) -> RunConfig {
    let mut cfg = RunConfig {
        method: method.into(),
        batch_size: size.batch,
        device: size.device.clone(),
        loader_workers: size.threads,
        ..RunConfig::default()
    };
    cfg.backbone.kind = kind;
    cfg
}

fn simclr_config(kind: BackboneKind, size: &WorkloadSize) -> RunConfig {
    let mut cfg = step_config("simclr", kind, size);
    cfg.optim.kind = crate::train::optim::OptimizerKind::Sgd;
    cfg.optim.momentum = 0.9;
    cfg.optim.weight_decay = 5e-4;
    cfg.schedule.lr = 0.06;
    cfg
}

/// SimCLR steps (forward, backward, SGD) on random batches: images per second.
fn train_steps(
    kind: BackboneKind,
    side: usize,
    channels: usize,
    steps: usize,
    size: &WorkloadSize,
) -> Result<f64> {
    timed_steps(&simclr_config(kind, size), (channels, side, 2), steps)
}

/// MAE steps (forward, backward, AdamW) of a ViT-Tiny (patch 4, 12 blocks of 192-wide
/// tokens, 3 heads) at 28 px, 1 channel, 75 % of the 49 patches masked, the default decoder
/// (2 blocks, 128 wide, 4 heads), on random batches: images per second.
fn mae_steps(steps: usize, size: &WorkloadSize) -> Result<f64> {
    let mut cfg = step_config("mae", BackboneKind::VitTiny, size);
    cfg.optim.kind = crate::train::optim::OptimizerKind::AdamW;
    cfg.optim.weight_decay = 0.05;
    cfg.schedule.lr = 1.5e-4;
    timed_steps(&cfg, (1, 28, 1), steps)
}

/// `steps` training steps of `cfg`'s method after one warm-up step, on one random batch of
/// `views` views of `channels` x `side` x `side`: images per second.
fn timed_steps(
    cfg: &RunConfig,
    (channels, side, views): (usize, usize, usize),
    steps: usize,
) -> Result<f64> {
    let device = crate::device::training(&crate::device::parse(&cfg.device)?);
    let info = crate::methods::find(&cfg.method)?;
    let mut method = (info.build)(cfg, channels, &device)?;
    let mut opt = crate::train::optim::Optimizer::new(cfg.optim.clone());
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let shape = [cfg.batch_size, channels, side, side];
    let mut view = || HostTensor {
        data: (0..shape.iter().product::<usize>())
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect(),
        shape,
    };
    let batch = HostBatch {
        views: (0..views).map(|_| view()).collect(),
        indices: (0..cfg.batch_size).collect(),
        epoch: 0,
        step: 0,
        steps_per_epoch: 1,
    };
    method.train_step(&batch, &mut opt, cfg.schedule.lr)?;
    let t = Instant::now();
    for _ in 0..steps {
        method.train_step(&batch, &mut opt, cfg.schedule.lr)?;
    }
    Ok((cfg.batch_size * steps) as f64 / t.elapsed().as_secs_f64())
}

/// The view pipeline alone (the training loader's worker pool): images per second.
fn views(size: &WorkloadSize) -> Result<f64> {
    let data = Arc::new(bench_images(size.images, true)?);
    let view = bench_views(data.height, 3);
    let spec = ViewSpec {
        views: vec![view.clone(), view],
    };
    let batches = Loader::batches_per_epoch(data.len(), size.batch);
    let t = Instant::now();
    let loader = Loader::spawn(
        data,
        spec,
        LoaderConfig {
            batch_size: size.batch,
            seed: 0,
            start_epoch: 0,
            start_batch: 0,
            prefetch: 2,
            workers: size.threads,
            shard: (0, 1),
        },
    );
    let n: usize = loader.take(batches).map(|b| b.indices.len()).sum();
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

/// One SimCLR epoch end to end (`selfsup pretrain` on the grey images): seconds.
fn epoch(size: &WorkloadSize) -> Result<f64> {
    let data = Arc::new(bench_images(size.images, false)?);
    let mut cfg = simclr_config(BackboneKind::ConvNet, size);
    cfg.epochs = 1;
    cfg.views = bench_views(data.height, 1);
    cfg.schedule.warmup_epochs = 0.0;
    let dir = tempfile::tempdir().map_err(|e| Error::io(Path::new("temporary folder"), e))?;
    let t = Instant::now();
    crate::train::pretrain(
        &cfg,
        data,
        &crate::train::TrainOptions {
            out_dir: dir.path().into(),
            resume: false,
            progress: false,
        },
    )?;
    Ok(t.elapsed().as_secs_f64())
}

/// Weighted k-NN (k = 200) of 10,000 random 512-d queries among 60,000: seconds.
fn knn() -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let (n_train, n_test, dim) = (60_000, 10_000, 512);
    let mut features = |n: usize| crate::eval::Features {
        data: (0..n * dim)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect(),
        n,
        dim,
    };
    let (train, test) = (features(n_train), features(n_test));
    let labels: Vec<u32> = (0..n_train).map(|_| rng.random_range(0..10)).collect();
    let t = Instant::now();
    let p = crate::eval::knn::predict_many(&train, &labels, &test, &[200], 0.07);
    assert_eq!(p[0].len(), n_test);
    t.elapsed().as_secs_f64()
}

/// Runs one workload in this process.
pub fn run_workload(workload: &str, size: &WorkloadSize) -> Result<Measure> {
    let (value, unit) = match workload {
        "step-convnet" => (
            train_steps(BackboneKind::ConvNet, 28, 1, size.steps, size)?,
            "images/s",
        ),
        "step-resnet18" => (
            train_steps(BackboneKind::ResNet18, 32, 3, size.resnet_steps, size)?,
            "images/s",
        ),
        "step-mae" => (mae_steps(size.resnet_steps, size)?, "images/s"),
        "views" => (views(size)?, "images/s"),
        "epoch" => (epoch(size)?, "s"),
        "knn" => (knn(), "s"),
        other => {
            return Err(Error::Config(format!(
                "unknown workload '{other}': use {}",
                WORKLOADS.join(", ")
            )));
        }
    };
    Ok(Measure {
        workload: workload.into(),
        value,
        unit: unit.into(),
        peak_rss_mb: peak_rss_mb(),
    })
}

/// How `selfsup bench` runs.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Workloads to run.
    pub workloads: Vec<String>,
    /// Repetitions of each, on each side.
    pub repeats: usize,
    /// The workload size.
    pub size: WorkloadSize,
    /// The Python that runs `script` (None: selfsup alone).
    pub python: Option<String>,
    /// The reference script (`bench/torch_ref.py`).
    pub script: PathBuf,
}

/// The medians of one workload on both sides.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The workload.
    pub workload: String,
    /// `images/s` or `s`.
    pub unit: String,
    /// Median selfsup value.
    pub selfsup: f64,
    /// Median PyTorch value, when it ran.
    pub pytorch: Option<f64>,
    /// selfsup speed / PyTorch speed.
    pub ratio: Option<f64>,
    /// Median peak RSS of selfsup, MiB.
    pub selfsup_rss_mb: f64,
    /// Median peak RSS of PyTorch, MiB.
    pub pytorch_rss_mb: Option<f64>,
    /// Every selfsup value, in run order.
    pub selfsup_runs: Vec<f64>,
    /// Every PyTorch value, in run order.
    pub pytorch_runs: Vec<f64>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

fn last_json_line(out: &[u8]) -> Option<Measure> {
    String::from_utf8_lossy(out)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Measure>(l.trim()).ok())
}

fn run_child(mut cmd: Command, what: &str) -> Result<Measure> {
    let out = cmd
        .output()
        .map_err(|e| Error::Config(format!("cannot start {what}: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(Error::Config(format!(
            "{what} failed ({}): {}",
            out.status,
            err.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
        )));
    }
    last_json_line(&out.stdout)
        .ok_or_else(|| Error::Config(format!("{what} printed no result line")))
}

/// Runs the benchmark: for each workload, `repeats` times selfsup then PyTorch (alternating),
/// each in a fresh process; returns one row per workload.
pub fn run(opts: &BenchOptions, scratch: &Path) -> Result<Vec<Row>> {
    let exe = std::env::current_exe().map_err(|e| Error::io(Path::new("selfsup"), e))?;
    let size = &opts.size;
    // The images the PyTorch side reads: the same ones the selfsup side loads.
    let (grey_path, rgb_path) = (scratch.join("grey.npy"), scratch.join("rgb.npy"));
    if opts.python.is_some() {
        for (path, rgb) in [(&grey_path, false), (&rgb_path, true)] {
            let d = bench_images(size.images, rgb)?;
            let shape = [
                d.len() as u64,
                d.channels as u64,
                d.height as u64,
                d.width as u64,
            ];
            crate::eval::write_npy_u8(path, &d.pixels, &shape)?;
        }
    }
    let mut rows = Vec::new();
    for w in &opts.workloads {
        if !WORKLOADS.contains(&w.as_str()) {
            return Err(Error::Config(format!(
                "unknown workload '{w}': use {}",
                WORKLOADS.join(", ")
            )));
        }
        let (mut ours, mut theirs) = (Vec::<Measure>::new(), Vec::<Measure>::new());
        for r in 0..opts.repeats {
            let mut cmd = Command::new(&exe);
            cmd.args(["bench-worker", w])
                .args(["--batch", &size.batch.to_string()])
                .args(["--steps", &size.steps.to_string()])
                .args(["--resnet-steps", &size.resnet_steps.to_string()])
                .args(["--images", &size.images.to_string()])
                .args(["--threads", &size.threads.to_string()])
                .args(["--device", &size.device]);
            let m = run_child(cmd, &format!("selfsup bench-worker {w}"))?;
            eprintln!("{w} run {}: selfsup {:.2} {}", r + 1, m.value, m.unit);
            ours.push(m);
            if let Some(py) = &opts.python {
                let mut cmd = Command::new(py);
                let steps = if w == "step-resnet18" || w == "step-mae" {
                    size.resnet_steps
                } else {
                    size.steps
                };
                cmd.arg(&opts.script)
                    .arg(w)
                    .args(["--batch", &size.batch.to_string()])
                    .args(["--steps", &steps.to_string()])
                    .args(["--threads", &size.threads.to_string()]);
                if w == "views" {
                    cmd.arg("--images").arg(&rgb_path);
                } else if w == "epoch" {
                    cmd.arg("--images").arg(&grey_path);
                }
                let m = run_child(cmd, &format!("{py} {} {w}", opts.script.display()))?;
                eprintln!("{w} run {}: PyTorch {:.2} {}", r + 1, m.value, m.unit);
                theirs.push(m);
            }
        }
        let values = |ms: &[Measure]| ms.iter().map(|m| m.value).collect::<Vec<_>>();
        let rss = |ms: &[Measure]| median(&ms.iter().map(|m| m.peak_rss_mb).collect::<Vec<_>>());
        let unit = ours[0].unit.clone();
        let (a, b) = (median(&values(&ours)), median(&values(&theirs)));
        let pytorch = (!theirs.is_empty()).then_some(b);
        let ratio = pytorch.map(|b| if unit == "s" { b / a } else { a / b });
        rows.push(Row {
            workload: w.clone(),
            unit,
            selfsup: a,
            pytorch,
            ratio,
            selfsup_rss_mb: rss(&ours),
            pytorch_rss_mb: (!theirs.is_empty()).then(|| rss(&theirs)),
            selfsup_runs: values(&ours),
            pytorch_runs: values(&theirs),
        });
    }
    Ok(rows)
}

/// The rows as a Markdown table.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| workload | unit | selfsup | PyTorch | speed ratio selfsup / PyTorch | peak RSS selfsup | peak RSS PyTorch |\n|---|---|---:|---:|---:|---:|---:|\n",
    );
    let opt = |v: Option<f64>, digits: usize| v.map_or("-".into(), |v| format!("{v:.digits$}"));
    for r in rows {
        s += &format!(
            "| {} | {} | {:.2} | {} | {} | {:.0} MiB | {} |\n",
            r.workload,
            r.unit,
            r.selfsup,
            opt(r.pytorch, 2),
            r.ratio.map_or("-".into(), |v| format!("{v:.2}x")),
            r.selfsup_rss_mb,
            r.pytorch_rss_mb
                .map_or("-".into(), |v| format!("{v:.0} MiB")),
        );
    }
    s
}
