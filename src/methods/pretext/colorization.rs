//! Colorization: "Colorful Image Colorization" (Zhang, Isola & Efros, ECCV 2016).
//!
//! The backbone sees only the lightness `L` of a colour image; a decoder predicts, at a
//! quarter of the resolution, a distribution over the quantized ab bins of every pixel
//! ([`crate::pretext::lab`]). The target is the true ab soft-encoded onto its 5 nearest bins
//! (Gaussian, sigma 5); the cross-entropy of each pixel is weighted by the rarity of its
//! colour (the empirical bin prior of the training set, smoothed, mixed half-and-half with
//! uniform, inverted), so the network does not settle for desaturated browns. Predictions
//! decode back to colours with the annealed mean (T = 0.38).
//!
//! The backbone has one input channel: its features apply to grey images as they are.

use crate::augment::{Image, ViewConfig};
use crate::config::RunConfig;
use crate::data::Dataset;
use crate::data::loader::HostTensor;
use crate::error::{Error, Result};
use crate::eval::batch_accuracy;
use crate::methods::MethodInfo;
use crate::methods::pretext::multi_task::{TaskKind, TaskOutput, build_single};
use crate::methods::pretext_view;
use crate::nn::Backbone;
use crate::nn::decoder::{Decoder, resize};
use crate::pretext::lab::{AbGamut, lab_to_srgb, srgb_to_lab};
use crate::train::checkpoint::HostParam;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Registry entry.
pub const INFO: MethodInfo = MethodInfo {
    name: "colorization",
    paper: "Zhang et al. 2016, Colorful Image Colorization",
    summary: "the ab colour bins of every pixel from the lightness, class-rebalanced (colour data)",
    settings: crate::methods::complete_settings::<ColorizationConfig>,
    trained_readout: crate::methods::global_readout,
    build: |run, c, d| build_single(TaskKind::Colorization, run, c, d),
};

/// Name of the empirical bin prior in checkpoints.
pub const PRIOR_TENSOR: &str = "state.colorization.prior";

/// Colorization settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ColorizationConfig {
    /// Nearest bins a colour is soft-encoded onto.
    pub neighbours: usize,
    /// Sigma of the soft-encoding Gaussian, in ab units.
    pub sigma: f32,
    /// Weight pixels by the rarity of their colour (class rebalancing).
    pub rebalance: bool,
    /// Share of the uniform distribution in the rebalancing mix (the paper: 0.5).
    pub lambda: f64,
    /// Sigma of the Gaussian that smooths the empirical prior, in ab units.
    pub prior_sigma: f64,
    /// Temperature of the annealed-mean decoding.
    pub temperature: f32,
    /// Predictions are made at `1 / output_stride` of the view's side.
    pub output_stride: usize,
    /// Widths of the decoder's upsampling blocks.
    pub decoder_widths: Vec<usize>,
}

impl crate::methods::Settings for ColorizationConfig {}

impl Default for ColorizationConfig {
    fn default() -> Self {
        ColorizationConfig {
            neighbours: 5,
            sigma: 5.0,
            rebalance: true,
            lambda: 0.5,
            prior_sigma: 5.0,
            temperature: 0.38,
            output_stride: 4,
            decoder_widths: vec![128],
        }
    }
}

/// The decoder to ab-bin scores.
#[derive(Module, Debug)]
pub struct ColorizationHead {
    /// From the last feature map to `Q` bin scores per output pixel.
    pub decoder: Decoder,
}

/// The colorization task.
pub struct ColorizationTask {
    cfg: ColorizationConfig,
    view: ViewConfig,
    gamut: &'static AbGamut,
    /// Empirical bin distribution of the training set (sums to 1).
    prior: Vec<f64>,
    /// Rebalancing weight of each bin.
    weights: Vec<f32>,
    /// Normalization of the lightness input (`L / 100` is a grey level in `[0, 1]`).
    norm: (f32, f32),
}

/// A batch turned into the task's input and targets.
pub struct Encoded {
    /// Lightness input, normalized, `[b, 1, s, s]`.
    pub input: HostTensor,
    /// Soft-encoded targets, `[b, Q, o, o]`.
    pub targets: Vec<f32>,
    /// Nearest bin of each output pixel, `[b, o, o]`.
    pub nearest: Vec<u32>,
    /// Output side `o`.
    pub out: usize,
}

