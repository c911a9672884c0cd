//! NPID: "Unsupervised Feature Learning via Non-Parametric Instance Discrimination" (Wu, Xiong,
//! Yu & Lin, CVPR 2018).
//!
//! Every training image is its own class. A memory bank holds one L2-normalized 128-d
//! embedding per image; an image's embedding should be closer to its own bank entry than to
//! entries of other images (non-parametric softmax at temperature 0.07), trained with NCE
//! against `m` entries drawn uniformly from the bank (or with InfoNCE). The normalizing
//! constant Z is estimated once, from the first batch. After each step the bank entries of the
//! batch move halfway to the new embeddings.
//!
//! Two departures, both for short runs on a CPU: the bank starts from the initial network's
//! embeddings (the paper starts from random vectors, which a run of a few epochs spends its
//! time unlearning), and the `m` noise entries are drawn once per batch and shared by its
//! images (the paper draws them per image), which turns the `[B, m, 128]` gather into one
//! `[B, 128] x [128, m]` product.

use crate::config::RunConfig;
use crate::data::Dataset;
use crate::data::loader::{HostBatch, ViewSpec, mix_seed};
use crate::error::{Error, Result};
use crate::losses::{info_nce, l2_normalize, npid_nce};
use crate::memory::bank::estimate_log_z;
use crate::memory::bank::{MemoryBank, similarities};
use crate::methods::{Method, MethodInfo, StepOutput};
use crate::nn::Backbone;
use crate::train::checkpoint::{self, HostParam};
use crate::train::optim::Optimizer;
use crate::train::step::update;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Registry entry.
pub const INFO: MethodInfo = MethodInfo {
    name: "npid",
    paper: "Wu et al. 2018, Unsupervised Feature Learning via Non-Parametric Instance Discrimination",
    summary: "instance discrimination: memory bank of embeddings, non-parametric softmax, NCE",
    settings: crate::methods::complete_settings::<NpidConfig>,
    trained_readout: crate::methods::global_readout,
    build,
};

/// How NPID and PIRL score an embedding against the memory bank.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BankLoss {
    /// Noise-contrastive estimation with Z estimated from the first batch (the papers).
    Nce,
    /// Cross-entropy over the positive and the noise entries.
    InfoNce,
}

/// NPID's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NpidConfig {
    /// Embedding dimension (the bank is `N x dim`).
    pub dim: usize,
    /// Non-parametric softmax temperature.
    pub temperature: f32,
    /// Noise samples per batch (`m`).
    pub negatives: usize,
    /// Weight of the old entry when the bank is updated: `v <- normalize(mu v + (1 - mu) f)`.
    pub bank_momentum: f32,
    /// `nce` (the paper's loss) or `infonce`.
    pub loss: BankLoss,
}

impl crate::methods::Settings for NpidConfig {
    fn validate(&self, _run: &RunConfig) -> Result<()> {
        NpidConfig::validate(self)
    }
}

impl Default for NpidConfig {
    fn default() -> Self {
        NpidConfig {
            dim: 128,
            temperature: 0.07,
            negatives: 4096,
            bank_momentum: 0.5,
            loss: BankLoss::Nce,
        }
    }
}

impl NpidConfig {
    /// Checks the ranges of the settings.
    pub fn validate(&self) -> Result<()> {
        if self.negatives == 0
            || self.dim == 0
            || !(0.0..1.0).contains(&self.bank_momentum)
            || !(self.temperature > 0.0)
        {
            return Err(Error::Config(format!(
                "npid: negatives ({}) and dim ({}) must be positive, bank_momentum ({}) in [0, 1), temperature ({}) positive",
                self.negatives, self.dim, self.bank_momentum, self.temperature
            )));
        }
        Ok(())
    }
}

/// The bank loss of NPID and PIRL: `pos` `[B]` and `neg` `[B, m]` are cosine similarities
/// with the positive and the noise entries of a bank of `n`; `log_z` is estimated on first use
/// (NCE only) as `ln(n * mean exp(s / T))` over this batch, the reference code's estimate.
pub fn bank_loss(
    loss: BankLoss,
    pos: Tensor<1>,
    neg: Tensor<2>,
    temperature: f32,
    log_z: &mut Option<f64>,
    n: usize,
) -> Tensor<1> {
    match loss {
        BankLoss::InfoNce => info_nce(pos, neg, temperature),
        BankLoss::Nce => {
            let lz = *log_z.get_or_insert_with(|| {
                let b = pos.dims()[0];
                let all = Tensor::cat(vec![pos.clone().reshape([b, 1]), neg.clone()], 1);
                estimate_log_z(all, temperature, n)
            });
            npid_nce(pos, neg, temperature, lz, n)
        }
    }
}

/// Backbone plus the linear embedding layer.
#[derive(Module, Debug)]
pub struct NpidModel {
    /// The representation.
    pub backbone: Backbone,
    /// Linear map to the embedding space.
    pub embed: Linear,
}

impl NpidModel {
    /// L2-normalized embeddings of `x`.
    pub fn embed(&self, x: Tensor<4>) -> Tensor<2> {
        l2_normalize(self.embed.forward(self.backbone.forward(x)))
    }
}

/// The NPID method.
pub struct Npid {
    model: NpidModel,
    cfg: NpidConfig,
    run_views: crate::augment::ViewConfig,
    device: Device,
    bank: MemoryBank,
    /// log Z, fixed after the first batch (NCE only).
    log_z: Option<f64>,
    seed: u64,
}

fn build(run: &RunConfig, in_channels: usize, device: &Device) -> Result<Box<dyn Method>> {
    let c: NpidConfig = crate::methods::settings(run)?;
    let backbone = Backbone::new(&run.backbone, in_channels, device);
    let embed = LinearConfig::new(backbone.feature_dim(), c.dim).init(device);
    Ok(Box::new(Npid {
        model: NpidModel { backbone, embed },
        run_views: run.views.clone(),
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

impl Method for Npid {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn views(&self) -> ViewSpec {
        ViewSpec {
            views: vec![self.run_views.clone()],
        }
    }

    fn prepare(&mut self, data: &Dataset, fresh_run: bool) -> Result<()> {
        let model = &self.model;
        self.bank = MemoryBank::for_data(
            data,
            self.cfg.dim,
            self.seed,
            fresh_run,
            &self.run_views,
            &self.device,
            |x| model.embed(x),
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
        let v = self.model.embed(batch.views[0].to_tensor(&self.device));
        let own = self.bank.gather(&batch.indices, &self.device);
        // Noise drawn from the step number, so a resumed run draws what a straight one would.
        let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[self.seed, 0x401E, step]));
        let noise_idx = self.bank.sample(self.cfg.negatives, &mut rng);
        let noise = self.bank.gather(&noise_idx, &self.device);
        let (pos, neg) = similarities(v.clone(), own, noise);
        // How spread the bank is: near 1 when every entry sits in one narrow cone.
        let negative_cosine = neg.clone().detach().mean().into_scalar();
        let loss = bank_loss(
            self.cfg.loss,
            pos,
            neg,
            self.cfg.temperature,
            &mut self.log_z,
            self.bank.len(),
        );
        let (model, value) = update(self.model.clone(), loss, opt, lr, step, "NPID loss")?;
        self.model = model;
        // Memory update with the embeddings of this step's forward pass (as the paper).
        self.bank
            .update_from_all_ranks(&batch.indices, v, self.cfg.bank_momentum);
        Ok(StepOutput {
            loss: value,
            terms: vec![("mean_negative_cosine".to_string(), negative_cosine)],
        })
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
