//! `selfsup demo`: pretrains SimCLR on the embedded data, then compares the pretrained and
//! random-init backbones.

use anyhow::Result;
use clap::Args;
use selfsup::data::DataSource;
use std::path::PathBuf;

#[derive(Args)]
/// Flags of `demo`.
pub struct DemoArgs {
    /// Run folder.
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// Pretraining epochs (the default fits in a few minutes on 2 cores).
    #[arg(long)]
    epochs: Option<usize>,
    /// Data source to use instead of the embedded subset (needs a labeled test split).
    #[arg(long)]
    data: Option<DataSource>,
    /// Also save the backbone after every epoch and score it (k-NN and linear probe): the
    /// accuracy-against-time curve, in `curve.json` and `accuracy_vs_time.png`.
    #[arg(long)]
    curve: bool,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    scoring: super::flags::ScoringFlags,
}

/// Runs the demo and prints its table.
pub fn run(a: DemoArgs) -> Result<()> {
    let mut cfg = selfsup::demo::demo_config();
    if let Some(e) = a.epochs {
        cfg.epochs = e;
    }
    if let Some(d) = a.data {
        cfg.data = d;
    }
    a.scoring.apply_to_config(&mut cfg)?;
    let mut splits = super::load_data(&cfg)?;
    a.scoring.apply_to_splits(&mut splits);
    let size_set = a.scoring.sets("views.size");
    selfsup::demo::fit_views(&mut cfg, &splits.train, size_set);
    println!(
        "selfsup demo: SimCLR, {} backbone, {} epochs on {} ({} train / {} test images, {} px views)",
        format!("{:?}", cfg.backbone.kind).to_lowercase(),
        cfg.epochs,
        cfg.data,
        splits.train.len(),
        splits.test.as_ref().map_or(0, |t| t.len()),
        cfg.views.size
    );
    let r = selfsup::demo::run(&cfg, &splits, a.out.clone(), !a.quiet, a.curve)?;
    println!(
        "pretraining: {:.0} s, {:.0} img/s, loss {:.3} -> {:.3}\n",
        r.train_seconds, r.images_per_s, r.first_loss, r.last_loss
    );
    print!("{}", r.table());
    if !r.curve.is_empty() {
        println!("\nafter each epoch (epoch, seconds, k-NN 20, linear):");
        for p in &r.curve {
            println!(
                "  {:>4.0} {:>6.0} s  {:>5.1}  {:>5.1}",
                p.epoch, p.seconds, p.scores.knn20, p.scores.linear
            );
        }
    }
    println!(
        "\nlinear probe gain over random init: {:+.1} points; run folder: {}",
        r.pretrained.linear - r.random_init.linear,
        a.out.display()
    );
    Ok(())
}
