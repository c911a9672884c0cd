//! Audio-visual correspondence: "Look, Listen and Learn" (Arandjelovic & Zisserman, ICCV 2017)
//! with the AVE-Net of "Objects that Sound" (ECCV 2018).
//!
//! An image and a sound either belong together or not. The image goes through the backbone,
//! the sound's log-mel spectrogram (a window of `frames` frames at a random place) through an
//! audio ConvNet; each embedding is L2-normalized, and the Euclidean distance between them is
//! all the correspondence classifier sees (a 1 -> 2 linear layer), which forces the two
//! embeddings into one space where distance means "goes together": cross-modal retrieval in
//! both directions reads that space.

use super::multi_task::pretext_view;
use super::{Method, MethodInfo, StepOutput, classification_step, metrics_or_warn, prepared};
use crate::config::RunConfig;
use crate::data::Dataset;
use crate::data::loader::{HostBatch, ViewSpec, mix_seed};
use crate::error::{Error, Result};
use crate::losses::l2_normalize;
use crate::nets::Backbone;
use crate::pretext::mel::Spectrogram;
use crate::train::checkpoint::{self, HostParam};
use crate::train::optim::Optimizer;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

/// Registry entry.
pub const INFO: MethodInfo = MethodInfo {
    name: "avc",
    paper: "Arandjelovic & Zisserman 2017/2018, Look, Listen and Learn; Objects that Sound (AVE-Net)",
    summary: "whether an image and a sound belong together, from the distance of their embeddings",
    build,
};

/// Audio-visual correspondence settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AvcConfig {
    /// Spectrogram frames per sound window (96 at a 160-sample hop of 16 kHz: about 1 s).
    pub frames: usize,
    /// Width of the shared embedding space.
    pub embed_dim: usize,
    /// Width multiplier of the audio ConvNet.
    pub audio_width: f32,
}

impl Default for AvcConfig {
    fn default() -> Self {
        AvcConfig {
            frames: 96,
            embed_dim: 128,
            audio_width: 0.5,
        }
    }
}

/// Both networks and the correspondence classifier.
#[derive(Module, Debug)]
pub struct AvcModel {
    /// The visual representation.
    pub backbone: Backbone,
    /// Image features to the shared space.
    pub vision_head: Linear,
    /// Normalizes the log-mel input (running statistics are saved with the model).
    pub audio_norm: BatchNorm,
    /// The audio ConvNet over spectrogram windows.
    pub audio: Backbone,
    /// Audio features to the shared space.
    pub audio_head: Linear,
    /// Distance to (no, yes) scores.
    pub classifier: Linear,
}

impl AvcModel {
    /// L2-normalized image embeddings `[B, E]`.
    pub fn embed_images(&self, x: Tensor<4>) -> Tensor<2> {
        l2_normalize(self.vision_head.forward(self.backbone.forward(x)))
    }

    /// L2-normalized sound embeddings `[B, E]` of spectrogram windows `[B, 1, mels, frames]`.
    pub fn embed_sounds(&self, x: Tensor<4>) -> Tensor<2> {
        l2_normalize(
            self.audio_head
                .forward(self.audio.forward(self.audio_norm.forward(x))),
        )
    }

    /// Correspondence scores `[B, 2]` of embedding pairs.
    pub fn correspond(&self, v: Tensor<2>, a: Tensor<2>) -> Tensor<2> {
        let d = (v - a).powi_scalar(2).sum_dim(1).add_scalar(1e-8).sqrt();
        self.classifier.forward(d)
    }
}

/// The AVC method.
pub struct Avc {
    model: AvcModel,
    cfg: AvcConfig,
    view: crate::augment::ViewConfig,
    sounds: Option<Arc<Vec<Spectrogram>>>,
    seed: u64,
    device: Device,
    step: u64,
}

fn build(run: &RunConfig, in_channels: usize, device: &Device) -> Result<Box<dyn Method>> {
    let cfg = run.avc.clone();
    if cfg.frames == 0 || cfg.embed_dim == 0 || cfg.audio_width <= 0.0 {
        return Err(Error::Config(
            "avc.frames, embed_dim and audio_width must be positive".into(),
        ));
    }
    let backbone = Backbone::new(&run.backbone, in_channels, device);
    let mut audio_cfg = run.backbone.clone();
    audio_cfg.width = cfg.audio_width;
    let audio = Backbone::new(&audio_cfg, 1, device);
    Ok(Box::new(Avc {
        model: AvcModel {
            vision_head: LinearConfig::new(backbone.feature_dim(), cfg.embed_dim).init(device),
            backbone,
            audio_norm: BatchNormConfig::new(1).init(device),
            audio_head: LinearConfig::new(audio.feature_dim(), cfg.embed_dim).init(device),
            audio,
            classifier: LinearConfig::new(1, 2).init(device),
        },
        cfg,
        view: pretext_view(run),
        sounds: None,
        seed: run.seed,
        device: device.clone(),
        step: 0,
    }))
}

fn sounds_of(data: &Dataset) -> Result<Arc<Vec<Spectrogram>>> {
    data.sounds.clone().ok_or_else(|| {
        Error::Config(
            "avc learns from images with sounds: give an image + sound source (av:PATH)".into(),
        )
    })
}

impl Avc {
    fn windows(
        &self,
        sounds: &[Spectrogram],
        which: &[usize],
        rng: Option<&mut ChaCha8Rng>,
        device: &Device,
    ) -> Tensor<4> {
        let w = self.cfg.frames;
        let mels = sounds[0].n_mels;
        let mut data = Vec::with_capacity(which.len() * mels * w);
        let mut rng = rng;
        for &i in which {
            let s = &sounds[i];
            let start = match rng.as_deref_mut() {
                Some(r) if s.frames > w => r.random_range(0..=s.frames - w),
                _ => 0,
            };
            data.extend(s.window(start, w));
        }
        Tensor::from_data(TensorData::new(data, [which.len(), 1, mels, w]), device)
    }

