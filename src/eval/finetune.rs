//! Fine-tuning: the whole backbone plus a linear classifier trained with labels, started from
//! a pretrained checkpoint or from random init, scored by test top-1. With the supervised
//! baseline (`selfsup train-supervised`), it compares what pretraining buys when labels are
//! available.

use crate::augment::ViewConfig;
use crate::config::RunConfig;
use crate::data::{Dataset, Splits};
use crate::error::{Error, Result};
use crate::methods::Method;
use crate::train::{self, TrainOptions};
use burn::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The views and optimizer of supervised training on top of `base` (same backbone, data,
/// view size and normalization): crops of 50-100 % of the image and flips, no colour
/// distortion; SGD lr 0.1, momentum 0.9, weight decay 5e-4, cosine schedule.
pub fn supervised_config(base: &RunConfig, epochs: usize, init_from: Option<PathBuf>) -> RunConfig {
    let mut c = base.for_method("supervised");
    c.epochs = epochs;
    c.init_from = init_from;
    c.stop_after_steps = 0;
    c.keep_epoch_snapshots = false;
    c.views = ViewConfig {
        crop_scale: (0.5, 1.0),
        jitter_prob: 0.0,
        grayscale_prob: 0.0,
        blur_prob: 0.0,
        solarize_prob: 0.0,
        ..base.views.clone()
    };
    c.optim.kind = crate::train::optim::OptimizerKind::Sgd;
    c.optim.weight_decay = 5e-4;
    c.schedule.lr = 0.1;
    c.schedule.warmup_epochs = 0.0;
    c
}

/// Top-1 (%) of a method's classifier on `test` (`None` if the method has none).
pub fn classifier_accuracy(method: &dyn Method, test: &Dataset, view: &ViewConfig) -> Option<f64> {
    let labels = test.labels.as_ref()?;
    let view = view.eval_only();
    let mut hits = 0usize;
    for start in (0..test.len()).step_by(500) {
        let end = (start + 500).min(test.len());
        let x = super::plain_batch(test, &view, start..end).to_tensor(&Device::flex());
        let pred: Vec<i64> = method
            .classify(x)?
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .try_to_vec()
            .ok()?;
        hits += pred
            .iter()
            .zip(&labels[start..end])
            .filter(|(p, l)| **p == **l as i64)
            .count();
    }
    Some(100.0 * hits as f64 / test.len().max(1) as f64)
}

/// Trains [`supervised_config`] of `base` into `out` (from `init_from`'s backbone, or random
/// init) and returns the test top-1.
pub fn finetune(
    base: &RunConfig,
    splits: &Splits,
    epochs: usize,
    init_from: Option<&Path>,
    out: &Path,
    progress: bool,
) -> Result<f64> {
    let test = splits
        .test
        .as_ref()
        .ok_or_else(|| Error::Config("fine-tuning needs a labelled test split".into()))?;
    let cfg = supervised_config(base, epochs, init_from.map(Path::to_path_buf));
    let opts = TrainOptions {
        out_dir: out.to_path_buf(),
        resume: false,
        progress,
    };
    let outcome = train::pretrain(&cfg, Arc::new(splits.train.clone()), &opts)?;
    classifier_accuracy(outcome.method.as_ref(), test, &cfg.views)
        .ok_or_else(|| Error::Config("the test split has no labels".into()))
}
