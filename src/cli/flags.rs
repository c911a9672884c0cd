//! Pretraining flags and how they become a run config: each flag is the config field named
//! in its `serde` key (`--lr` is `schedule.lr`), applied through [`RunConfig::set_value`] (the `--set` machinery), so
//! the mapping is declared once, beside the flag. A `{method}` key is the chosen method's own
//! setting (`--temperature` is `simclr.temperature` for SimCLR); a method-specific key
//! (`pirl.transform`) is refused, with the flag named, when the method is another.

use anyhow::{Context, Result};
use clap::Args;
use selfsup::config::RunConfig;
use selfsup::data::DataSource;
use selfsup::nn::BackboneKind;
use serde::Serialize;
use std::path::PathBuf;

/// Flags shared by pretraining; each overrides the same field of `--config`.
#[derive(Args, Serialize)]
pub struct RunFlags {
    /// TOML config file; flags override its fields.
    #[arg(long, conflicts_with = "recipe")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Start from a shipped recipe (`selfsup recipes` lists them, e.g. small-grey/simclr);
    /// flags override its fields.
    #[arg(long)]
    #[serde(skip)]
    pub recipe: Option<String>,
    /// Method (see `selfsup methods`).
    #[arg(long)]
    #[serde(rename = "method", skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Data source: embedded, idx:PATH, cifar10:PATH, cifar100:PATH or folder:PATH.
    #[arg(long)]
    #[serde(rename = "data", skip_serializing_if = "Option::is_none")]
    pub data: Option<DataSource>,
    /// Backbone: convnet, resnet18 or resnet50.
    #[arg(long)]
    #[serde(rename = "backbone.kind", skip_serializing_if = "Option::is_none")]
    pub backbone: Option<BackboneKind>,
    /// Use the standard ImageNet stem for ResNets instead of the CIFAR stem.
    #[arg(long)]
    #[serde(
        rename = "backbone.cifar_stem",
        skip_serializing_if = "is_false",
        serialize_with = "negated"
    )]
    pub imagenet_stem: bool,
    /// Training epochs.
    #[arg(long)]
    #[serde(rename = "epochs", skip_serializing_if = "Option::is_none")]
    pub epochs: Option<usize>,
    /// Images per batch.
    #[arg(long)]
    #[serde(rename = "batch_size", skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    #[serde(rename = "schedule.lr", skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Warm-up epochs.
    #[arg(long)]
    #[serde(
        rename = "schedule.warmup_epochs",
        skip_serializing_if = "Option::is_none"
    )]
    pub warmup_epochs: Option<f64>,
    /// Optimizer: sgd, lars or adamw.
    #[arg(long)]
    #[serde(rename = "optim.kind", skip_serializing_if = "Option::is_none")]
    pub optimizer: Option<String>,
    /// Weight decay.
    #[arg(long)]
    #[serde(rename = "optim.weight_decay", skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
    /// Temperature of the method's loss (`<method>.temperature`: SimCLR, MoCo, NPID, PIRL,
    /// SwAV, ...; refused by methods without one).
    #[arg(long)]
    #[serde(
        rename = "{method}.temperature",
        skip_serializing_if = "Option::is_none"
    )]
    pub temperature: Option<f32>,
    /// Side in pixels of the images of a `folder:` (or `av:`) source: each file is
    /// centre-cropped to its largest square and resized (bilinear) to this side when read;
    /// training views are then cut from these (default 64; `folder_side`).
    #[arg(long)]
    #[serde(rename = "folder_side", skip_serializing_if = "Option::is_none")]
    pub image_size: Option<usize>,
    /// View size in pixels (default: the images' size).
    #[arg(long)]
    #[serde(rename = "views.size", skip_serializing_if = "Option::is_none")]
    pub view_size: Option<usize>,
    /// Smallest crop area fraction of RandomResizedCrop.
    #[arg(long)]
    #[serde(rename = "views.crop_scale.0", skip_serializing_if = "Option::is_none")]
    pub crop_min: Option<f32>,
    /// Seed of every random choice.
    #[arg(long)]
    #[serde(rename = "seed", skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Device: cpu, tch (feature `tch`), cuda:N (feature `cuda`), vulkan[:N|:cpu] (feature
    /// `vulkan`) or wgpu[:N|:cpu] (feature `wgpu`).
    #[arg(long)]
    #[serde(rename = "device", skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Use only the first N training images.
    #[arg(long)]
    #[serde(rename = "train_limit", skip_serializing_if = "Option::is_none")]
    pub train_limit: Option<usize>,
    /// Stop after this many steps (the schedule still spans all epochs).
    #[arg(long)]
    #[serde(rename = "stop_after_steps", skip_serializing_if = "Option::is_none")]
    pub stop_after_steps: Option<u64>,
    /// PIRL's transform: jigsaw or rotation (`pirl.transform`; only with `--method pirl`).
    #[arg(long, value_enum)]
    #[serde(rename = "pirl.transform", skip_serializing_if = "Option::is_none")]
    pub pirl_transform: Option<selfsup::methods::contrastive::pirl::PirlTransform>,
    /// Tasks of `--method multi`, comma-separated (e.g. `relative_position,rotation`;
    /// `multi.tasks`).
    #[arg(long, value_enum, value_delimiter = ',')]
    #[serde(rename = "multi.tasks", skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<selfsup::methods::pretext::multi_task::TaskKind>,
    /// Loss weight of each task of `--tasks`, comma-separated (default: all 1).
    #[arg(long, value_delimiter = ',')]
    #[serde(rename = "multi.weights", skip_serializing_if = "Vec::is_empty")]
    pub task_weights: Vec<f32>,
    /// Start the backbone from this checkpoint (any method's `last.safetensors`).
    #[arg(long)]
    #[serde(rename = "init_from", skip_serializing_if = "Option::is_none")]
    pub init_from: Option<PathBuf>,
    /// Stop on the first unreadable image of a folder (default: skip it with a warning).
    #[arg(long)]
    #[serde(rename = "strict_data", skip_serializing_if = "is_false")]
    pub strict: bool,
    /// Hold out a fixed fifth of the train split and score on it, not on the test split
    /// (for tuning a recipe; the test split is not read).
    #[arg(long)]
    #[serde(rename = "validation", skip_serializing_if = "is_false")]
    pub validation: bool,
    /// Any config field by its dotted path, e.g. `--set npid.loss=infonce` (repeatable;
    /// applied after the other flags).
    #[arg(long, value_name = "KEY=VALUE")]
    #[serde(skip)]
    pub set: Vec<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn negated<S: serde::Serializer>(b: &bool, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_bool(!*b)
}

