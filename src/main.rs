//! The `selfsup` command line: pretrain, evaluate, embed, demo, and list what is available.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use selfsup::config::RunConfig;
use selfsup::data::{DataSource, Splits};
use selfsup::eval::{self, knn, linear};
use selfsup::nets::{Backbone, BackboneKind};
use selfsup::train::{self, TrainOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Self-supervised visual representation learning, and evaluation of frozen features.
#[derive(Parser)]
#[command(name = "selfsup", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pretrain SimCLR on the embedded data, then compare the pretrained and random-init backbones.
    Demo(DemoArgs),
    /// Pretrain a backbone with a self-supervised method.
    Pretrain(PretrainArgs),
    /// Train the supervised baseline (backbone + linear classifier on labels); evaluate it
    /// like any checkpoint.
    TrainSupervised(PretrainArgs),
    /// Evaluate a checkpoint's frozen backbone on a labeled data set.
    Eval(EvalArgs),
    /// Write a checkpoint's features of a data set to a .npy file.
    Embed(EmbedArgs),
    /// Train every method with the same backbone, data and wall-clock budget; table and plot.
    Compare(CompareArgs),
    /// Run the same workloads in selfsup and in PyTorch (`bench/torch_ref.py`), alternating;
    /// table of medians and speed ratios.
    Bench(BenchArgs),
    /// One benchmark workload in this process (what `bench` runs); prints one JSON line.
    #[command(hide = true)]
    BenchWorker(BenchWorkerArgs),
    /// Check the process group of a data-parallel run (`mpirun -np N selfsup dist-check`):
    /// every collective, Sinkhorn over shards, and all-reduce times at gradient sizes.
    DistCheck(DistCheckArgs),
    /// List the self-supervised methods.
    Methods,
    /// List the backbones.
    Backbones,
    /// List the data formats.
    Datasets,
}

#[derive(Args)]
struct DistCheckArgs {
    /// All-reduce message sizes to time, in f32 values (default: 1 Ki, the small ConvNet +
    /// SimCLR head's 0.6 Mi gradients, ResNet-18's 11 Mi).
    #[arg(long, value_delimiter = ',', default_value = "1024,600000,11200000")]
    sizes: Vec<usize>,
    /// Timed all-reduces per size (median reported).
    #[arg(long, default_value_t = 10)]
    repeats: usize,
}

#[derive(Args, Clone)]
struct WorkloadArgs {
    /// Images per batch (two views each).
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Timed training steps of step-convnet (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Timed training steps of step-resnet18 (after one warm-up step).
    #[arg(long, default_value_t = 2)]
    resnet_steps: usize,
    /// Images of the views and epoch workloads (the first of the embedded Fashion-MNIST).
    #[arg(long, default_value_t = 10_000)]
    images: usize,
    /// Compute threads, and view workers.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// selfsup device: cpu (flex) or tch (a build with `--features tch`).
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(Args)]
struct BenchArgs {
    /// Workloads, comma-separated: step-convnet, step-resnet18, views, epoch, knn.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "step-convnet,step-resnet18,views,epoch,knn"
    )]
    workloads: Vec<String>,
    /// Repetitions on each side (the table shows medians).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Python with torch (and torchvision, lightly) for the reference side.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Run selfsup alone.
    #[arg(long)]
    no_python: bool,
    /// The reference script.
    #[arg(long, default_value = "bench/torch_ref.py")]
    script: PathBuf,
    /// Folder for `bench.md` and `bench.json`.
    #[arg(long, default_value = "runs/bench")]
    out: PathBuf,
    #[command(flatten)]
    size: WorkloadArgs,
}

#[derive(Args)]
struct BenchWorkerArgs {
    /// The workload.
    workload: String,
    #[command(flatten)]
    size: WorkloadArgs,
}