impl ColorizationTask {
    /// The task and its decoder; the data must have colour (`data_channels` = 3).
    pub fn new(
        cfg: &ColorizationConfig,
        run: &RunConfig,
        data_channels: usize,
        features: usize,
        device: &Device,
    ) -> Result<(Self, ColorizationHead)> {
        let cfg = cfg.clone();
        if data_channels != 3 {
            return Err(Error::Config(format!(
                "colorization needs colour (RGB) images; this data has {data_channels} channel(s)"
            )));
        }
        if cfg.neighbours == 0
            || !(cfg.sigma > 0.0 && cfg.temperature > 0.0 && cfg.prior_sigma > 0.0)
            || !(0.0..=1.0).contains(&cfg.lambda)
            || cfg.output_stride == 0
            || run.views.size / cfg.output_stride == 0
        {
            return Err(Error::Config(format!(
                "colorization: neighbours ({}) and output_stride ({}) must be positive with view size / output_stride >= 1, sigma, prior_sigma and temperature positive, lambda in [0, 1]",
                cfg.neighbours, cfg.output_stride
            )));
        }
        let gamut = AbGamut::standard();
        let head = ColorizationHead {
            decoder: Decoder::new(features, &cfg.decoder_widths, gamut.len(), device),
        };
        let view = ViewConfig {
            mean: vec![0.0],
            std: vec![1.0],
            ..pretext_view(run)
        };
        Ok((
            ColorizationTask {
                view,
                gamut,
                prior: vec![1.0 / gamut.len() as f64; gamut.len()],
                weights: vec![1.0; gamut.len()],
                norm: (run.views.mean[0], run.views.std[0]),
                cfg,
            },
            head,
        ))
    }

    /// One raw (unnormalized) RGB view per image.
    pub fn views(&self) -> Vec<ViewConfig> {
        vec![self.view.clone()]
    }

    /// Measures the empirical bin prior of `data` (up to about 4 million pixels, evenly
    /// spread over the images) and the rebalancing weights.
    pub fn prepare(&mut self, data: &Dataset) -> Result<()> {
        if data.channels != 3 {
            return Err(Error::Config(format!(
                "colorization needs colour (RGB) images; this data has {} channel(s)",
                data.channels
            )));
        }
        let plane = data.height * data.width;
        let stride = (data.len() * plane / 4_000_000).max(1);
        let mut counts = vec![0.0f64; self.gamut.len()];
        for i in 0..data.len() {
            let px = data.image(i);
            for p in (0..plane).step_by(stride) {
                let rgb = [px[p], px[plane + p], px[2 * plane + p]].map(|v| v as f32 / 255.0);
                let [_, a, b] = srgb_to_lab(rgb);
                counts[self.gamut.bin_of(a, b)] += 1.0;
            }
        }
        self.set_prior(counts);
        Ok(())
    }

    fn set_prior(&mut self, counts: Vec<f64>) {
        let total: f64 = counts.iter().sum::<f64>().max(f64::MIN_POSITIVE);
        self.prior = counts.iter().map(|c| c / total).collect();
        self.weights = if self.cfg.rebalance {
            self.gamut
                .rebalance_weights(&self.prior, self.cfg.lambda, self.cfg.prior_sigma)
        } else {
            vec![1.0; self.gamut.len()]
        };
    }

    /// Rebalancing weight of each bin.
    pub fn weights(&self) -> &[f32] {
        &self.weights
    }