impl RunFlags {
    /// The config these flags describe: `--config` (or the defaults), each given flag, then
    /// each `--set`; checked and completed by the method ([`selfsup::methods::resolve`]).
    pub fn resolve(&self) -> Result<RunConfig> {
        let mut c = match (&self.config, &self.recipe) {
            (Some(p), _) => RunConfig::from_toml_file(p)?,
            (None, Some(r)) => selfsup::recipes::load(r)?,
            // The supervised baseline starts from supervised views and optimizer.
            (None, None) if self.method.as_deref() == Some("supervised") => {
                selfsup::eval::finetune::supervised_config(&RunConfig::default(), 10, None)
            }
            (None, None) => RunConfig::default(),
        };
        let flags = toml::Table::try_from(self).context("reading the flags")?;
        // The method first: the other flags may be its settings.
        let mut flags: Vec<(String, toml::Value)> = flags.into_iter().collect();
        flags.sort_by_key(|(k, _)| k != "method");
        for (key, value) in flags {
            let key = key.replace("{method}", &c.method);
            // An f32 flag reads back as its shortest decimal (0.1, not 0.10000000149011612).
            let shown = match value {
                toml::Value::Float(f) if (f as f32) as f64 == f => format!("{}", f as f32),
                _ => value.to_string(),
            };
            let flag = format!("flag setting {key} = {shown}");
            c.set_value(&key, value.clone())
                .map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
            if key.split('.').next() == Some(c.method.as_str()) {
                // A method setting: the method reads it now, so the error names the flag.
                let info = selfsup::methods::find(&c.method)?;
                (info.settings)(&c).with_context(|| flag.clone())?;
            }
        }
        for a in &self.set {
            c.set(a)?;
        }
        selfsup::methods::resolve(&mut c)?;
        Ok(c)
    }
}

/// The flags of the commands that read a checkpoint (`eval`, `embed`): which split is
/// scored, and edits of the checkpoint run's config.
#[derive(Args)]
pub struct CheckpointFlags {
    /// Score (embed) the validation split, a fixed fifth of the train split, instead of the
    /// test split, and fit on the other four fifths: for choosing settings without reading
    /// the test split.
    #[arg(long)]
    pub validation: bool,
    /// A config field of the checkpoint's run, by its dotted path, e.g. `--set
    /// features.grid=2` to read other features (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// The flags of the commands that pretrain and score in one go (`demo`, `compare`): which
/// split is scored, and config edits.
#[derive(Args, Clone)]
pub struct ScoringFlags {
    /// Score on the first N images of the scored split only (the figures of earlier
    /// versions, measured on 2,000 test images, come back with `--test-limit 2000`).
    #[arg(long)]
    test_limit: Option<usize>,
    /// Pretrain on four fifths of the train split and score on the fixed fifth held out
    /// (the validation split, for tuning); the test split is not read.
    #[arg(long)]
    validation: bool,
    /// Any config field by its dotted path, e.g. `--set schedule.lr=0.5` (repeatable; in
    /// `compare`, applied on top of each method's recipe).
    #[arg(long, value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl ScoringFlags {
    /// Applies `--validation` and `--set` to `cfg` (before the data is loaded).
    pub fn apply_to_config(&self, cfg: &mut RunConfig) -> Result<()> {
        cfg.validation |= self.validation;
        for s in &self.set {
            cfg.set(s)?;
        }
        Ok(())
    }

    /// Whether a `--set` assignment names `key` (`views.size`).
    pub fn sets(&self, key: &str) -> bool {
        self.set
            .iter()
            .any(|s| s.split_once('=').is_some_and(|(k, _)| k.trim() == key))
    }

    /// Applies `--test-limit` to the loaded splits.
    pub fn apply_to_splits(&self, splits: &mut selfsup::data::Splits) {
        if let (Some(n), Some(t)) = (self.test_limit, splits.test.as_mut()) {
            *t = t.take(n);
        }
    }
}
