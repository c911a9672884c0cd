//! The commands of the `selfsup` binary, one module each; `main.rs` parses and dispatches.
//! Errors are `anyhow` with context here, at the edge; the library's are typed.

pub mod bench;
pub mod compare;
pub mod demo;
pub mod dist_check;
pub mod embed;
pub mod eval;
pub mod eval_neighbors;
pub mod flags;
pub mod list;
pub mod neighbors;
pub mod pretrain;
pub mod report;

use anyhow::{Context, Result};
use selfsup::config::RunConfig;
use selfsup::data::{DataSource, Splits};
use selfsup::nn::Backbone;
use std::path::Path;

/// Loads the run's data, naming the source in errors.
pub fn load_data(cfg: &RunConfig) -> Result<Splits> {
    cfg.data
        .load_with(&cfg.load_options())
        .with_context(|| format!("loading data '{}'", cfg.data))
}

/// Reads the run config beside a checkpoint (or the defaults) and its backbone; `data`
/// replaces the run's data source, and `validation` scores on the validation split (a run
/// pretrained with `--validation` is always scored on it); `--set` assignments are applied
/// last (`features.grid=2` reads other features).
pub fn load_checkpoint(
    path: &Path,
    data: Option<DataSource>,
    flags: &flags::CheckpointFlags,
) -> Result<(RunConfig, Splits, Backbone)> {
    let cfg_path = path.parent().unwrap_or(Path::new(".")).join("config.toml");
    let mut cfg = if cfg_path.exists() {
        RunConfig::from_toml_file(&cfg_path)?
    } else {
        RunConfig::default()
    };
    if let Some(d) = data {
        cfg.data = d;
    }
    cfg.validation |= flags.validation;
    for s in &flags.set {
        cfg.set(s)?;
    }
    let mut splits = load_data(&cfg)?;
    if selfsup::methods::pretext::multi_task::input_channels(&cfg, splits.train.channels)
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
