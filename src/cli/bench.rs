//! `selfsup bench`: the same workloads in selfsup and in PyTorch, alternating; medians and
//! speed ratios.

use anyhow::{Context, Result, bail};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Clone)]
pub struct WorkloadArgs {
    /// Images per batch (two views each).
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Timed training steps of step-convnet (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Timed training steps of step-resnet18 and step-mae (after one warm-up step).
    #[arg(long, default_value_t = 2)]
    pub resnet_steps: usize,
    /// Images of the views and epoch workloads (the first of the embedded Fashion-MNIST).
    #[arg(long, default_value_t = 10_000)]
    pub images: usize,
    /// Compute threads, and view workers.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// selfsup device: cpu (flex), or any `--device` of a build with its feature (tch, cuda:N,
    /// vulkan[:N], wgpu[:N]).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Workloads, comma-separated: step-convnet, step-resnet18, step-mae, views, epoch, knn.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "step-convnet,step-resnet18,step-mae,views,epoch,knn"
    )]
    pub workloads: Vec<String>,
    /// Repetitions on each side (the table shows medians).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Python with torch (and torchvision, lightly) for the reference side.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Run selfsup alone.
    #[arg(long)]
    no_python: bool,
    /// The reference script.
    #[arg(long, default_value = "bench/torch_ref.py")]
    pub script: PathBuf,
    /// Folder for `bench.md` and `bench.json`.
    #[arg(long, default_value = "runs/bench")]
    pub out: PathBuf,
    #[command(flatten)]
    size: WorkloadArgs,
}

#[derive(Args)]
pub struct BenchWorkerArgs {
    /// The workload.
    workload: String,
    #[command(flatten)]
    size: WorkloadArgs,
}

impl WorkloadArgs {
    /// The workload size these flags describe.
    pub fn size(&self) -> selfsup::bench::WorkloadSize {
        selfsup::bench::WorkloadSize {
            batch: self.batch,
            steps: self.steps,
            resnet_steps: self.resnet_steps,
            images: self.images,
            threads: self.threads,
            device: self.device.clone(),
        }
    }
}

/// Runs the benchmark and writes `bench.md` and `bench.json`.
pub fn run(a: BenchArgs) -> Result<()> {
    let s = &a.size;
    if a.repeats == 0 || s.batch == 0 || s.threads == 0 || s.steps == 0 || s.resnet_steps == 0 {
        bail!("--repeats, --batch, --threads, --steps and --resnet-steps must be positive");
    }
    if s.images < s.batch {
        bail!(
            "--images ({}) must be at least --batch ({})",
            s.images,
            s.batch
        );
    }
    let python = if a.no_python {
        None
    } else {
        let ok = std::process::Command::new(&a.python)
            .args(["-c", "import torch, torchvision"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            bail!(
                "'{}' cannot import torch and torchvision: install them (pip install torch torchvision lightly), give --python, or run --no-python",
                a.python
            );
        }
        if !a.script.is_file() {
            bail!(
                "{}: no such reference script (give --script)",
                a.script.display()
            );
        }
        Some(a.python.clone())
    };
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let scratch = tempfile::tempdir()?;
    let opts = selfsup::bench::BenchOptions {
        workloads: a.workloads.clone(),
        repeats: a.repeats,
        size: a.size.size(),
        python,
        script: a.script.clone(),
    };
    let rows = selfsup::bench::run(&opts, scratch.path())?;
    let machine = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let table = format!(
        "{}\n{} threads, batch {}, device {}, {} runs each (medians); {machine}\n",
        selfsup::bench::table(&rows),
        a.size.threads,
        a.size.batch,
        a.size.device,
        a.repeats
    );
    print!("{table}");
    selfsup::train::checkpoint::write_atomic(&a.out.join("bench.md"), table.as_bytes())?;
    selfsup::train::checkpoint::write_atomic(
        &a.out.join("bench.json"),
        serde_json::to_string_pretty(&rows)?.as_bytes(),
    )?;
    Ok(())
}

/// Runs one workload in this process and prints its measurement as one JSON line.
pub fn worker(a: BenchWorkerArgs) -> Result<()> {
    let m = selfsup::bench::run_workload(&a.workload, &a.size.size())?;
    println!("{}", serde_json::to_string(&m)?);
    Ok(())
}