    /// Lightness input and soft-encoded ab targets of raw RGB views (`[b, 3, s, s]`, in
    /// `[0, 1]`): the ab of each `stride x stride` block is averaged before encoding.
    pub fn encode(&self, view: &HostTensor) -> Encoded {
        let [b, _, s, _] = view.shape;
        let stride = self.cfg.output_stride;
        let o = s / stride;
        let q = self.gamut.len();
        let plane = s * s;
        let mut input = Vec::with_capacity(b * plane);
        let mut targets = vec![0.0f32; b * q * o * o];
        let mut nearest = Vec::with_capacity(b * o * o);
        let (m, sd) = self.norm;
        for i in 0..b {
            let img = &view.data[i * 3 * plane..(i + 1) * 3 * plane];
            let lab: Vec<[f32; 3]> = (0..plane)
                .map(|p| srgb_to_lab([img[p], img[plane + p], img[2 * plane + p]]))
                .collect();
            input.extend(lab.iter().map(|l| (l[0] / 100.0 - m) / sd));
            for oy in 0..o {
                for ox in 0..o {
                    let (mut a, mut bb) = (0.0, 0.0);
                    for y in oy * stride..(oy + 1) * stride {
                        for x in ox * stride..(ox + 1) * stride {
                            a += lab[y * s + x][1];
                            bb += lab[y * s + x][2];
                        }
                    }
                    let n = (stride * stride) as f32;
                    let (a, bb) = (a / n, bb / n);
                    let soft = self
                        .gamut
                        .soft_encode(a, bb, self.cfg.neighbours, self.cfg.sigma);
                    nearest.push(soft[0].0 as u32);
                    for (bin, w) in soft {
                        targets[((i * q + bin) * o + oy) * o + ox] = w;
                    }
                }
            }
        }
        Encoded {
            input: HostTensor {
                data: input,
                shape: [b, 1, s, s],
            },
            targets,
            nearest,
            out: o,
        }
    }

    /// Bin scores `[b, Q, o, o]` of an encoded batch.
    fn scores(
        &self,
        head: &ColorizationHead,
        backbone: &Backbone,
        enc: &Encoded,
        device: &Device,
    ) -> Tensor<4> {
        let feats = backbone
            .forward_stages(enc.input.to_tensor(device))
            .pop()
            .expect("a backbone has stages");
        head.decoder.forward(feats, enc.out)
    }

    /// Class-rebalanced cross-entropy against the soft targets (mean over output pixels).
    pub fn loss(
        &self,
        head: &ColorizationHead,
        backbone: &Backbone,
        views: &[HostTensor],
        device: &Device,
    ) -> TaskOutput {
        let enc = self.encode(&views[0]);
        let scores = self.scores(head, backbone, &enc, device);
        let [b, q, o, _] = scores.dims();
        let pixel_w: Vec<f32> = enc
            .nearest
            .iter()
            .map(|&k| self.weights[k as usize])
            .collect();
        let z = Tensor::<4>::from_data(TensorData::new(enc.targets.clone(), [b, q, o, o]), device);
        let w = Tensor::<4>::from_data(TensorData::new(pixel_w, [b, 1, o, o]), device);
        let logp = log_softmax(scores.clone(), 1);
        let loss = (z * logp * w).sum().neg() / (b * o * o) as f32;
        TaskOutput {
            loss,
            accuracy: Some(batch_accuracy(&scores, &enc.nearest)),
        }
    }

    /// On the first `limit` images of `data` (eval views): the training objective (the
    /// class-rebalanced cross-entropy against the soft targets, per output pixel) of the
    /// model, that of the best prediction that ignores the input (the constant distribution
    /// proportional to prior x weight, the chance level), and the model's top-1 bin accuracy.
    /// The model must be in inference mode.
    pub fn held_out(
        &self,
        head: &ColorizationHead,
        backbone: &Backbone,
        data: &Dataset,
        limit: usize,
        device: &Device,
    ) -> (f64, f64, f64) {
        let view = self.view.eval_only();
        let constant: Vec<f64> = self
            .prior
            .iter()
            .zip(&self.weights)
            .map(|(p, w)| p * *w as f64)
            .collect();
        let total: f64 = constant.iter().sum();
        let log_constant: Vec<f64> = constant
            .iter()
            .map(|c| (c / total).max(1e-12).ln())
            .collect();
        let (mut model, mut chance, mut hits, mut pixels) = (0.0f64, 0.0f64, 0.0f64, 0usize);
        let end = limit.min(data.len());
        for start in (0..end).step_by(128) {
            let raw = crate::eval::plain_batch(data, &view, start..(start + 128).min(end));
            let enc = self.encode(&raw);
            let scores = self.scores(head, backbone, &enc, device);
            let [b, q, o, _] = scores.dims();
            let logp: Vec<f32> = log_softmax(scores.clone(), 1)
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap();
            for (k, (&z, &lp)) in enc.targets.iter().zip(&logp).enumerate() {
                if z > 0.0 {
                    let (i, bin, pix) = (k / (q * o * o), (k / (o * o)) % q, k % (o * o));
                    let w = self.weights[enc.nearest[i * o * o + pix] as usize] as f64;
                    model -= w * (z * lp) as f64;
                    chance -= w * z as f64 * log_constant[bin];
                }
            }
            hits += batch_accuracy(&scores, &enc.nearest) as f64 * (b * o * o) as f64;
            pixels += b * o * o;
        }
        let n = pixels.max(1) as f64;
        (model / n, chance / n, hits / n)
    }

