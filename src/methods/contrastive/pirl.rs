//! PIRL: "Self-Supervised Learning of Pretext-Invariant Representations" (Misra & van der
//! Maaten, CVPR 2020).
//!
//! Instead of predicting a pretext transform, the representation is made invariant to it. An
//! image `I` and a transformed copy `I_t` (jigsaw: 9 tiles of a second view in shuffled order,
//! each through the backbone and a linear map, concatenated and projected; or a rotation by
//! 0/90/180/270 degrees) are embedded; both embeddings are scored against a memory bank of
//! image embeddings (momentum 0.5), the positive being `I`'s own entry, with NCE as in NPID:
//! `L = lambda * NCE(m_I, g(I_t)) + (1 - lambda) * NCE(m_I, f(I))`, `lambda = 0.5`.
//! As in [`crate::methods::contrastive::npid`], the bank starts from the initial network's embeddings and the noise
//! entries are shared by the images of a batch.

use crate::augment::ViewConfig;
use crate::config::RunConfig;
use crate::data::Dataset;
use crate::data::loader::{HostBatch, ViewSpec, mix_seed};
use crate::error::{Error, Result};
use crate::losses::l2_normalize;
use crate::memory::bank::{MemoryBank, similarities};
use crate::methods::contrastive::npid::{BankLoss, bank_loss};
use crate::methods::{Method, MethodInfo, StepOutput};
use crate::nn::Backbone;
use crate::pretext::rotation::rotate_batch;
use crate::pretext::tiles::TileGrid;
use crate::train::checkpoint::{self, HostParam};
use crate::train::optim::Optimizer;
use crate::train::step::update;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Registry entry.
pub const INFO: MethodInfo = MethodInfo {
    name: "pirl",
    paper: "Misra & van der Maaten 2020, Self-Supervised Learning of Pretext-Invariant Representations",
    summary: "image and its jigsaw (or rotated) copy agree, NCE against a memory bank",
    settings: crate::methods::complete_settings::<PirlConfig>,
    trained_readout: crate::methods::global_readout,
    build,
};

/// The pretext transform PIRL becomes invariant to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PirlTransform {
    /// 3x3 tiles in shuffled order (the paper's main variant).
    Jigsaw,
    /// A rotation by 0, 90, 180 or 270 degrees.
    Rotation,
}

/// PIRL's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PirlConfig {
    /// The transform.
    pub transform: PirlTransform,
    /// Embedding dimension (the bank is `N x dim`).
    pub dim: usize,
    /// Softmax temperature.
    pub temperature: f32,
    /// Noise samples per batch.
    pub negatives: usize,
    /// Weight of the old bank entry in its update.
    pub bank_momentum: f32,
    /// Weight `lambda` of the transformed-image term (the image term gets `1 - lambda`).
    pub lambda: f32,
    /// `nce` (the paper) or `infonce`.
    pub loss: BankLoss,
    /// Jigsaw tile side in pixels (0: the cell side less one eighth, at least one pixel less).
    pub tile: usize,
    /// Area range of the random crop that the transformed copy is made from (VISSL's PIRL
    /// crops 60-100 % of the image before cutting tiles; the image view keeps `views`' range).
    pub transform_crop_scale: (f32, f32),
}

impl crate::methods::Settings for PirlConfig {
    fn validate(&self, run: &RunConfig) -> Result<()> {
        PirlConfig::validate(self)?;
        self.grid(run.views.size).map(drop)
    }
}

impl Default for PirlConfig {
    fn default() -> Self {
        PirlConfig {
            transform: PirlTransform::Jigsaw,
            dim: 128,
            temperature: 0.07,
            negatives: 4096,
            bank_momentum: 0.5,
            lambda: 0.5,
            loss: BankLoss::Nce,
            tile: 0,
            transform_crop_scale: (0.6, 1.0),
        }
    }
}

