//! `selfsup report`: (re)writes a run folder's `report.html`; with `--eval`, first measures
//! the held-out part (k-NN accuracy of every snapshot and of the last model, a neighbour grid
//! and a t-SNE map of test features). `pretrain --eval` does the same at the end of a run.

use anyhow::{Context, Result, bail};
use clap::Args;
use selfsup::eval::{self, knn, neighbors};
use selfsup::report::HeldOut;
use std::path::{Path, PathBuf};

#[derive(Args)]
/// Flags of `report`.
pub struct ReportArgs {
    /// Run folder (holds `config.toml`, `metrics.jsonl`, `last.safetensors`).
    #[arg(long)]
    run: PathBuf,
    /// Also measure held-out k-NN accuracy over time and draw neighbours and a t-SNE map
    /// (needs a labeled test split).
    #[arg(long)]
    eval: bool,
}

/// Writes the report (after the held-out measurements with `--eval`).
pub fn run(a: ReportArgs) -> Result<()> {
    let held_out = if a.eval {
        Some(evaluate(&a.run)?)
    } else {
        None
    };
    let page = selfsup::report::write_html(&a.run, held_out.as_ref())?;
    println!("report: {}", page.display());
    Ok(())
}

/// Test images scored at each snapshot (the first ones of the test split).
const SCORED: usize = 2000;
/// Points of the t-SNE map.
const MAPPED: usize = 1000;

/// The last logged step and training seconds of a run folder.
fn last_logged(dir: &Path) -> (u64, f64) {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap_or_default();
    text.lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map_or((0, 0.0), |v| {
            (
                v["step"].as_u64().unwrap_or(0),
                v["elapsed_s"].as_f64().unwrap_or(0.0),
            )
        })
}

/// k-NN accuracy of every snapshot and of `last.safetensors` on the held-out split, a
/// neighbour grid (`neighbors.png`) and a t-SNE map (`tsne.png`) in the run folder.
pub fn evaluate(dir: &Path) -> Result<HeldOut> {
    let last = dir.join(selfsup::train::MODEL_CKPT);
    let flags = super::flags::CheckpointFlags {
        validation: false,
        set: Vec::new(),
    };
    let (cfg, splits, backbone) = super::load_checkpoint(&last, None, &flags)?;
    let test = splits
        .test
        .as_ref()
        .context("the report's held-out part needs a test split")?;
    let (Some(train_labels), Some(test_labels)) = (&splits.train.labels, &test.labels) else {
        bail!("the report's held-out part needs labels (class sub-folders or a labeled format)");
    };
    if !test.clips.is_empty() {
        bail!("the report's held-out part is for still images, not video clips");
    }
    let scored = test.take(SCORED);
    let readout = selfsup::methods::readout(&cfg);
    let knn_cfg = knn::KnnConfig::default();
    let score = |b: &selfsup::nn::Backbone| {
        let tr = eval::extract_with(b, &splits.train, &cfg.views, readout, 500);
        let te = eval::extract_with(b, &scored, &cfg.views, readout, 500);
        let p = knn::predict(&tr, train_labels, &te, knn_cfg);
        let acc = eval::accuracy(&p, &test_labels[..scored.len()]);
        (tr, te, acc)
    };
    let mut over_time = Vec::new();
    if dir.join("snapshots.jsonl").exists() {
        for s in selfsup::train::read_snapshots(dir)? {
            let b = selfsup::train::checkpoint::load_backbone(
                &dir.join(&s.file),
                &cfg.backbone,
                splits.train.channels,
                &selfsup::device::of(&backbone),
            )?;
            over_time.push((s.step, s.elapsed_s, score(&b).2));
        }
    }
    let (step, seconds) = last_logged(dir);
    // The last model's features serve the neighbour grid and the map too.
    let (train_features, test_features, acc) = score(&backbone);
    if over_time.last().is_none_or(|p| p.0 < step) {
        over_time.push((step, seconds, acc));
    }
    // One query per class, its 8 nearest training images.
    let classes = test_labels.iter().copied().max().map_or(0, |m| m + 1);
    let queries: Vec<usize> = (0..classes)
        .filter_map(|c| test_labels[..scored.len()].iter().position(|&l| l == c))
        .collect();
    let nn: Vec<Vec<usize>> = queries
        .iter()
        .map(|&q| neighbors::nearest(&train_features, &test_features, q, 8))
        .collect();
    neighbors::save_grid(
        &dir.join("neighbors.png"),
        &scored,
        &queries,
        &splits.train,
        &nn,
    )?;
    let n = MAPPED.min(test_features.n);
    let sub = eval::Features {
        data: test_features.data[..n * test_features.dim].to_vec(),
        n,
        dim: test_features.dim,
    };
    let points = neighbors::tsne(&sub, 30.0, 500, cfg.seed);
    neighbors::save_map(
        &dir.join("tsne.png"),
        &format!("t-SNE of {n} test features ({})", cfg.method),
        &points,
        &test_labels[..n],
        &test.class_names,
    )?;
    Ok(HeldOut {
        what: format!(
            "weighted k-NN (k={}, temperature {}) on the first {} test images, fitted on the {} \
             training images; one point per snapshot and for the last model",
            knn_cfg.k,
            knn_cfg.temperature,
            scored.len(),
            splits.train.len()
        ),
        over_time,
    })
}