    /// Writes `colorization.png` in `dir`: for 8 images of `data`, the grey input, the
    /// colours the network predicts (annealed mean) on that lightness, and the truth.
    pub fn preview(
        &self,
        head: &ColorizationHead,
        backbone: &Backbone,
        data: &Dataset,
        dir: &Path,
        device: &Device,
    ) -> Result<PathBuf> {
        let view = self.view.eval_only();
        let n = data.len().min(8);
        let raw = crate::eval::plain_batch(data, &view, 0..n);
        let enc = self.encode(&raw);
        let scores = self.scores(head, backbone, &enc, device);
        let [b, q, o, _] = scores.dims();
        let probs: Vec<f32> = burn::tensor::activation::softmax(scores, 1)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        let mut ab = vec![0.0f32; b * 2 * o * o];
        for i in 0..b {
            for p in 0..o * o {
                let dist: Vec<f32> = (0..q).map(|k| probs[(i * q + k) * o * o + p]).collect();
                let [a, bb] = self.gamut.annealed_mean(&dist, self.cfg.temperature);
                ab[(i * 2) * o * o + p] = a;
                ab[(i * 2 + 1) * o * o + p] = bb;
            }
        }
        let s = raw.shape[2];
        let full: Vec<f32> = resize(
            Tensor::<4>::from_data(TensorData::new(ab, [b, 2, o, o]), device),
            s,
        )
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
        let plane = s * s;
        let rows: Vec<Vec<Image>> = (0..b)
            .map(|i| {
                let truth: Vec<f32> = raw.data[i * 3 * plane..(i + 1) * 3 * plane].to_vec();
                let mut grey = Vec::with_capacity(plane);
                let mut colour = vec![0.0f32; 3 * plane];
                for p in 0..plane {
                    let l = srgb_to_lab([truth[p], truth[plane + p], truth[2 * plane + p]])[0];
                    grey.push(lab_to_srgb([l, 0.0, 0.0])[0]);
                    let rgb =
                        lab_to_srgb([l, full[(i * 2) * plane + p], full[(i * 2 + 1) * plane + p]]);
                    for (c, v) in rgb.iter().enumerate() {
                        colour[c * plane + p] = v.clamp(0.0, 1.0);
                    }
                }
                let img = |data: Vec<f32>, channels| Image {
                    data,
                    channels,
                    height: s,
                    width: s,
                };
                vec![img(grey, 1), img(colour, 3), img(truth, 3)]
            })
            .collect();
        let path = dir.join("colorization.png");
        crate::preview::save_rows(&path, &rows, 3)?;
        Ok(path)
    }

    /// Saves the empirical prior.
    pub fn save_into(&self, tensors: &mut BTreeMap<String, HostParam>) {
        tensors.insert(
            PRIOR_TENSOR.into(),
            HostParam {
                shape: vec![self.prior.len()],
                data: self.prior.iter().map(|&p| p as f32).collect(),
            },
        );
    }

    /// Restores the prior of a checkpoint (removing it from `tensors`) and its weights.
    pub fn load_from(
        &mut self,
        tensors: &mut HashMap<String, HostParam>,
        path: &Path,
    ) -> Result<()> {
        match tensors.remove(PRIOR_TENSOR) {
            Some(t) if t.shape == [self.gamut.len()] => {
                self.set_prior(t.data.iter().map(|&p| p as f64).collect());
                Ok(())
            }
            other => Err(Error::Checkpoint {
                path: path.to_path_buf(),
                message: format!(
                    "{PRIOR_TENSOR} is {}, this run needs [{}]",
                    other.map_or("missing".to_string(), |t| format!("{:?}", t.shape)),
                    self.gamut.len()
                ),
            }),
        }
    }
}
