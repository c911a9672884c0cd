//! `selfsup pretrain` and `selfsup train-supervised`: trains a backbone and writes a run
//! folder.

use super::flags::RunFlags;
use anyhow::Result;
use clap::Args;
use selfsup::train::{self, TrainOptions};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args)]
/// Flags of `pretrain`.
pub struct PretrainArgs {
    #[command(flatten)]
    pub run: RunFlags,
    /// Run folder (config.toml, metrics.jsonl, checkpoints, report.html).
    #[arg(long, default_value = "runs/pretrain")]
    pub out: PathBuf,
    /// Continue from the run folder's last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
    /// At the end, measure held-out k-NN accuracy (of every snapshot and the last model) and
    /// draw neighbours and a t-SNE map into the report (needs a labeled test split).
    #[arg(long)]
    eval: bool,
}

/// Pretrains, then prints the run's summary and held-out pretext scores.
pub fn run(a: PretrainArgs) -> Result<()> {
    let mut cfg = a.run.resolve()?;
    let mut splits = super::load_data(&cfg)?;
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
    let held_out = if a.eval {
        Some(super::report::evaluate(&a.out)?)
    } else {
        None
    };
    let page = selfsup::report::write_html(&a.out, held_out.as_ref())?;
    println!("report: {}", page.display());
    Ok(())
}
