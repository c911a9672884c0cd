//! Odd-One-Out: "Self-Supervised Video Representation Learning With Odd-One-Out Networks"
//! (Fernando, Bilen, Gavves & Gould, CVPR 2017).
//!
//! A question holds `elements` sub-sequences of one clip, each `length` frames `stride`
//! apart; all are in temporal order but one, whose frames are shuffled. Every frame goes
//! through the shared backbone; an element is encoded from the absolute differences of its
//! frames' flattened last feature maps (consecutive frames, and first with last: the paper
//! feeds stacks of frame differences too), by one layer; the elements are fused by summed differences, each element's
//! vector being `sum_j (a_i - a_j)`, what sets it apart from the others; a shared MLP scores
//! each fused vector and a softmax over the elements names the odd one (N-way).

use crate::config::RunConfig;
use crate::data::Dataset;
use crate::data::loader::{HostBatch, ViewSpec, mix_seed};
use crate::error::{Error, Result};
use crate::eval::batch_accuracy;
use crate::methods::video::shuffle_learn::frame_crop;
use crate::methods::{Method, MethodInfo, StepOutput, item_seeds, metrics_or_warn, prepared};
use crate::nn::Backbone;
use crate::pretext::frames::{FrameCrop, frames_tensor, moving_windows_by_clip, odd_question};
use crate::train::optim::Optimizer;
use crate::train::step::classification_step;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Registry entry.
pub const INFO: MethodInfo = MethodInfo {
    name: "odd_one_out",
    paper: "Fernando et al. 2017, Self-Supervised Video Representation Learning With Odd-One-Out Networks",
    summary: "which of N sub-sequences of a clip has its frames shuffled (N-way)",
    settings: crate::methods::complete_settings::<OddOneOutConfig>,
    trained_readout: crate::methods::global_readout,
    build,
};

/// Odd-One-Out settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OddOneOutConfig {
    /// Sub-sequences per question, the odd one included (the paper's N + 1 = 6).
    pub elements: usize,
    /// Frames per sub-sequence (at least 3, so a shuffle differs from a reversal).
    pub length: usize,
    /// Frames between two frames of a sub-sequence.
    pub stride: usize,
    /// Least mean absolute frame difference of a sub-sequence's span to be used.
    pub motion_threshold: f32,
    /// Largest independent shift of each frame, in pixels.
    pub jitter: usize,
    /// Width of the element encoding and of the scoring MLP.
    pub hidden: usize,
    /// Held-out questions scored by `pretext_metrics`.
    pub eval_questions: usize,
}

impl crate::methods::Settings for OddOneOutConfig {
    fn validate(&self, _run: &RunConfig) -> Result<()> {
        OddOneOutConfig::validate(self)
    }
}

impl Default for OddOneOutConfig {
    fn default() -> Self {
        OddOneOutConfig {
            elements: 6,
            length: 3,
            stride: 3,
            motion_threshold: 0.004,
            jitter: 0,
            hidden: 256,
            eval_questions: 600,
        }
    }
}

impl OddOneOutConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        if self.elements < 2 || self.length < 3 || self.stride == 0 || self.hidden == 0 {
            return Err(Error::Config(format!(
                "odd_one_out needs elements >= 2, length >= 3, stride >= 1 and hidden >= 1 \
                 (got {}, {}, {}, {})",
                self.elements, self.length, self.stride, self.hidden
            )));
        }
        Ok(())
    }

    /// Frames a sub-sequence spans.
    pub fn span(&self) -> usize {
        (self.length - 1) * self.stride + 1
    }
}

/// The backbone, the element encoder and the odd-one scorer.
#[derive(Module, Debug)]
pub struct OddOneOutModel {
    /// The representation, shared by every frame.
    pub backbone: Backbone,
    /// Element encoding: the absolute differences of consecutive frames' flattened last
    /// feature maps and of the first and last frame's (`length` of them), to `hidden`.
    pub encode: Linear,
    /// Scorer hidden layer.
    pub score1: Linear,
    /// Scorer output (one score per element).
    pub score2: Linear,
    act: Relu,
}

impl OddOneOutModel {
    /// Scores `[B, elements]` of `B` questions whose frames `[B * elements * length, C, s, s]`
    /// are ordered by question, then element, then frame.
    pub fn forward(&self, frames: Tensor<4>, elements: usize, length: usize) -> Tensor<2> {
        let n = frames.dims()[0];
        let b = n / (elements * length);
        let f = self.backbone.forward_flat(frames);
        let d = f.dims()[1];
        // Stack of differences: |v_t - v_t+1| for consecutive frames, and |v_1 - v_L|.
        let f = f.reshape([b * elements, length, d]);
        let frame = |t: usize| f.clone().narrow(1, t, 1);
        let mut diffs: Vec<Tensor<3>> = (0..length - 1)
            .map(|t| (frame(t) - frame(t + 1)).abs())
            .collect();
        diffs.push((frame(0) - frame(length - 1)).abs());
        let stacked = Tensor::cat(diffs, 1).reshape([b * elements, length * d]);
        let a = self.act.forward(self.encode.forward(stacked));
        let h = a.dims()[1];
        let a = a.reshape([b, elements, h]);
        // Summed differences: sum_j (a_i - a_j) = N a_i - sum_j a_j.
        let fused = a.clone().mul_scalar(elements as f32) - a.sum_dim(1);
        let s = self.score2.forward(
            self.act
                .forward(self.score1.forward(fused.reshape([b * elements, h]))),
        );
        s.reshape([b, elements])
    }
}