impl PirlConfig {
    /// Checks the ranges of the settings.
    pub fn validate(&self) -> Result<()> {
        if self.negatives == 0
            || self.dim == 0
            || !(0.0..1.0).contains(&self.bank_momentum)
            || !(self.temperature > 0.0)
            || !(0.0..=1.0).contains(&self.lambda)
            || !(self.transform_crop_scale.0 > 0.0
                && self.transform_crop_scale.0 <= self.transform_crop_scale.1
                && self.transform_crop_scale.1 <= 1.0)
        {
            return Err(Error::Config(format!(
                "pirl: negatives ({}) and dim ({}) must be positive, bank_momentum ({}) in [0, 1), temperature ({}) positive, lambda ({}) in [0, 1], transform_crop_scale {:?} within (0, 1]",
                self.negatives,
                self.dim,
                self.bank_momentum,
                self.temperature,
                self.lambda,
                self.transform_crop_scale
            )));
        }
        Ok(())
    }

    /// The tile grid for views of side `size`.
    pub fn grid(&self, size: usize) -> Result<TileGrid> {
        TileGrid::fitted(size, self.tile, false, "pirl: tile")
    }
}

/// Backbone and the heads: `image_head` (f), and for the transformed image `transform_head`
/// (g; for jigsaw it maps the 9 concatenated `tile_head` outputs).
#[derive(Module, Debug)]
pub struct PirlModel {
    /// The representation.
    pub backbone: Backbone,
    /// f: backbone features of the image to the embedding.
    pub image_head: Linear,
    /// Jigsaw only: backbone features of each tile to `dim`.
    pub tile_head: Option<Linear>,
    /// g: to the embedding of the transformed image.
    pub transform_head: Linear,
}

impl PirlModel {
    /// L2-normalized image embeddings `f(I)`.
    pub fn embed_image(&self, x: Tensor<4>) -> Tensor<2> {
        l2_normalize(self.image_head.forward(self.backbone.forward(x)))
    }
}

/// The PIRL method.
pub struct Pirl {
    model: PirlModel,
    cfg: PirlConfig,
    grid: TileGrid,
    views: ViewConfig,
    device: Device,
    bank: MemoryBank,
    log_z: Option<f64>,
    seed: u64,
}

fn build(run: &RunConfig, in_channels: usize, device: &Device) -> Result<Box<dyn Method>> {
    let c: PirlConfig = crate::methods::settings(run)?;
    let grid = c.grid(run.views.size)?;
    let backbone = Backbone::new(&run.backbone, in_channels, device);
    let f = backbone.feature_dim();
    let (tile_head, transform_head) = match c.transform {
        PirlTransform::Jigsaw => (
            Some(LinearConfig::new(f, c.dim).init(device)),
            LinearConfig::new(9 * c.dim, c.dim).init(device),
        ),
        PirlTransform::Rotation => (None, LinearConfig::new(f, c.dim).init(device)),
    };
    Ok(Box::new(Pirl {
        model: PirlModel {
            image_head: LinearConfig::new(f, c.dim).init(device),
            backbone,
            tile_head,
            transform_head,
        },
        grid,
        views: run.views.clone(),
        device: device.clone(),
        bank: MemoryBank {
            data: Vec::new(),
            dim: c.dim,
        },
        log_z: None,
        seed: run.seed,
        cfg: c,
    }))
}