    /// Held-out scores on `data`: balanced correspondence accuracy over all image-sound pairs
    /// (own pairs "yes", all others "no"); recall@5 of sound-to-image and image-to-sound
    /// retrieval among all its items, ranked by the classifier's margin, with the chance
    /// level `5 / n`.
    pub fn held_out(&self, data: &Dataset) -> Result<Vec<(String, f64)>> {
        let sounds = sounds_of(data)?;
        let n = data.len();
        if n < 2 {
            return Ok(Vec::new());
        }
        let model = self.model.valid();
        let device = crate::device::of(&model);
        let images =
            crate::eval::plain_batch(data, &self.view.eval_only(), 0..n).to_tensor(&device);
        let all: Vec<usize> = (0..n).collect();
        let v = model.embed_images(images);
        let a = model.embed_sounds(self.windows(&sounds, &all, None, &device));
        // The classifier's "belongs together" margin for every sound (rows) and every image
        // (columns): retrieval ranks by what the model learned, whichever way its distance
        // weight points.
        let a_rep = a
            .clone()
            .unsqueeze_dim::<3>(1)
            .repeat_dim(1, n)
            .reshape([n * n, a.dims()[1]]);
        let v_rep = v
            .clone()
            .unsqueeze_dim::<3>(0)
            .repeat_dim(0, n)
            .reshape([n * n, v.dims()[1]]);
        let s = model.correspond(v_rep, a_rep);
        let margin = s.clone().narrow(1, 1, 1) - s.narrow(1, 0, 1);
        let d: Vec<f32> = margin.into_data().try_to_vec::<f32>().expect("f32 scores");
        let recall = |by_row: bool| {
            let hits = (0..n)
                .filter(|&q| {
                    let sim = |j: usize| if by_row { d[q * n + j] } else { d[j * n + q] };
                    let own = sim(q);
                    (0..n).filter(|&j| j != q && sim(j) > own).count() < 5
                })
                .count();
            hits as f64 / n as f64
        };
        // Balanced accuracy over all n x n pairs: own pairs should score "yes", the others "no".
        let (mut yes, mut no) = (0usize, 0usize);
        for q in 0..n {
            for j in 0..n {
                let said_yes = d[q * n + j] > 0.0;
                if q == j {
                    yes += said_yes as usize;
                } else {
                    no += !said_yes as usize;
                }
            }
        }
        let accuracy = 0.5 * (yes as f64 / n as f64 + no as f64 / (n * (n - 1)) as f64);
        Ok(vec![
            ("correspondence_balanced_accuracy".into(), accuracy),
            ("correspondence_chance".into(), 0.5),
            ("sound_to_image_recall_at_5".into(), recall(true)),
            ("image_to_sound_recall_at_5".into(), recall(false)),
            ("recall_at_5_chance".into(), (5.0 / n as f64).min(1.0)),
        ])
    }
}

impl Method for Avc {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn views(&self) -> ViewSpec {
        ViewSpec {
            views: vec![self.view.clone()],
        }
    }

    fn prepare(&mut self, data: &Dataset, _fresh_run: bool) -> Result<()> {
        let sounds = sounds_of(data)?;
        if sounds.len() != data.len() {
            return Err(Error::Config(format!(
                "{} images but {} sounds",
                data.len(),
                sounds.len()
            )));
        }
        self.sounds = Some(sounds);
        Ok(())
    }

    fn train_step(
        &mut self,
        batch: &HostBatch,
        opt: &mut Optimizer,
        lr: f64,
    ) -> Result<StepOutput> {
        self.step += 1;
        let sounds = prepared(&self.sounds, INFO.name)?.clone();
        let b = batch.indices.len();
        let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[
            self.seed,
            batch.epoch as u64,
            batch.indices[0] as u64,
            0xA7C0,
        ]));
        let a = self.model.embed_sounds(self.windows(
            &sounds,
            &batch.indices,
            Some(&mut rng),
            &self.device,
        ));
        let v = self
            .model
            .embed_images(batch.views[0].to_tensor(&self.device));
        // Negatives: each image with the sound of another item of the batch.
        let k = rng.random_range(1..b);
        let other = Tensor::cat(
            vec![a.clone().narrow(0, k, b - k), a.clone().narrow(0, 0, k)],
            0,
        );
        let scores = Tensor::cat(
            vec![
                self.model.correspond(v.clone(), a),
                self.model.correspond(v, other),
            ],
            0,
        );
        let labels: Vec<u32> = (0..2 * b).map(|i| (i < b) as u32).collect();
        let (model, out) = classification_step(
            &self.model,
            scores,
            &labels,
            opt,
            lr,
            self.step,
            "correspondence loss",
            "correspondence_accuracy",
        )?;
        self.model = model;
        Ok(out)
    }

    fn pretext_metrics(&self, data: &Dataset, _limit: usize) -> Vec<(String, f64)> {
        metrics_or_warn(self.held_out(data), "correspondence scores")
    }

    fn backbone(&self) -> Backbone {
        self.model.backbone.clone()
    }

    fn tensors(&self) -> BTreeMap<String, HostParam> {
        checkpoint::collect(&self.model)
    }

    fn load_tensors(&mut self, tensors: &HashMap<String, HostParam>, path: &Path) -> Result<()> {
        self.model = checkpoint::apply(self.model.clone(), tensors, path)?;
        Ok(())
    }
}
