//! Self-supervised methods, one file each. A method says which views it needs, computes its
//! loss on a batch, updates its parameters, and exposes the backbone that evaluation freezes.
//!
//! Adding a method: write `methods/NAME.rs` with a struct implementing [`Method`] and a
//! `pub const INFO: MethodInfo`, then add that `INFO` to [`METHODS`].
//!
//! Data-parallel runs need nothing more from a method whose loss is a mean over its own
//! batch: [`Optimizer::step`] averages the gradients over the ranks. A method that compares
//! samples across the batch gathers them through [`crate::dist`] (SimCLR's negatives, MoCo's
//! keys, SwAV's Sinkhorn, the memory banks), and every rank must make the same collective
//! calls in the same order.

pub mod autoencoder;
pub mod avc;
pub mod avid_cma;
pub mod bigan;
pub mod colorization;
pub mod cpc;
pub mod ema;
pub mod inpainting;
pub mod jigsaw;
pub mod memory_bank;
pub mod moco;
pub mod multi_task;
pub mod npid;
pub mod odd_one_out;
pub mod pirl;
pub mod relative_position;
pub mod rotation;
pub mod shuffle_learn;
pub mod simclr;
pub mod supervised;
pub mod swav;
pub mod time_contrastive;
pub mod tracking;

use crate::config::RunConfig;
use crate::data::Dataset;
use crate::data::loader::{HostBatch, HostTensor, ViewSpec};
use crate::error::{Error, Result};
use crate::nets::Backbone;
use crate::train::checkpoint::HostParam;
use crate::train::optim::Optimizer;
use burn::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// What one training step reports.
#[derive(Clone, Debug, Default)]
pub struct StepOutput {
    /// The total loss that was minimized.
    pub loss: f32,
    /// Named loss terms or statistics worth logging (may be empty).
    pub terms: Vec<(String, f32)>,
}

/// Where training stands, for [`Method::after_step`].
#[derive(Clone, Copy, Debug)]
pub struct StepInfo {
    /// Steps done, this one included.
    pub step: u64,
    /// Steps in the whole schedule.
    pub total_steps: u64,
    /// Current epoch (0-based).
    pub epoch: usize,
    /// Steps in one epoch.
    pub steps_per_epoch: u64,
}

/// A self-supervised method: its model (backbone + heads + any state) and its loss.
pub trait Method {
    /// The registry name (`simclr`, ...).
    fn name(&self) -> &'static str;
    /// The views the loader must produce for each image.
    fn views(&self) -> ViewSpec;
    /// Binds the method to its training set before the first step (memory banks are sized
    /// here); `fresh_run` is false when a checkpoint will be loaded next. Default: nothing.
    fn prepare(&mut self, _data: &Dataset, _fresh_run: bool) -> Result<()> {
        Ok(())
    }
    /// Forward, loss, backward and one optimizer update with learning rate `lr`. Random
    /// draws and schedules derive from the seed and `batch.step` / `batch.epoch`, and any
    /// other state that shapes later steps is in [`Method::tensors`]: a method keeps no
    /// counter of its own, so a resumed run continues exactly.
    fn train_step(&mut self, batch: &HostBatch, opt: &mut Optimizer, lr: f64)
    -> Result<StepOutput>;
    /// Work after an optimizer step (EMA encoders, queues, memory banks). Default: nothing.
    fn after_step(&mut self, _info: &StepInfo) {}
    /// Class scores `[B, classes]` of images `x` in inference mode, for methods trained with
    /// labels (the supervised baseline, fine-tuning). Default: `None`.
    fn classify(&self, _x: Tensor<4>) -> Option<Tensor<2>> {
        None
    }
    /// Pretext-task scores of the trained model on the first `limit` images of `data` (held
    /// out), each with the chance level it must beat: e.g. `rotation_accuracy` and
    /// `rotation_chance`. Default: none.
    fn pretext_metrics(&self, _data: &Dataset, _limit: usize) -> Vec<(String, f64)> {
        Vec::new()
    }
    /// Writes pictures of what the model produces (inpainting fills, colorized images) for
    /// a few images of `data` into `dir`, returning their paths. Default: none.
    fn write_previews(&self, _data: &Dataset, _dir: &Path) -> Result<Vec<PathBuf>> {
        Ok(Vec::new())
    }
    /// The backbone, for evaluation (a cheap handle: burn tensors are reference-counted).
    fn backbone(&self) -> Backbone;
    /// Name prefix of the backbone's tensors in [`Method::tensors`] (recorded in checkpoints,
    /// so evaluation finds the backbone of any method).
    fn backbone_prefix(&self) -> &'static str {
        "backbone."
    }
    /// Every tensor of the model by name, for checkpoints.
    fn tensors(&self) -> BTreeMap<String, HostParam>;
    /// Loads tensors saved by [`Method::tensors`]; `path` names the checkpoint in errors.
    fn load_tensors(&mut self, tensors: &HashMap<String, HostParam>, path: &Path) -> Result<()>;
}