impl Pirl {
    /// Embeddings of the image view (`[B, D]`) and of its transformed copy (`[B, D]`).
    fn embed_pair(&self, batch: &HostBatch, rng: &mut ChaCha8Rng) -> (Tensor<2>, Tensor<2>) {
        let b = batch.indices.len();
        let m = &self.model;
        match (self.cfg.transform, &m.tile_head) {
            (PirlTransform::Jigsaw, Some(tile_head)) => {
                let order: Vec<Vec<usize>> = (0..b)
                    .map(|_| {
                        let mut o: Vec<usize> = (0..9).collect();
                        o.shuffle(rng);
                        o
                    })
                    .collect();
                let tiles = self.grid.cut(&batch.views[1], &order, rng);
                let per_tile = tile_head.forward(m.backbone.forward(tiles.to_tensor(&self.device)));
                let d = per_tile.dims()[1];
                let g = m.transform_head.forward(per_tile.reshape([b, 9 * d]));
                let v = m.embed_image(batch.views[0].to_tensor(&self.device));
                (v, l2_normalize(g))
            }
            _ => {
                // Image and rotated copy share one pass (and its BatchNorm statistics).
                let turns: Vec<u8> = (0..b).map(|_| rng.random_range(0..4)).collect();
                let rotated = rotate_batch(&batch.views[1], &turns);
                let x = Tensor::cat(
                    vec![
                        batch.views[0].to_tensor(&self.device),
                        rotated.to_tensor(&self.device),
                    ],
                    0,
                );
                let feats = m.backbone.forward(x);
                let v = l2_normalize(m.image_head.forward(feats.clone().narrow(0, 0, b)));
                let g = l2_normalize(m.transform_head.forward(feats.narrow(0, b, b)));
                (v, g)
            }
        }
    }
}

impl Method for Pirl {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn views(&self) -> ViewSpec {
        let transformed = ViewConfig {
            crop_scale: self.cfg.transform_crop_scale,
            ..self.views.clone()
        };
        ViewSpec {
            views: vec![self.views.clone(), transformed],
        }
    }

    fn prepare(&mut self, data: &Dataset, fresh_run: bool) -> Result<()> {
        let model = &self.model;
        self.bank = MemoryBank::for_data(
            data,
            self.cfg.dim,
            self.seed,
            fresh_run,
            &self.views,
            &self.device,
            |x| model.embed_image(x),
        );
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
        let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[self.seed, 0x9121, step]));
        let (v, g) = self.embed_pair(batch, &mut rng);
        let own = self.bank.gather(&batch.indices, &self.device);
        let noise_idx = self.bank.sample(self.cfg.negatives, &mut rng);
        let noise = self.bank.gather(&noise_idx, &self.device);
        let (t, n, kind) = (self.cfg.temperature, self.bank.len(), self.cfg.loss);
        let (pos_i, neg_i) = similarities(v.clone(), own.clone(), noise.clone());
        let (pos_t, neg_t) = similarities(g, own, noise);
        // How spread the bank is: near 1 when every entry sits in one narrow cone.
        let negative_cosine = neg_i.clone().detach().mean().into_scalar();
        let image_term = bank_loss(kind, pos_i, neg_i, t, &mut self.log_z, n);
        let transform_term = bank_loss(kind, pos_t, neg_t, t, &mut self.log_z, n);
        let lambda = self.cfg.lambda;
        let loss = transform_term.clone() * lambda + image_term.clone() * (1.0 - lambda);
        let terms = vec![
            ("image_term".to_string(), image_term.into_scalar()),
            ("transform_term".to_string(), transform_term.into_scalar()),
            ("mean_negative_cosine".to_string(), negative_cosine),
        ];
        let (model, value) = update(self.model.clone(), loss, opt, lr, step, "PIRL loss")?;
        self.model = model;
        self.bank
            .update_from_all_ranks(&batch.indices, v, self.cfg.bank_momentum);
        Ok(StepOutput { loss: value, terms })
    }

    fn backbone(&self) -> Backbone {
        self.model.backbone.clone()
    }

    fn tensors(&self) -> BTreeMap<String, HostParam> {
        let mut t = checkpoint::collect(&self.model);
        self.bank.save_into(&mut t, self.log_z);
        t
    }

    fn load_tensors(&mut self, tensors: &HashMap<String, HostParam>, path: &Path) -> Result<()> {
        let (model_tensors, log_z) = self.bank.load_from(tensors, path)?;
        self.log_z = log_z;
        self.model = checkpoint::apply(self.model.clone(), &model_tensors, path)?;
        Ok(())
    }
}
