//! Frames close in time as positives: time-contrastive learning in the line of DrLIM
//! ("Dimensionality Reduction by Learning an Invariant Mapping", Hadsell, Chopra & LeCun,
//! CVPR 2006, whose neighbours were frames adjacent in time).
//!
//! Each training frame (anchor) is paired with another frame of its clip at most `window`
//! frames away; both get SimCLR's augmentations, go through the backbone and a projection MLP,
//! and NT-Xent, the same loss code as SimCLR, pulls each pair together and pushes the other
//! `2B - 2` frames of the batch away: frames far apart in the clip, or from other clips.

use crate::augment::{Image, ViewConfig};
use crate::config::RunConfig;
use crate::data::Dataset;
use crate::data::loader::{HostBatch, ViewSpec};
use crate::error::{Error, Result};
use crate::losses::nt_xent;
use crate::methods::video::tracking::HeldOutDistances;
use crate::methods::{Method, MethodInfo, StepOutput, item_seeds, prepared};
use crate::nn::{Backbone, heads::Mlp};
use crate::train::optim::Optimizer;
use crate::train::step::update;
use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Registry entry.
pub const INFO: MethodInfo = MethodInfo {
    name: "time_contrastive",
    paper: "Hadsell et al. 2006, Dimensionality Reduction by Learning an Invariant Mapping (frames close in time)",
    summary: "frames a few steps apart in a clip are positives, the rest of the batch negatives (NT-Xent)",
    settings: crate::methods::complete_settings::<TimeContrastiveConfig>,
    trained_readout: crate::methods::global_readout,
    build,
};

/// Time-contrastive settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeContrastiveConfig {
    /// Largest distance in frames between an anchor and its positive.
    pub window: usize,
    /// NT-Xent temperature.
    pub temperature: f32,
    /// Hidden width of the projection MLP.
    pub proj_hidden: usize,
    /// Output width of the projection MLP.
    pub proj_dim: usize,
    /// Held-out check: a "far" frame is at least this many frames from the anchor.
    pub far: usize,
}

impl crate::methods::Settings for TimeContrastiveConfig {
    fn validate(&self, _run: &RunConfig) -> Result<()> {
        TimeContrastiveConfig::validate(self)
    }
}

impl Default for TimeContrastiveConfig {
    fn default() -> Self {
        TimeContrastiveConfig {
            window: 3,
            temperature: 0.2,
            proj_hidden: 512,
            proj_dim: 128,
            far: 30,
        }
    }
}

impl TimeContrastiveConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        if self.window == 0 || !(self.temperature > 0.0) || self.far <= self.window {
            return Err(Error::Config(format!(
                "time_contrastive needs window >= 1, temperature > 0 and far > window (got {}, {}, {})",
                self.window, self.temperature, self.far
            )));
        }
        Ok(())
    }
}

/// Backbone plus projection head.
#[derive(Module, Debug)]
pub struct TimeContrastiveModel {
    /// The representation.
    pub backbone: Backbone,
    /// The projection MLP.
    pub projector: Mlp,
}

/// The time-contrastive method.
pub struct TimeContrastive {
    model: TimeContrastiveModel,
    cfg: TimeContrastiveConfig,
    view: ViewConfig,
    frames: Option<Dataset>,
    seed: u64,
    device: Device,
}

fn build(run: &RunConfig, in_channels: usize, device: &Device) -> Result<Box<dyn Method>> {
    let cfg: TimeContrastiveConfig = crate::methods::settings(run)?;
    let backbone = Backbone::new(&run.backbone, in_channels, device);
    let projector = Mlp::new(
        backbone.feature_dim(),
        cfg.proj_hidden,
        cfg.proj_dim,
        device,
    );
    Ok(Box::new(TimeContrastive {
        model: TimeContrastiveModel {
            backbone,
            projector,
        },
        cfg,
        view: run.views.clone(),
        frames: None,
        seed: run.seed,
        device: device.clone(),
    }))
}

/// A frame of the clip `clip` at most `window` frames from `anchor` and not `anchor` itself.
pub fn positive_frame<R: Rng>(
    clip: &std::ops::Range<usize>,
    anchor: usize,
    window: usize,
    rng: &mut R,
) -> usize {
    let lo = anchor.saturating_sub(window).max(clip.start);
    let hi = (anchor + window).min(clip.end - 1);
    loop {
        let f = rng.random_range(lo..=hi);
        if f != anchor || lo == hi {
            return f;
        }
    }
}

