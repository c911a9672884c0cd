//! Shuffle & Learn: "Shuffle and Learn: Unsupervised Learning using Temporal Order
//! Verification" (Misra, Zitnick & Hebert, ECCV 2016).
//!
//! Tuples of three frames come from windows of a clip that move (mean frame difference above
//! a threshold). A positive tuple is in temporal order, forward or backward; a negative has
//! its middle frame taken from outside the other two. The three frames go through one shared
//! backbone (a siamese network), their features are concatenated, and an MLP says whether the
//! order is right.

use crate::config::RunConfig;
use crate::data::Dataset;
use crate::data::loader::{HostBatch, ViewSpec, mix_seed};
use crate::error::{Error, Result};
use crate::eval::batch_accuracy;
use crate::methods::{Method, MethodInfo, StepOutput, item_seeds, metrics_or_warn, prepared};
use crate::nn::{Backbone, heads::Mlp};
use crate::pretext::frames::{FrameCrop, frames_tensor, moving_windows, order_tuple};
use crate::train::optim::Optimizer;
use crate::train::step::classification_step;
use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Registry entry.
pub const INFO: MethodInfo = MethodInfo {
    name: "shuffle_learn",
    paper: "Misra et al. 2016, Shuffle and Learn: Unsupervised Learning using Temporal Order Verification",
    summary: "whether three frames of a clip are in temporal order (siamese backbone, binary)",
    settings: crate::methods::complete_settings::<ShuffleLearnConfig>,
    trained_readout: crate::methods::global_readout,
    build,
};

/// Shuffle & Learn settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShuffleLearnConfig {
    /// Frames in a window; the five frames of a tuple are drawn inside it (at least 5).
    pub window: usize,
    /// Least mean absolute frame difference (pixels in `[0, 1]`) of a window to be used.
    pub motion_threshold: f32,
    /// Fraction of positive (in-order) tuples.
    pub positive_fraction: f32,
    /// Largest independent shift of each frame of a tuple, in pixels.
    pub jitter: usize,
    /// Hidden width of the order classifier.
    pub hidden: usize,
    /// Held-out tuples scored by `pretext_metrics`.
    pub eval_tuples: usize,
}

impl crate::methods::Settings for ShuffleLearnConfig {
    fn validate(&self, _run: &RunConfig) -> Result<()> {
        ShuffleLearnConfig::validate(self)
    }
}

impl Default for ShuffleLearnConfig {
    fn default() -> Self {
        ShuffleLearnConfig {
            window: 12,
            motion_threshold: 0.004,
            positive_fraction: 0.5,
            jitter: 0,
            hidden: 256,
            eval_tuples: 1000,
        }
    }
}

