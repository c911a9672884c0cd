//! `selfsup eval`: fits k-NN, a linear probe, VOC07 SVMs, low-shot classifiers or layer
//! probes on a checkpoint's frozen features, fine-tunes it, or draws its neighbours.

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use selfsup::data::DataSource;
use selfsup::eval::{self, knn, linear};
use selfsup::nn::Backbone;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, ValueEnum)]
/// What `eval` fits on the frozen features.
pub enum EvalMode {
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
/// Flags of `eval`.
pub struct EvalArgs {
    /// What to fit on the frozen features.
    pub mode: EvalMode,
    /// Checkpoint (`last.safetensors` of a run folder); its config.toml is read from beside it.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Labeled data with a test split (default: the checkpoint run's data).
    #[arg(long)]
    data: Option<DataSource>,
    #[command(flatten)]
    checkpoint_flags: super::flags::CheckpointFlags,
    /// Score the same backbone at random initialization (seeded by the run's seed) instead of
    /// the checkpoint's weights: the baseline a method must beat.
    #[arg(long, conflicts_with = "pixels")]
    random_init: bool,
    /// Score the raw pixels (normalized, flattened) instead of any network's features.
    #[arg(long)]
    pixels: bool,
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
    pub train_labels: Option<PathBuf>,
    /// SVM: multi-label classes of the test images.
    #[arg(long, requires = "train_labels")]
    pub test_labels: Option<PathBuf>,
    /// SVM costs to sweep (comma-separated; default 0.01,0.1,1,2,5,10,15,20,50,100,1000).
    #[arg(long, value_delimiter = ',')]
    pub costs: Vec<f64>,
    /// Low-shot: labelled images per class (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32,64")]
    pub shots: Vec<usize>,
    /// Low-shot: draws per k.
    #[arg(long, default_value_t = 5)]
    pub seeds: usize,
    /// Low-shot: the classifier.
    #[arg(long, value_enum, default_value = "svm")]
    pub model: eval::lowshot::LowShotModel,
    /// Low-shot: the SVM cost.
    #[arg(long, default_value_t = 1.0)]
    pub cost: f64,
    /// Linear: the L2 penalties to choose from on a held-out tenth of the train features
    /// (comma-separated; default: the run's `probe.weight_decays`, 0,1e-4,1e-3 unless set).
    #[arg(long, value_delimiter = ',')]
    pub weight_decays: Vec<f64>,
    /// Linear: passes over the train features (0 = about 600,000 rows' worth, at least 2,000
    /// steps).
    #[arg(long, default_value_t = 0)]
    pub probe_epochs: usize,
    /// Layers: each stage pooled to about this many values.
    #[arg(long, default_value_t = 2048)]
    pub layer_dims: usize,
    /// Layers, neighbors: where to save the picture (default: beside the checkpoint, as
    /// `layers.png`, or `neighbors.png` and `tsne.png`).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Neighbors: query images (the first test image of each class, then the next ones).
    #[arg(long, default_value_t = 10)]
    pub queries: usize,
    /// Neighbors: neighbours shown per query.
    #[arg(long, default_value_t = 8)]
    pub neighbors: usize,
    /// Neighbors: test images in the t-SNE map (0 skips it).
    #[arg(long, default_value_t = 1500)]
    pub tsne_points: usize,
    /// Finetune: epochs of supervised training.
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// Finetune: skip the random-init run.
    #[arg(long)]
    no_baseline: bool,
}

/// Runs the chosen evaluation and prints its result.
pub fn run(a: EvalArgs) -> Result<()> {
    let (cfg, mut splits, mut backbone) =
        super::load_checkpoint(&a.checkpoint, a.data.clone(), &a.checkpoint_flags)?;
    if let Some(n) = a.train_limit {
        splits.train = splits.train.take(n);
    }
    let on_features = !matches!(
        a.mode,
        EvalMode::Finetune | EvalMode::Neighbors | EvalMode::Layers
    );
    if a.pixels && !on_features {
        bail!("--pixels applies to the modes that score features (knn, linear, svm, lowshot)");
    }
    if a.random_init && matches!(a.mode, EvalMode::Finetune) {
        bail!("finetune runs its random-init baseline itself (unless --no-baseline)");
    }
    if a.random_init {
        let device = selfsup::device::parse(&cfg.device)?;
        backbone = Backbone::random_init(&cfg.backbone, splits.train.channels, cfg.seed, &device);
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
        return super::eval_neighbors::run(&a, &cfg, &splits, &backbone);
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
    let f = eval::labeled_features(
        &backbone,
        &splits,
        &cfg.views,
        if a.pixels {
            eval::Readout::Pixels
        } else {
            selfsup::methods::readout(&cfg)
        },
    )
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
                &linear::LinearProbeConfig {
                    weight_decays: if a.weight_decays.is_empty() {
                        cfg.probe.weight_decays.clone()
                    } else {
                        a.weight_decays.clone()
                    },
                    epochs: a.probe_epochs,
                    ..Default::default()
                },
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