impl WorkloadArgs {
    fn size(&self) -> selfsup::bench::WorkloadSize {
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

#[derive(Args)]
struct DemoArgs {
    /// Run folder.
    #[arg(long, default_value = "runs/demo")]
    out: PathBuf,
    /// Pretraining epochs (the default fits in a few minutes on 2 cores).
    #[arg(long)]
    epochs: Option<usize>,
    /// Data source to use instead of the embedded subset (needs a labeled test split).
    #[arg(long)]
    data: Option<DataSource>,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct CompareArgs {
    /// Folder for the runs, `table.md`, `results.json` and `knn_vs_time.png`.
    #[arg(long, default_value = "runs/compare")]
    out: PathBuf,
    /// Training seconds per method.
    #[arg(long, default_value_t = 120.0)]
    budget_s: f64,
    /// Only these methods (comma-separated label prefixes: simclr, moco, npid, pirl, cpc, swav,
    /// rotation, jigsaw, relative, inpainting, multi).
    #[arg(long, value_delimiter = ',')]
    methods: Vec<String>,
    /// Data source (needs a labeled test split; default: the embedded subset).
    #[arg(long)]
    data: Option<DataSource>,
    /// Use only the first N training images.
    #[arg(long)]
    train_limit: Option<usize>,
    /// Hide the progress bars.
    #[arg(long)]
    quiet: bool,
}

/// Flags shared by pretraining; each overrides the same field of `--config`.
#[derive(Args)]
struct RunFlags {
    /// TOML config file; flags override its fields.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Method (see `selfsup methods`).
    #[arg(long)]
    method: Option<String>,
    /// Data source: embedded, idx:PATH, cifar10:PATH, cifar100:PATH or folder:PATH.
    #[arg(long)]
    data: Option<DataSource>,
    /// Backbone: convnet, resnet18 or resnet50.
    #[arg(long)]
    backbone: Option<BackboneKind>,
    /// Use the standard ImageNet stem for ResNets instead of the CIFAR stem.
    #[arg(long)]
    imagenet_stem: bool,
    /// Training epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Images per batch.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Warm-up epochs.
    #[arg(long)]
    warmup_epochs: Option<f64>,
    /// Optimizer: sgd, lars or adamw.
    #[arg(long)]
    optimizer: Option<String>,
    /// Weight decay.
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Temperature of the contrastive loss (SimCLR, MoCo).
    #[arg(long)]
    temperature: Option<f32>,
    /// View size in pixels.
    #[arg(long)]
    view_size: Option<usize>,
    /// Smallest crop area fraction of RandomResizedCrop.
    #[arg(long)]
    crop_min: Option<f32>,
    /// Seed of every random choice.
    #[arg(long)]
    seed: Option<u64>,
    /// Device: cpu, tch (feature `tch`) or cuda:N (feature `cuda`).
    #[arg(long)]
    device: Option<String>,
    /// Use only the first N training images.
    #[arg(long)]
    train_limit: Option<usize>,
    /// Stop after this many steps (the schedule still spans all epochs).
    #[arg(long)]
    stop_after_steps: Option<u64>,
    /// PIRL's transform: jigsaw or rotation.
    #[arg(long, value_enum)]
    pirl_transform: Option<selfsup::methods::pirl::PirlTransform>,
    /// Tasks of `--method multi`, comma-separated (e.g. `relative_position,rotation`).
    #[arg(long, value_enum, value_delimiter = ',')]
    tasks: Vec<selfsup::methods::multi_task::TaskKind>,
    /// Loss weight of each task of `--tasks`, comma-separated (default: all 1).
    #[arg(long, value_delimiter = ',')]
    task_weights: Vec<f32>,
    /// Start the backbone from this checkpoint (any method's `last.safetensors`).
    #[arg(long)]
    init_from: Option<PathBuf>,
    /// Stop on the first unreadable image of a folder (default: skip it with a warning).
    #[arg(long)]
    strict: bool,
    /// Any config field by its dotted path, e.g. `--set npid.loss=infonce` (repeatable;
    /// applied after the other flags).
    #[arg(long, value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Args)]
struct PretrainArgs {
    #[command(flatten)]
    run: RunFlags,
    /// Run folder (config.toml, metrics.jsonl, checkpoints).
    #[arg(long, default_value = "runs/pretrain")]
    out: PathBuf,
    /// Continue from the run folder's last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum EvalMode {
    /// Weighted k-NN (cosine, T = 0.07), k = 20 and 200 unless --k is given.
    Knn,
    /// Linear probe (logistic regression on standardized features).
    Linear,
    /// VOC07 protocol: one-vs-rest linear SVMs, cost sweep by 3-fold cross-validated AP, mAP.
    Svm,
    /// k labelled images per class (several draws), SVM or linear probe, test top-1.
    Lowshot,
    /// A linear probe of every stage of the backbone; table and PNG plot.
    Layers,
    /// Nearest neighbours of test queries among the train images (PNG grid), and a t-SNE map
    /// of test features coloured by label (PNG).
    Neighbors,
    /// Fine-tune the whole backbone plus a linear classifier with labels; test top-1, next to
    /// the same training from random init.
    Finetune,
}

#[derive(Args)]
struct EvalArgs {
    /// What to fit on the frozen features.
    mode: EvalMode,
    /// Checkpoint (`last.safetensors` of a run folder); its config.toml is read from beside it.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Labeled data with a test split (default: the checkpoint run's data).
    #[arg(long)]
    data: Option<DataSource>,
    /// Re-estimate the backbone's BatchNorm statistics on the evaluation data first (AdaBN;
    /// for features pretrained on another domain, e.g. video frames). No weights change.
    #[arg(long)]
    adapt_bn: bool,
    /// Neighbours for k-NN (repeatable).
    #[arg(long)]
    k: Vec<usize>,
    /// Use only the first N training images (the labelled set of every mode).
    #[arg(long)]
    train_limit: Option<usize>,
    /// Use only the first N test images.
    #[arg(long)]
    test_limit: Option<usize>,
    /// SVM: multi-label classes of the train images (one line per image: class indices).
    #[arg(long, requires = "test_labels")]
    train_labels: Option<PathBuf>,
    /// SVM: multi-label classes of the test images.
    #[arg(long, requires = "train_labels")]
    test_labels: Option<PathBuf>,
    /// SVM costs to sweep (comma-separated; default 0.01,0.1,1,2,5,10,15,20,50,100,1000).
    #[arg(long, value_delimiter = ',')]
    costs: Vec<f64>,
    /// Low-shot: labelled images per class (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32,64")]
    shots: Vec<usize>,
    /// Low-shot: draws per k.
    #[arg(long, default_value_t = 5)]
    seeds: usize,
    /// Low-shot: the classifier.
    #[arg(long, value_enum, default_value = "svm")]
    model: eval::lowshot::LowShotModel,
    /// Low-shot: the SVM cost.
    #[arg(long, default_value_t = 1.0)]
    cost: f64,
    /// Layers: each stage pooled to about this many values.
    #[arg(long, default_value_t = 2048)]
    layer_dims: usize,
    /// Layers, neighbors: where to save the picture (default: beside the checkpoint, as
    /// `layers.png`, or `neighbors.png` and `tsne.png`).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Neighbors: query images (the first test image of each class, then the next ones).
    #[arg(long, default_value_t = 10)]
    queries: usize,
    /// Neighbors: neighbours shown per query.
    #[arg(long, default_value_t = 8)]
    neighbors: usize,
    /// Neighbors: test images in the t-SNE map (0 skips it).
    #[arg(long, default_value_t = 1500)]
    tsne_points: usize,
    /// Finetune: epochs of supervised training.
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    /// Finetune: skip the random-init run.
    #[arg(long)]
    no_baseline: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Split {
    Train,
    Test,
}

#[derive(Args)]
struct EmbedArgs {
    /// Checkpoint (`last.safetensors` of a run folder).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Data to embed (default: the checkpoint run's data).
    #[arg(long)]
    data: Option<DataSource>,
    /// Which split to embed.
    #[arg(long, value_enum, default_value = "test")]
    split: Split,
    /// Output .npy file (float32, N x D); labels, if any, go to the same name with `.labels.npy`.
    #[arg(long)]
    out: PathBuf,
}

/// mimalloc: measured 15 % more SimCLR images/s than the system allocator on 2 cores (the
/// training step allocates and frees large activation buffers).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    // Joins the MPI world when a launcher started this process (`mpirun -np N selfsup ...`).
    let session = match selfsup::dist::init() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    };
    let (rank, world) = (selfsup::dist::rank(), selfsup::dist::world_size());
    // Ranks other than 0 only report warnings and errors, prefixed with their rank.
    let level = if rank == 0 {
        tracing::Level::INFO
    } else {
        tracing::Level::WARN
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_max_level(level)
        .init();
    if let Err(e) = run(cli) {
        if world > 1 {
            eprintln!("error (rank {rank} of {world}): {e:#}");
            // The other ranks may be waiting for this one in a collective: end them all.
            selfsup::dist::world().abort(1);
        }
        eprintln!("error: {e:#}");
        drop(session);
        std::process::exit(1);
    }
    drop(session);
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo(a) => demo(a),
        Command::Compare(a) => compare(a),
        Command::Bench(a) => bench(a),
        Command::BenchWorker(a) => {
            let m = selfsup::bench::run_workload(&a.workload, &a.size.size())?;
            println!("{}", serde_json::to_string(&m)?);
            Ok(())
        }
        Command::Pretrain(a) => pretrain(a),
        Command::DistCheck(a) => dist_check(a),
        Command::TrainSupervised(mut a) => {
            a.run.method = Some("supervised".into());
            pretrain(a)
        }
        Command::Eval(a) => evaluate(a),
        Command::Embed(a) => embed(a),
        Command::Methods => {
            for m in selfsup::methods::METHODS {
                println!("{:<10} {}\n{:<10} ({})", m.name, m.summary, "", m.paper);
            }
            Ok(())
        }
        Command::Backbones => {
            for (_, name, about) in BackboneKind::ALL {
                println!("{name:<10} {about}");
            }
            Ok(())
        }
        Command::Datasets => {
            println!(
                "embedded        Fashion-MNIST subset in the binary: 10,000 train + 2,000 test, 28x28 grey (MIT)"
            );
            println!(
                "idx:DIR         MNIST-style IDX files (train-images-idx3-ubyte[.gz], t10k-*), gzipped or not"
            );
            println!("cifar10:DIR     CIFAR-10 binary batches (data_batch_N.bin, test_batch.bin)");
            println!("cifar100:DIR    CIFAR-100 binary files (train.bin, test.bin), fine labels");
            println!(
                "folder:DIR      images (PNG/JPEG) in class sub-folders, or unlabeled; train/ + test/ split if present"
            );
            println!(
                "video:PATH      a video file (read by ffmpeg), a folder of frame images, or a folder of both; one clip held out"
            );
            println!(
                "av:PATH         images with the sound of the same name beside them (NAME.png + NAME.ogg/.wav/.mp3), in category sub-folders; or video files with sound (each frame with the second around it)"
            );
            Ok(())
        }
    }
}

fn load_data(cfg: &RunConfig) -> Result<Splits> {
    cfg.data
        .load_with(&cfg.load_options())
        .with_context(|| format!("loading data '{}'", cfg.data))
}

fn resolve(flags: &RunFlags) -> Result<RunConfig> {
    let mut c = match &flags.config {
        Some(p) => RunConfig::from_toml_file(p)?,
        // The supervised baseline starts from supervised views and optimizer.
        None if flags.method.as_deref() == Some("supervised") => {
            eval::finetune::supervised_config(&RunConfig::default(), 10, None)
        }
        None => RunConfig::default(),
    };
    if let Some(v) = &flags.method {
        c.method = v.clone();
    }
    if let Some(v) = &flags.data {
        c.data = v.clone();
    }
    if let Some(v) = flags.backbone {
        c.backbone.kind = v;
    }
    if flags.imagenet_stem {
        c.backbone.cifar_stem = false;
    }
    if let Some(v) = flags.epochs {
        c.epochs = v;
    }
    if let Some(v) = flags.batch_size {
        c.batch_size = v;
    }
    if let Some(v) = flags.lr {
        c.schedule.lr = v;
    }
    if let Some(v) = flags.warmup_epochs {
        c.schedule.warmup_epochs = v;
    }
    if let Some(v) = &flags.optimizer {
        c.optim.kind = match v.as_str() {
            "sgd" => selfsup::train::optim::OptimizerKind::Sgd,
            "lars" => selfsup::train::optim::OptimizerKind::Lars,
            "adamw" => selfsup::train::optim::OptimizerKind::AdamW,
            _ => bail!("unknown optimizer '{v}': use sgd, lars or adamw"),
        };
    }
    if let Some(v) = flags.weight_decay {
        c.optim.weight_decay = v;
    }
    if let Some(v) = flags.temperature {
        c.simclr.temperature = v;
        c.moco.temperature = v;
    }
    if let Some(v) = flags.view_size {
        c.views.size = v;
    }
    if let Some(v) = flags.crop_min {
        c.views.crop_scale.0 = v;
    }
    if let Some(v) = flags.seed {
        c.seed = v;
    }
    if let Some(v) = &flags.device {
        c.device = v.clone();
    }
    if let Some(v) = flags.train_limit {
        c.train_limit = v;
    }
    if let Some(v) = flags.stop_after_steps {
        c.stop_after_steps = v;
    }
    if flags.strict {
        c.strict_data = true;
    }
    if let Some(p) = &flags.init_from {
        c.init_from = Some(p.clone());
    }
    if let Some(v) = flags.pirl_transform {
        c.pirl.transform = v;
    }
    if !flags.tasks.is_empty() {
        c.multi.tasks = flags.tasks.clone();
    }
    if !flags.task_weights.is_empty() {
        c.multi.weights = flags.task_weights.clone();
    }
    for a in &flags.set {
        c.set(a)?;
    }
    c.validate()?;
    Ok(c)
}

fn pretrain(a: PretrainArgs) -> Result<()> {
    let mut cfg = resolve(&a.run)?;
    let mut splits = load_data(&cfg)?;
    if cfg.train_limit > 0 {
        splits.train = splits.train.take(cfg.train_limit);
    }
    if cfg.random_crops > 0 {
        splits.train =
            splits
                .train
                .random_crops(cfg.random_crops, cfg.random_crop_side, cfg.seed)?;
    }
    cfg.fit_views_to(&splits.train);
    let n = splits.train.len();
    let primary = selfsup::dist::is_primary();
    let out = train::pretrain(
        &cfg,
        Arc::new(splits.train),
        &TrainOptions {
            out_dir: a.out.clone(),
            resume: a.resume,
            progress: !a.quiet,
        },
    )?;
    if !primary {
        return Ok(());
    }
    let world = selfsup::dist::world_size();
    if world > 1 {
        println!(
            "{world} ranks ({}): {:.1} s of {:.1} s in collective operations on rank 0",
            selfsup::dist::world().describe(),
            out.comm_s,
            out.wall_s
        );
    }
    println!(
        "pretrained {} on {n} images: {} steps in {:.1} s ({:.0} img/s), loss {:.4} -> {:.4}; checkpoint {}",
        cfg.method,
        out.steps,
        out.wall_s,
        out.images_per_s,
        out.losses.first().copied().unwrap_or(f32::NAN),
        out.losses.last().copied().unwrap_or(f32::NAN),
        a.out.join(train::MODEL_CKPT).display()
    );
    if let Some(test) = &splits.test {
        let metrics = out.method.pretext_metrics(test, 2000);
        if !metrics.is_empty() {
            println!("pretext task on {} held-out images:", test.len().min(2000));
            for (k, v) in metrics {
                println!("  {k}: {v:.4}");
            }
        }
    }
    Ok(())
}

fn dist_check(a: DistCheckArgs) -> Result<()> {
    let report = selfsup::dist::check::run(&a.sizes, a.repeats);
    if !selfsup::dist::is_primary() {
        return if report.passed() {
            Ok(())
        } else {
            bail!("dist-check failed")
        };
    }
    println!("{}", report.world);
    for c in &report.checks {
        println!(
            "  {:<4} {} (max error {:.2e})",
            if c.passed { "ok" } else { "FAIL" },
            c.what,
            c.max_error
        );
    }
    if report.timings.is_empty() {
        println!("one process: no communication to time (start it under mpirun -np N)");
    } else {
        println!(
            "all-reduce (sum, f32), slowest rank's median of {}:",
            a.repeats
        );
    }
    for t in &report.timings {
        println!(
            "  {:>10} floats ({:>8.2} MB): {:>9.3} ms, bus bandwidth {:.2} GB/s",
            t.floats,
            t.floats as f64 * 4e-6,
            t.seconds * 1e3,
            t.bus_gb_s
        );
    }
    if !report.passed() {
        bail!("dist-check failed");
    }
    Ok(())
}

/// Reads the run config beside a checkpoint (or the defaults) and its backbone.
fn load_checkpoint(path: &Path, data: Option<DataSource>) -> Result<(RunConfig, Splits, Backbone)> {
    let cfg_path = path.parent().unwrap_or(Path::new(".")).join("config.toml");
    let mut cfg = if cfg_path.exists() {
        RunConfig::from_toml_file(&cfg_path)?
    } else {
        RunConfig::default()
    };
    if let Some(d) = data {
        cfg.data = d;
    }
    let mut splits = load_data(&cfg)?;
    if selfsup::methods::multi_task::input_channels(&cfg, splits.train.channels)
        != splits.train.channels
    {
        // A colorization backbone sees lightness only.
        use selfsup::pretext::lab::lightness_dataset;
        splits.train = lightness_dataset(&splits.train);
        splits.test = splits.test.as_ref().map(lightness_dataset);
    }
    let device = selfsup::device::parse(&cfg.device)?;
    let backbone = selfsup::train::checkpoint::load_backbone(
        path,
        &cfg.backbone,
        splits.train.channels,
        &device,
    )?;
    Ok((cfg, splits, backbone))
}

fn evaluate(a: EvalArgs) -> Result<()> {
    let (cfg, mut splits, mut backbone) = load_checkpoint(&a.checkpoint, a.data.clone())?;
    if let Some(n) = a.train_limit {
        splits.train = splits.train.take(n);
    }
    if a.adapt_bn {
        backbone = eval::adapt_batchnorm(backbone, &splits.train, &cfg.views, 256);
    }
    if let (Some(n), Some(t)) = (a.test_limit, splits.test.as_mut()) {
        *t = t.take(n);
    }
    if let EvalMode::Finetune = a.mode {
        if a.epochs == 0 {
            bail!("--epochs must be at least 1");
        }
        let dir = a
            .checkpoint
            .parent()
            .unwrap_or(Path::new("."))
            .join("finetune");
        let tuned = eval::finetune::finetune(
            &cfg,
            &splits,
            a.epochs,
            Some(&a.checkpoint),
            &dir.join("pretrained"),
            true,
        )?;
        println!(
            "fine-tuned from {}: test top-1 {tuned:.2} % after {} epochs",
            a.checkpoint.display(),
            a.epochs
        );
        if !a.no_baseline {
            let scratch = eval::finetune::finetune(
                &cfg,
                &splits,
                a.epochs,
                None,
                &dir.join("random_init"),
                true,
            )?;
            println!(
                "same training from random init: test top-1 {scratch:.2} % ({:+.2} points for pretraining)",
                tuned - scratch
            );
        }
        return Ok(());
    }
    if let EvalMode::Neighbors = a.mode {
        return neighbors(&a, &cfg, &splits, &backbone);
    }
    if let EvalMode::Layers = a.mode {
        let test = splits
            .test
            .as_ref()
            .context("layer probes need a test split")?;
        if a.layer_dims == 0 {
            bail!("--layer-dims must be at least 1");
        }
        let rows =
            eval::layers::probe_layers(&backbone, &splits.train, test, &cfg.views, a.layer_dims)?;
        println!("| stage | pooled grid | dims | linear probe top-1 |\n|---|---:|---:|---:|");
        for r in &rows {
            println!(
                "| {} | {g}x{g} | {} | {:.2} % |",
                r.name,
                r.dim,
                r.accuracy,
                g = r.grid
            );
        }
        let plot = a
            .plot
            .clone()
            .unwrap_or_else(|| a.checkpoint.with_file_name("layers.png"));
        let labels: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
        let pts: Vec<(f64, f64)> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (i as f64, r.accuracy))
            .collect();
        selfsup::plot::line_chart(
            &plot,
            &format!("linear probe of each stage ({})", cfg.method),
            ("stage", "top-1 (%)"),
            &[(cfg.method.clone(), pts)],
            Some(&labels),
        )?;
        println!("\nplot: {}", plot.display());
        return Ok(());
    }
    let f = eval::labeled_features(&backbone, &splits, &cfg.views, cfg.readout())
        .with_context(|| format!("evaluating on '{}'", cfg.data))?;
    match a.mode {
        EvalMode::Knn => {
            let ks = if a.k.is_empty() {
                vec![20, 200]
            } else {
                a.k.clone()
            };
            for (k, p) in ks.iter().zip(knn::predict_many(
                &f.train,
                &f.train_labels,
                &f.test,
                &ks,
                0.07,
            )) {
                println!(
                    "k-NN (k={k}, T=0.07) top-1: {:.2} %",
                    eval::accuracy(&p, &f.test_labels)
                );
            }
        }
        EvalMode::Linear => {
            let r = linear::fit_predict(
                &f.train,
                &f.train_labels,
                &f.test,
                &linear::LinearProbeConfig::default(),
            );
            println!(
                "linear probe top-1: {:.2} % (weight decay {})",
                eval::accuracy(&r.predictions, &f.test_labels),
                r.weight_decay
            );
        }
        EvalMode::Layers | EvalMode::Neighbors | EvalMode::Finetune => {
            unreachable!("handled above")
        }
        EvalMode::Lowshot => {
            if a.seeds == 0 || a.shots.iter().any(|&k| k == 0) || !(a.cost > 0.0) {
                bail!("--seeds and every --shots value must be at least 1, --cost positive");
            }
            let rows = eval::lowshot::run(
                &f.train,
                &f.train_labels,
                &f.test,
                &f.test_labels,
                &eval::lowshot::LowShotConfig {
                    shots: a.shots.clone(),
                    seeds: a.seeds,
                    model: a.model,
                    cost: a.cost,
                },
            );
            println!("| images per class | top-1 mean | std | draws |\n|---:|---:|---:|---:|");
            for r in &rows {
                println!(
                    "| {} | {:.2} % | {:.2} | {} |",
                    r.k,
                    r.mean,
                    r.std,
                    r.accuracies.len()
                );
            }
        }
        EvalMode::Svm => {
            let mut svm_cfg = eval::svm::SvmConfig::default();
            if !a.costs.is_empty() {
                if a.costs.iter().any(|&c| !(c > 0.0 && c.is_finite())) {
                    bail!("--costs must be positive numbers");
                }
                svm_cfg.costs = a.costs.clone();
            }
            let (train_targets, test_targets) = match (&a.train_labels, &a.test_labels) {
                (Some(tr), Some(te)) => {
                    let ltr = eval::svm::read_label_file(tr, f.train.n)?;
                    let lte = eval::svm::read_label_file(te, f.test.n)?;
                    let k = ltr.iter().chain(&lte).flatten().max().map_or(0, |&m| m + 1);
                    (
                        eval::svm::multi_label_targets(&ltr, k),
                        eval::svm::multi_label_targets(&lte, k),
                    )
                }
                _ => {
                    let k = f
                        .train_labels
                        .iter()
                        .chain(&f.test_labels)
                        .max()
                        .map_or(0, |&m| m as usize + 1);
                    (
                        eval::svm::one_vs_rest(&f.train_labels, k),
                        eval::svm::one_vs_rest(&f.test_labels, k),
                    )
                }
            };
            let start = std::time::Instant::now();
            let r = eval::svm::voc07(&f.train, &train_targets, &f.test, &test_targets, &svm_cfg);
            println!("| class | best cost | 3-fold CV AP | test AP |\n|---|---:|---:|---:|");
            for c in &r.classes {
                let name = splits
                    .train
                    .class_names
                    .get(c.class)
                    .cloned()
                    .unwrap_or_else(|| c.class.to_string());
                let cv = c.cv_ap.iter().cloned().fold(f64::MIN, f64::max);
                let test = c
                    .test_ap
                    .map_or("-".to_string(), |v| format!("{:.2}", 100.0 * v));
                println!("| {name} | {} | {:.2} | {test} |", c.best_cost, 100.0 * cv);
            }
            println!(
                "\nSVM (VOC07 protocol) mAP: {:.2} % over {} classes, {} costs, in {:.1} s",
                r.map,
                r.classes.len(),
                svm_cfg.costs.len(),
                start.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

/// Where `eval neighbors` writes its pictures (created): `--plot`, or beside the checkpoint.
fn neighbors_dir(a: &EvalArgs) -> Result<PathBuf> {
    let dir = a.plot.clone().unwrap_or_else(|| {
        a.checkpoint
            .parent()
            .unwrap_or(Path::new("."))
            .to_path_buf()
    });
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn neighbors(a: &EvalArgs, cfg: &RunConfig, splits: &Splits, backbone: &Backbone) -> Result<()> {
    use eval::neighbors;
    let test = splits
        .test
        .as_ref()
        .context("neighbour pictures need a test split")?;
    if a.queries == 0 || a.neighbors == 0 {
        bail!("--queries and --neighbors must be at least 1");
    }
    let ftr = eval::extract_with(backbone, &splits.train, &cfg.views, cfg.readout(), 500);
    let fte = eval::extract_with(backbone, test, &cfg.views, cfg.readout(), 500);
    // Video: queries spread evenly over the held-out frames, and no label frames (a clip's
    // label only names the clip, and held-out clips are not among the training clips).
    if !test.clips.is_empty() {
        let n = a.queries.min(test.len());
        let queries: Vec<usize> = (0..n).map(|i| i * test.len() / n).collect();
        let nn: Vec<Vec<usize>> = queries
            .iter()
            .map(|&q| neighbors::nearest(&ftr, &fte, q, a.neighbors))
            .collect();
        let grid = neighbors_dir(a)?.join("neighbors.png");
        let unlabeled = |d: &selfsup::data::Dataset| selfsup::data::Dataset {
            labels: None,
            ..d.clone()
        };
        neighbors::save_grid(
            &grid,
            &unlabeled(test),
            &queries,
            &unlabeled(&splits.train),
            &nn,
        )?;
        let names = &splits.train.class_names;
        let labels = splits.train.labels.as_deref().unwrap_or(&[]);
        let mut from = vec![0usize; names.len()];
        for i in nn.iter().flatten() {
            if let Some(&l) = labels.get(*i) {
                from[l as usize] += 1;
            }
        }
        let counts: Vec<String> = names
            .iter()
            .zip(&from)
            .map(|(n, c)| format!("{n} {c}"))
            .collect();
        println!("neighbours by training clip: {}", counts.join(", "));
        println!("neighbour grid: {}", grid.display());
        return Ok(());
    }
    // One query per class first (when labelled), then the following test images.
    let mut queries: Vec<usize> = Vec::new();
    if let Some(l) = &test.labels {
        let classes = l.iter().copied().max().map_or(0, |m| m + 1);
        for c in 0..classes {
            if let Some(i) = l.iter().position(|&x| x == c) {
                queries.push(i);
            }
        }
    }
    queries.truncate(a.queries);
    let mut next = 0;
    while queries.len() < a.queries.min(test.len()) {
        if !queries.contains(&next) {
            queries.push(next);
        }
        next += 1;
    }
    let nn: Vec<Vec<usize>> = queries
        .iter()
        .map(|&q| neighbors::nearest(&ftr, &fte, q, a.neighbors))
        .collect();
    let dir = neighbors_dir(a)?;
    let grid = dir.join("neighbors.png");
    neighbors::save_grid(&grid, test, &queries, &splits.train, &nn)?;
    if let (Some(lt), Some(ltr)) = (&test.labels, &splits.train.labels) {
        let agree: usize = queries
            .iter()
            .zip(&nn)
            .map(|(&q, n)| n.iter().filter(|&&i| ltr[i] == lt[q]).count())
            .sum();
        println!(
            "neighbours with the query's label: {agree} of {}",
            queries.len() * a.neighbors
        );
    }
    println!("neighbour grid: {}", grid.display());
    if a.tsne_points > 0 {
        let n = a.tsne_points.min(fte.n);
        let sub = eval::Features {
            data: fte.data[..n * fte.dim].to_vec(),
            n,
            dim: fte.dim,
        };
        let start = std::time::Instant::now();
        let pts = neighbors::tsne(&sub, 30.0, 500, cfg.seed);
        let labels: Vec<u32> = test.labels.as_ref().map_or(vec![0; n], |l| l[..n].to_vec());
        let map = dir.join("tsne.png");
        neighbors::save_map(
            &map,
            &format!("t-SNE of {n} test features ({})", cfg.method),
            &pts,
            &labels,
            &test.class_names,
        )?;
        println!(
            "t-SNE map: {} ({:.0} s)",
            map.display(),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn embed(a: EmbedArgs) -> Result<()> {
    let (cfg, splits, backbone) = load_checkpoint(&a.checkpoint, a.data)?;
    let data = match a.split {
        Split::Train => &splits.train,
        Split::Test => splits
            .test
            .as_ref()
            .context("the data has no test split; use --split train")?,
    };
    let f = eval::extract_with(&backbone, data, &cfg.views, cfg.readout(), 500);
    selfsup::eval::write_npy_f32(&a.out, &f.data, &[f.n as u64, f.dim as u64])?;
    if let Some(l) = &data.labels {
        let lp = a.out.with_extension("labels.npy");
        let l: Vec<i64> = l.iter().map(|&v| v as i64).collect();
        selfsup::eval::write_npy_i64(&lp, &l)?;
    }
    println!("wrote {} x {} features to {}", f.n, f.dim, a.out.display());
    Ok(())
}

fn bench(a: BenchArgs) -> Result<()> {
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

fn compare(a: CompareArgs) -> Result<()> {
    let mut cfg = selfsup::demo::demo_config();
    if let Some(d) = a.data {
        cfg.data = d;
    }
    let mut splits = load_data(&cfg)?;
    if let Some(n) = a.train_limit {
        splits.train = splits.train.take(n);
    }
    cfg.fit_views_to(&splits.train);
    if !(a.budget_s > 0.0) {
        bail!("--budget-s must be positive");
    }
    let table = selfsup::compare::compare(&cfg, &splits, &a.methods, a.budget_s, &a.out, !a.quiet)?;
    println!(
        "\n{table}\nfiles: {}/table.md, results.json, knn_vs_time.png",
        a.out.display()
    );
    Ok(())
}

fn demo(a: DemoArgs) -> Result<()> {
    let mut cfg = selfsup::demo::demo_config();
    if let Some(e) = a.epochs {
        cfg.epochs = e;
    }
    if let Some(d) = a.data {
        cfg.data = d;
    }
    let splits = load_data(&cfg)?;
    cfg.fit_views_to(&splits.train);
    println!(
        "selfsup demo: SimCLR, {} backbone, {} epochs on {} ({} train / {} test images)",
        format!("{:?}", cfg.backbone.kind).to_lowercase(),
        cfg.epochs,
        cfg.data,
        splits.train.len(),
        splits.test.as_ref().map_or(0, |t| t.len())
    );
    let r = selfsup::demo::run(&cfg, &splits, a.out.clone(), !a.quiet)?;
    println!(
        "pretraining: {:.0} s, {:.0} img/s, loss {:.3} -> {:.3}\n",
        r.train_seconds, r.images_per_s, r.first_loss, r.last_loss
    );
    print!("{}", r.table());
    println!(
        "\nlinear probe gain over random init: {:+.1} points; run folder: {}",
        r.pretrained.linear - r.random_init.linear,
        a.out.display()
    );
    Ok(())
}