fn views_tensor(images: Vec<Image>, device: &Device) -> Tensor<4> {
    let (c, h, w) = (images[0].channels, images[0].height, images[0].width);
    let n = images.len();
    let data: Vec<f32> = images.into_iter().flat_map(|i| i.data).collect();
    Tensor::from_data(TensorData::new(data, [n, c, h, w]), device)
}

impl TimeContrastive {
    /// On the held-out clips of `data`: how much closer each frame is to a neighbour at most
    /// `window` frames away than to a frame of the same clip at least `far` frames away
    /// (cosine distance of backbone features, plain views).
    pub fn near_closer_fraction(&self, data: &Dataset) -> HeldOutDistances {
        let model = self.model.valid();
        let device = crate::device::of(&model);
        let plain = self.view.eval_only();
        let mut rng = ChaCha8Rng::seed_from_u64(0x71C0);
        let mut triples = Vec::new();
        for r in &data.clips {
            if r.len() <= self.cfg.far {
                continue;
            }
            for a in r.clone() {
                let near = positive_frame(r, a, self.cfg.window, &mut rng);
                let far: Vec<usize> = r
                    .clone()
                    .filter(|f| f.abs_diff(a) >= self.cfg.far)
                    .collect();
                triples.push((a, near, far[rng.random_range(0..far.len())]));
            }
        }
        let mut out = HeldOutDistances::default();
        if triples.is_empty() {
            return out;
        }
        let feats = |idx: Vec<usize>| {
            let imgs: Vec<Image> = idx
                .iter()
                .map(|&i| {
                    let img = Image::from_u8(data.image(i), data.channels, data.height, data.width);
                    plain.make(&img, &mut ChaCha8Rng::seed_from_u64(0))
                })
                .collect();
            model.backbone.forward(views_tensor(imgs, &device))
        };
        for chunk in triples.chunks(256) {
            let fa = feats(chunk.iter().map(|t| t.0).collect());
            let fnear = feats(chunk.iter().map(|t| t.1).collect());
            let ffar = feats(chunk.iter().map(|t| t.2).collect());
            out.add_features(fa, fnear, ffar);
        }
        out
    }
}

impl Method for TimeContrastive {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn views(&self) -> ViewSpec {
        // Anchor and positive frames are drawn and augmented in `train_step`.
        ViewSpec { views: Vec::new() }
    }

    fn prepare(&mut self, data: &Dataset, _fresh_run: bool) -> Result<()> {
        crate::pretext::frames::require_clips(data, INFO.name)?;
        if let Some((k, r)) = data.clips.iter().enumerate().find(|(_, r)| r.len() < 2) {
            return Err(Error::Config(format!(
                "clip '{}' has {} frame(s): time_contrastive needs at least 2 per clip",
                data.class_names.get(k).map_or("?", |s| s.as_str()),
                r.len()
            )));
        }
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
        let seeds = item_seeds(self.seed, batch, 0x71C0);
        let pairs: Vec<(Image, Image)> = batch
            .indices
            .par_iter()
            .zip(&seeds)
            .map(|(&i, &seed)| {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let clip = &data.clips[data.clip_of(i).expect("every frame is in a clip")];
                let j = positive_frame(clip, i, self.cfg.window, &mut rng);
                let img = |f: usize| {
                    Image::from_u8(data.image(f), data.channels, data.height, data.width)
                };
                (
                    self.view.make(&img(i), &mut rng),
                    self.view.make(&img(j), &mut rng),
                )
            })
            .collect();
        let (va, vp): (Vec<Image>, Vec<Image>) = pairs.into_iter().unzip();
        let x = Tensor::cat(
            vec![
                views_tensor(va, &self.device),
                views_tensor(vp, &self.device),
            ],
            0,
        );
        let z = self.model.projector.forward(self.model.backbone.forward(x));
        let loss = nt_xent(
            z.clone().narrow(0, 0, b),
            z.narrow(0, b, b),
            self.cfg.temperature,
        );
        let (model, value) = update(
            self.model.clone(),
            loss,
            opt,
            lr,
            step,
            "time-contrastive NT-Xent loss",
        )?;
        self.model = model;
        Ok(StepOutput {
            loss: value,
            terms: vec![],
        })
    }

    fn pretext_metrics(&self, data: &Dataset, _limit: usize) -> Vec<(String, f64)> {
        let d = self.near_closer_fraction(data);
        if d.n == 0 {
            return Vec::new();
        }
        d.metrics("near")
    }

    fn backbone(&self) -> Backbone {
        self.model.backbone.clone()
    }

    crate::methods::model_checkpoint!(model);
}
