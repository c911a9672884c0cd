//! `selfsup compare`: every method with the same backbone, data and wall-clock budget.

use anyhow::{Result, bail};
use clap::Args;
use selfsup::data::DataSource;
use std::path::PathBuf;

#[derive(Args)]
/// Flags of `compare`.
pub struct CompareArgs {
    /// Folder for the runs, `table.md`, `results.json` and `knn_vs_time.png`.
    #[arg(long, default_value = "runs/compare")]
    pub out: PathBuf,
    /// Training seconds per method.
    #[arg(long, default_value_t = 120.0)]
    pub budget_s: f64,
    /// Runs of each method, with seeds 0, 1, ...: the table gives mean ± sd over them (one
    /// seed: the 95 % interval of the test set).
    #[arg(long, default_value_t = 1)]
    pub seeds: usize,
    /// Only these methods (comma-separated label prefixes: simclr, moco (and mocov3), npid, pirl, cpc, swav,
    /// byol, simsiam, barlow, vicreg, rotation, jigsaw, relative, inpainting, multi,
    /// autoencoder, vae, mae, supervised).
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<String>,
    /// Data source (needs a labeled test split; default: the embedded subset).
    #[arg(long)]
    data: Option<DataSource>,
    /// Use only the first N training images.
    #[arg(long)]
    train_limit: Option<usize>,
    /// Hide the progress bars.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    scoring: super::flags::ScoringFlags,
}

/// Runs the comparison and prints its table.
pub fn run(a: CompareArgs) -> Result<()> {
    let mut cfg = selfsup::demo::demo_config();
    if let Some(d) = a.data {
        cfg.data = d;
    }
    // A method's own settings (`byol.momentum=0.9`) go to that method's runs only (in
    // `compare::compare`); the rest also shape the base config the data is loaded with.
    let mut base_flags = a.scoring.clone();
    base_flags
        .set
        .retain(|s| selfsup::compare::method_of_setting(s).is_none());
    base_flags.apply_to_config(&mut cfg)?;
    let mut splits = super::load_data(&cfg)?;
    if let Some(n) = a.train_limit {
        splits.train = splits.train.take(n);
    }
    a.scoring.apply_to_splits(&mut splits);
    cfg.fit_views_to(&splits.train);
    if !(a.budget_s > 0.0) {
        bail!("--budget-s must be positive");
    }
    if a.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let table = selfsup::compare::compare(
        &cfg,
        &splits,
        &a.methods,
        &a.scoring.set,
        a.budget_s,
        a.seeds,
        &a.out,
        !a.quiet,
    )?;
    println!(
        "\n{table}\nfiles: {}/table.md, results.json, knn_vs_time.png",
        a.out.display()
    );
    Ok(())
}