/// The Odd-One-Out method.
pub struct OddOneOut {
    model: OddOneOutModel,
    cfg: OddOneOutConfig,
    crop: FrameCrop,
    frames: Option<Dataset>,
    windows: Vec<Vec<usize>>,
    seed: u64,
    device: Device,
}

fn build(run: &RunConfig, in_channels: usize, device: &Device) -> Result<Box<dyn Method>> {
    let cfg: OddOneOutConfig = crate::methods::settings(run)?;
    let backbone = Backbone::new(&run.backbone, in_channels, device);
    let d = backbone.flat_dim(in_channels, run.views.size, device);
    Ok(Box::new(OddOneOut {
        model: OddOneOutModel {
            backbone,
            encode: LinearConfig::new(cfg.length * d, cfg.hidden).init(device),
            score1: LinearConfig::new(cfg.hidden, cfg.hidden).init(device),
            score2: LinearConfig::new(cfg.hidden, 1).init(device),
            act: Relu::new(),
        },
        crop: frame_crop(run, cfg.jitter),
        cfg,
        frames: None,
        windows: Vec::new(),
        seed: run.seed,
        device: device.clone(),
    }))
}

/// Questions (frames ordered by question, element, frame) and their answers, one per seed;
/// the clip of each question is drawn in proportion to its moving windows.
fn questions(
    cfg: &OddOneOutConfig,
    crop: &FrameCrop,
    data: &Dataset,
    windows: &[Vec<usize>],
    seeds: &[u64],
    train: bool,
) -> (Vec<f32>, Vec<u32>) {
    let total: usize = windows.iter().map(Vec::len).sum();
    let per_frame = data.channels * crop.side.pow(2);
    let mut px = Vec::with_capacity(seeds.len() * cfg.elements * cfg.length * per_frame);
    let mut answers = Vec::with_capacity(seeds.len());
    for &seed in seeds {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut pick = rng.random_range(0..total);
        let clip = windows
            .iter()
            .find(|w| {
                let here = pick < w.len();
                if !here {
                    pick -= w.len();
                }
                here
            })
            .expect("a clip with windows");
        let q = odd_question(clip, cfg.elements, cfg.length, cfg.stride, &mut rng);
        for e in &q.elements {
            crop.crop_into(data, e, train.then_some(&mut rng), &mut px);
        }
        answers.push(q.odd as u32);
    }
    (px, answers)
}

impl OddOneOut {
    /// Odd-one accuracy, in `[0, 1]`, on `n` seeded questions of `data` (centre crops).
    pub fn odd_accuracy(&self, data: &Dataset, n: usize) -> Result<f64> {
        let windows = moving_windows_by_clip(
            data,
            self.cfg.span(),
            self.cfg.motion_threshold,
            "odd_one_out",
        )?;
        let model = self.model.valid();
        let device = crate::device::of(&model);
        let crop = FrameCrop {
            side: self.crop.side.min(data.height).min(data.width),
            ..self.crop.clone()
        };
        let per_q = self.cfg.elements * self.cfg.length;
        let seeds: Vec<u64> = (0..n as u64).map(|i| mix_seed(&[0x0DD1, i])).collect();
        let (mut hits, mut total) = (0.0f64, 0usize);
        for chunk in seeds.chunks(32) {
            let (px, answers) = questions(&self.cfg, &crop, data, &windows, chunk, false);
            let x = frames_tensor(px, chunk.len() * per_q, data.channels, crop.side, &device);
            let scores = model.forward(x, self.cfg.elements, self.cfg.length);
            hits += batch_accuracy(&scores, &answers) as f64 * chunk.len() as f64;
            total += chunk.len();
        }
        Ok(hits / total.max(1) as f64)
    }
}

impl Method for OddOneOut {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn views(&self) -> ViewSpec {
        // Questions are cut from the clips in `train_step`; the loader only draws the order.
        ViewSpec { views: Vec::new() }
    }

    fn prepare(&mut self, data: &Dataset, _fresh_run: bool) -> Result<()> {
        self.windows = moving_windows_by_clip(
            data,
            self.cfg.span(),
            self.cfg.motion_threshold,
            "odd_one_out",
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
        let seeds = item_seeds(self.seed, batch, 0x0DD1);
        let (px, answers) = questions(&self.cfg, &self.crop, data, &self.windows, &seeds, true);
        let n = b * self.cfg.elements * self.cfg.length;
        let x = frames_tensor(px, n, data.channels, self.crop.side, &self.device);
        let scores = self.model.forward(x, self.cfg.elements, self.cfg.length);
        let (model, out) = classification_step(
            &self.model,
            scores,
            &answers,
            opt,
            lr,
            step,
            "odd-one-out loss",
            "odd_accuracy",
        )?;
        self.model = model;
        Ok(out)
    }

    fn pretext_metrics(&self, data: &Dataset, _limit: usize) -> Vec<(String, f64)> {
        let chance = 1.0 / self.cfg.elements as f64;
        metrics_or_warn(
            self.odd_accuracy(data, self.cfg.eval_questions)
                .map(|a| vec![("odd_accuracy".into(), a), ("odd_chance".into(), chance)]),
            "odd-one-out accuracy",
        )
    }

    fn backbone(&self) -> Backbone {
        self.model.backbone.clone()
    }

    crate::methods::model_checkpoint!(model);
}