/// A registry entry: name, paper and constructor of a method.
pub struct MethodInfo {
    /// Name used by `--method`.
    pub name: &'static str,
    /// The paper it implements.
    pub paper: &'static str,
    /// One line on what it learns from.
    pub summary: &'static str,
    /// Builds the method for images with `in_channels` channels on a training device.
    pub build: fn(&RunConfig, usize, &Device) -> Result<Box<dyn Method>>,
}

/// Every available method.
pub const METHODS: &[MethodInfo] = &[
    simclr::INFO,
    moco::INFO,
    swav::INFO,
    npid::INFO,
    pirl::INFO,
    cpc::INFO,
    rotation::INFO,
    jigsaw::INFO,
    relative_position::INFO,
    colorization::INFO,
    inpainting::INFO,
    multi_task::INFO,
    autoencoder::AE_INFO,
    autoencoder::VAE_INFO,
    bigan::INFO,
    shuffle_learn::INFO,
    odd_one_out::INFO,
    tracking::INFO,
    time_contrastive::INFO,
    avc::INFO,
    avid_cma::INFO,
    supervised::INFO,
];

/// Looks up a method by name.
pub fn find(name: &str) -> Result<&'static MethodInfo> {
    METHODS.iter().find(|m| m.name == name).ok_or_else(|| {
        let names: Vec<&str> = METHODS.iter().map(|m| m.name).collect();
        Error::Config(format!(
            "unknown method '{name}': available: {}",
            names.join(", ")
        ))
    })
}

impl HostTensor {
    /// Uploads to `device` as a `[b, c, h, w]` tensor.
    pub fn to_tensor(&self, device: &Device) -> Tensor<4> {
        Tensor::from_data(TensorData::new(self.data.clone(), self.shape), device)
    }
}

/// Reads a scalar loss, failing on NaN or infinity (naming `what`). In a data-parallel run it
/// is the mean over the ranks, so they all see the same value and skip or stop together.
pub fn finite_scalar(loss: &Tensor<1>, step: u64, what: &str) -> Result<f32> {
    let local: f32 = loss.clone().into_scalar();
    let v = if crate::dist::world_size() > 1 {
        crate::dist::mean_f64(local as f64) as f32
    } else {
        local
    };
    if v.is_finite() {
        Ok(v)
    } else {
        Err(Error::NonFinite {
            step,
            what: format!("{what} = {v}"),
        })
    }
}

/// One seed per item of `batch` (the run's `seed`, the epoch, the item's index and a
/// method's `salt`), for methods that draw their own samples in `train_step`: a resumed run
/// draws the same ones.
pub fn item_seeds(seed: u64, batch: &HostBatch, salt: u64) -> Vec<u64> {
    batch
        .indices
        .iter()
        .map(|&i| crate::data::loader::mix_seed(&[seed, batch.epoch as u64, i as u64, salt]))
        .collect()
}

/// What `prepare` kept, or an error naming `method` when it was not called.
pub fn prepared<'a, T>(kept: &'a Option<T>, method: &str) -> Result<&'a T> {
    kept.as_ref()
        .ok_or_else(|| Error::Config(format!("{method}: prepare() was not called")))
}

/// One classification step: cross-entropy of `scores` against `labels`, backward and an
/// optimizer update of `model` with learning rate `lr`; the step's output logs the batch
/// accuracy as `accuracy_name`. `what` names the loss if it is not finite.
#[allow(clippy::too_many_arguments)]
pub fn classification_step<M: burn::module::Module>(
    model: &M,
    scores: Tensor<2>,
    labels: &[u32],
    opt: &mut Optimizer,
    lr: f64,
    step: u64,
    what: &str,
    accuracy_name: &str,
) -> Result<(M, StepOutput)> {
    let accuracy = multi_task::batch_accuracy(&scores, labels);
    let loss = crate::losses::cross_entropy(scores, labels);
    let value = finite_scalar(&loss, step, what)?;
    let grads = burn::optim::GradientsParams::from_grads(loss.backward(), model);
    Ok((
        opt.step(lr, model.clone(), grads),
        StepOutput {
            loss: value,
            terms: vec![(accuracy_name.into(), accuracy)],
        },
    ))
}

/// Held-out metrics from a fallible evaluation: the metrics, or none and a warning naming
/// `what`.
pub fn metrics_or_warn(result: Result<Vec<(String, f64)>>, what: &str) -> Vec<(String, f64)> {
    result.unwrap_or_else(|e| {
        tracing::warn!("no held-out {what}: {e}");
        Vec::new()
    })
}