impl ShuffleLearnConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        if self.window < 5 {
            return Err(Error::Config(format!(
                "shuffle_learn.window = {} must be at least 5 frames (a tuple is drawn from 5)",
                self.window
            )));
        }
        if !(0.0..=1.0).contains(&self.positive_fraction) || self.motion_threshold < 0.0 {
            return Err(Error::Config(
                "shuffle_learn.positive_fraction must be in [0, 1] and motion_threshold >= 0"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// The siamese backbone and the order classifier.
#[derive(Module, Debug)]
pub struct ShuffleLearnModel {
    /// The representation, shared by the three frames.
    pub backbone: Backbone,
    /// MLP from the three frames' flattened last feature maps, concatenated, to 2 scores
    /// (out of order, in order). Flattened maps keep where things are, which pooled
    /// features lose and which motion is about (the paper's fc6 sees pool5 flattened too).
    pub classifier: Mlp,
}

impl ShuffleLearnModel {
    /// Scores `[B, 2]` of `B` tuples given as `[3B, C, s, s]`, frame 0 of every tuple first.
    pub fn forward(&self, frames: Tensor<4>) -> Tensor<2> {
        let b = frames.dims()[0] / 3;
        let f = self.backbone.forward_flat(frames);
        let [f1, f2, f3] = [0, 1, 2].map(|i| f.clone().narrow(0, i * b, b));
        let parts = vec![
            (f1.clone() - f2.clone()).abs(),
            (f2 - f3.clone()).abs(),
            (f1 - f3).abs(),
        ];
        self.classifier.forward(Tensor::cat(parts, 1))
    }
}

/// The Shuffle & Learn method.
pub struct ShuffleLearn {
    model: ShuffleLearnModel,
    cfg: ShuffleLearnConfig,
    crop: FrameCrop,
    frames: Option<Dataset>,
    windows: Vec<usize>,
    seed: u64,
    device: Device,
}

/// The crop of frames that video methods use: the run's view size and normalization.
pub fn frame_crop(run: &RunConfig, jitter: usize) -> FrameCrop {
    FrameCrop {
        side: run.views.size,
        jitter,
        flip_prob: run.views.flip_prob,
        mean: run.views.mean.clone(),
        std: run.views.std.clone(),
    }
}

fn build(run: &RunConfig, in_channels: usize, device: &Device) -> Result<Box<dyn Method>> {
    let backbone = Backbone::new(&run.backbone, in_channels, device);
    let d = backbone.flat_dim(in_channels, run.views.size, device);
    let cfg: ShuffleLearnConfig = crate::methods::settings(run)?;
    Ok(Box::new(ShuffleLearn {
        model: ShuffleLearnModel {
            backbone,
            classifier: Mlp::new(3 * d, cfg.hidden.max(1), 2, device),
        },
        crop: frame_crop(run, cfg.jitter),
        cfg,
        frames: None,
        windows: Vec::new(),
        seed: run.seed,
        device: device.clone(),
    }))
}

/// Tuples (frame-major `[3B, C, s, s]` pixels) and their labels (1 = in order), one per
/// seed, from windows starting at `windows`; random crops when `train`, else centre crops.
fn tuples(
    cfg: &ShuffleLearnConfig,
    crop: &FrameCrop,
    data: &Dataset,
    windows: &[usize],
    seeds: &[u64],
    train: bool,
) -> (Vec<f32>, Vec<u32>) {
    let per_frame = data.channels * crop.side.pow(2);
    let mut slots = vec![Vec::with_capacity(seeds.len() * per_frame); 3];
    let mut labels = Vec::with_capacity(seeds.len());
    let mut px = Vec::with_capacity(3 * per_frame);
    for &seed in seeds {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let start = windows[rng.random_range(0..windows.len())];
        let positive = rng.random::<f32>() < cfg.positive_fraction;
        let t = order_tuple(start, cfg.window, positive, &mut rng);
        px.clear();
        crop.crop_into(data, &t.frames, train.then_some(&mut rng), &mut px);
        for (i, slot) in slots.iter_mut().enumerate() {
            slot.extend_from_slice(&px[i * per_frame..(i + 1) * per_frame]);
        }
        labels.push(t.in_order as u32);
    }
    (slots.concat(), labels)
}

impl ShuffleLearn {
    /// Order-verification accuracy, in `[0, 1]`, on `n` seeded tuples of `data` (centre
    /// crops; half of them positive with the default `positive_fraction`).
    pub fn order_accuracy(&self, data: &Dataset, n: usize) -> Result<f64> {
        let windows = moving_windows(
            data,
            self.cfg.window,
            self.cfg.motion_threshold,
            "shuffle_learn",
        )?;
        let model = self.model.valid();
        let device = crate::device::of(&model);
        let crop = FrameCrop {
            side: self.crop.side.min(data.height).min(data.width),
            ..self.crop.clone()
        };
        let (mut hits, mut total) = (0.0f64, 0usize);
        let seeds: Vec<u64> = (0..n as u64).map(|i| mix_seed(&[0x5EF1, i])).collect();
        for chunk in seeds.chunks(128) {
            let (px, labels) = tuples(&self.cfg, &crop, data, &windows, chunk, false);
            let x = frames_tensor(px, 3 * chunk.len(), data.channels, crop.side, &device);
            let scores = model.forward(x);
            hits += batch_accuracy(&scores, &labels) as f64 * chunk.len() as f64;
            total += chunk.len();
        }
        Ok(hits / total.max(1) as f64)
    }
}

impl Method for ShuffleLearn {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn views(&self) -> ViewSpec {
        // Tuples are cut from the clips in `train_step`; the loader only draws the order.
        ViewSpec { views: Vec::new() }
    }

    fn prepare(&mut self, data: &Dataset, _fresh_run: bool) -> Result<()> {
        self.windows = moving_windows(
            data,
            self.cfg.window,
            self.cfg.motion_threshold,
            "shuffle_learn",
        )?;
        self.crop.check_fits(data)?;
        self.frames = Some(data.clone());
        Ok(())
    }

    fn train_step(
        &mut self,
        batch: &HostBatch,
        opt: &mut Optimizer,
        lr: f64,
    ) -> Result<StepOutput> {
        // Steps done, this one included: keyed to the batch, so a resume draws the same.
        let step = batch.step + 1;
        let data = prepared(&self.frames, INFO.name)?;
        let b = batch.indices.len();
        let seeds = item_seeds(self.seed, batch, 0x5EF1);
        let (px, labels) = tuples(&self.cfg, &self.crop, data, &self.windows, &seeds, true);
        let x = frames_tensor(px, 3 * b, data.channels, self.crop.side, &self.device);
        let scores = self.model.forward(x);
        let (model, out) = classification_step(
            &self.model,
            scores,
            &labels,
            opt,
            lr,
            step,
            "order-verification loss",
            "order_accuracy",
        )?;
        self.model = model;
        Ok(out)
    }

    fn pretext_metrics(&self, data: &Dataset, _limit: usize) -> Vec<(String, f64)> {
        let accuracy = self.order_accuracy(data, self.cfg.eval_tuples);
        metrics_or_warn(
            accuracy.map(|a| vec![("order_accuracy".into(), a), ("order_chance".into(), 0.5)]),
            "order accuracy",
        )
    }

    fn backbone(&self) -> Backbone {
        self.model.backbone.clone()
    }

    crate::methods::model_checkpoint!(model);
}
