//! CPC: "Representation Learning with Contrastive Predictive Coding" (van den Oord, Li &
//! Vinyals 2018), in the image form of "Data-Efficient Image Recognition with Contrastive
//! Predictive Coding" (Henaff et al. 2019, CPC v2).
//!
//! Each view is cut into an overlapping grid of patches, and every patch is encoded by the
//! backbone (`z`). An autoregressive context network reads the grid of codes top-down: two
//! masked convolutions whose output at row `i` sees rows `i - 2 ..= i` only (`c`). For each
//! offset `k = 1..=K`, a linear map of `c[i, j]` predicts `z[i + k, j]`, the patch `k` rows
//! below; InfoNCE scores the prediction against every patch code of the batch (other patches
//! of the same image and patches of other images are the negatives). Departure for stability
//! with small batches: predictions and codes are compared by cosine similarity over a
//! temperature instead of the paper's raw dot product.

use crate::augment::ViewConfig;
use crate::config::RunConfig;
use crate::data::Dataset;
use crate::data::loader::{HostBatch, ViewSpec};
use crate::error::{Error, Result};
use crate::losses::{cross_entropy, l2_normalize};
use crate::methods::{Method, MethodInfo, StepOutput};
use crate::nn::Backbone;
use crate::pretext::tiles::PatchGrid;
use crate::train::optim::Optimizer;
use crate::train::step::update;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, Relu};
use burn::prelude::*;
use burn::tensor::ops::PadMode;
use serde::{Deserialize, Serialize};

/// Registry entry.
pub const INFO: MethodInfo = MethodInfo {
    name: "cpc",
    paper: "van den Oord et al. 2018, Contrastive Predictive Coding; Henaff et al. 2019, CPC v2",
    summary: "patch grid, autoregressive context over rows, InfoNCE on the codes k rows below",
    settings: crate::methods::complete_settings::<CpcConfig>,
    trained_readout: |run| {
        Ok(crate::methods::settings::<CpcConfig>(run)?
            .grid(run.views.size)
            .map_or(
                crate::eval::Readout::Global(run.features),
                crate::eval::Readout::PatchGrid,
            ))
    },
    build,
};

/// CPC's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CpcConfig {
    /// Patch side in pixels.
    pub patch: usize,
    /// Step between patches in pixels (smaller than `patch`: the patches overlap).
    pub stride: usize,
    /// Predict up to this many rows below (`K`).
    pub max_offset: usize,
    /// InfoNCE temperature on cosine similarities.
    pub temperature: f32,
}

impl crate::methods::Settings for CpcConfig {
    fn validate(&self, run: &RunConfig) -> Result<()> {
        self.grid(run.views.size).map(drop)
    }
}

impl Default for CpcConfig {
    fn default() -> Self {
        // For 28 px views: a 4 x 4 grid of 10 px patches, 4 px overlap.
        CpcConfig {
            patch: 10,
            stride: 6,
            max_offset: 2,
            temperature: 0.1,
        }
    }
}

impl CpcConfig {
    /// Checks the settings against views of side `size`; returns the patch grid.
    pub fn grid(&self, size: usize) -> Result<PatchGrid> {
        let grid = PatchGrid {
            patch: self.patch,
            stride: self.stride,
        };
        let g = grid.side(size);
        if self.stride == 0 || g <= self.max_offset || self.max_offset == 0 {
            return Err(Error::Config(format!(
                "cpc: {size} px views cut into {0} px patches every {1} px give {g} rows; need more than max_offset = {2} (>= 1) rows",
                self.patch, self.stride, self.max_offset
            )));
        }
        if !(self.temperature > 0.0) {
            return Err(Error::Config(format!(
                "cpc.temperature = {} must be positive",
                self.temperature
            )));
        }
        Ok(grid)
    }
}

/// The autoregressive context network: masked 2x3 convolutions over the grid of codes.
#[derive(Module, Debug)]
pub struct ContextNet {
    /// First masked convolution.
    pub conv1: Conv2d,
    /// Second masked convolution.
    pub conv2: Conv2d,
    act: Relu,
}

impl ContextNet {
    /// A context network over codes of `dim` channels.
    pub fn new(dim: usize, device: &Device) -> ContextNet {
        let conv = || Conv2dConfig::new([dim, dim], [2, 3]).init(device);
        ContextNet {
            conv1: conv(),
            conv2: conv(),
            act: Relu::new(),
        }
    }

    /// `z` `[B, F, G, G]` to contexts of the same shape; row `i` of the output depends on
    /// rows `i - 2 ..= i` of the input only (one zero row padded above, none below, per layer).
    pub fn forward(&self, z: Tensor<4>) -> Tensor<4> {
        let causal = |x: Tensor<4>| x.pad([(1, 0), (1, 1)], PadMode::Constant(0.0));
        let h = self.act.forward(self.conv1.forward(causal(z)));
        self.conv2.forward(causal(h))
    }
}

/// Backbone, context network and one predictor per row offset.
#[derive(Module, Debug)]
pub struct CpcModel {
    /// The patch encoder (the representation).
    pub backbone: Backbone,
    /// The context network.
    pub context: ContextNet,
    /// `predictors[k - 1]` predicts the code `k` rows below.
    pub predictors: Vec<Linear>,
}

/// The CPC method.
pub struct Cpc {
    model: CpcModel,
    cfg: CpcConfig,
    grid: PatchGrid,
    views: ViewConfig,
    device: Device,
}

fn build(run: &RunConfig, in_channels: usize, device: &Device) -> Result<Box<dyn Method>> {
    let c: CpcConfig = crate::methods::settings(run)?;
    let grid = c.grid(run.views.size)?;
    let backbone = Backbone::new(&run.backbone, in_channels, device);
    let f = backbone.feature_dim();
    Ok(Box::new(Cpc {
        model: CpcModel {
            backbone,
            context: ContextNet::new(f, device),
            predictors: (0..c.max_offset)
                .map(|_| LinearConfig::new(f, f).init(device))
                .collect(),
        },
        grid,
        views: run.views.clone(),
        device: device.clone(),
        cfg: c,
    }))
}

/// CPC's InfoNCE for one offset `k`: `context` `[B, F, G, G]`, `codes` `[B * G * G, F]`
/// (image-major, row by row); each context in rows `0..G - k` predicts (through `predictor`)
/// the code `k` rows below it among all `B * G * G` codes.
pub fn offset_loss(
    context: Tensor<4>,
    codes: Tensor<2>,
    predictor: &Linear,
    k: usize,
    temperature: f32,
) -> Tensor<1> {
    let (logits, targets) = offset_logits(context, codes, predictor, k, temperature);
    cross_entropy(logits, &targets)
}

/// The scores of [`offset_loss`] (`[predictions, B * G * G]`) and the index of each
/// prediction's true code.
fn offset_logits(
    context: Tensor<4>,
    codes: Tensor<2>,
    predictor: &Linear,
    k: usize,
    temperature: f32,
) -> (Tensor<2>, Vec<u32>) {
    let [b, f, g, _] = context.dims();
    let rows = g - k;
    let ctx = context
        .narrow(2, 0, rows)
        .permute([0, 2, 3, 1])
        .reshape([b * rows * g, f]);
    let pred = l2_normalize(predictor.forward(ctx));
    let logits = pred.matmul(l2_normalize(codes).transpose()) / temperature;
    let mut targets = Vec::with_capacity(b * rows * g);
    for img in 0..b {
        for i in 0..rows {
            for j in 0..g {
                targets.push((img * g * g + (i + k) * g + j) as u32);
            }
        }
    }
    (logits, targets)
}

/// Images per batch of the held-out prediction accuracy: each prediction picks its code
/// among the `64 * G * G` codes of its batch.
const HELD_OUT_BATCH: usize = 64;

impl Method for Cpc {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn views(&self) -> ViewSpec {
        ViewSpec {
            views: vec![self.views.clone()],
        }
    }

    fn train_step(
        &mut self,
        batch: &HostBatch,
        opt: &mut Optimizer,
        lr: f64,
    ) -> Result<StepOutput> {
        // Steps done, this one included: keyed to the batch, so a resume draws the same.
        let step = batch.step + 1;
        let b = batch.indices.len();
        let g = self.grid.side(batch.views[0].shape[2]);
        let patches = self.grid.cut(&batch.views[0]).to_tensor(&self.device);
        let codes = self.model.backbone.forward(patches);
        let f = codes.dims()[1];
        let grid = codes.clone().reshape([b, g, g, f]).permute([0, 3, 1, 2]);
        let context = self.model.context.forward(grid);
        let mut terms = Vec::new();
        let mut total: Option<Tensor<1>> = None;
        for (i, p) in self.model.predictors.iter().enumerate() {
            let k = i + 1;
            let l = offset_loss(context.clone(), codes.clone(), p, k, self.cfg.temperature);
            terms.push((format!("loss_k{k}"), l.clone().into_scalar()));
            total = Some(match total {
                Some(t) => t + l,
                None => l,
            });
        }
        let loss = total.expect("max_offset >= 1") / self.cfg.max_offset as f32;
        let (model, value) = update(self.model.clone(), loss, opt, lr, step, "CPC loss")?;
        self.model = model;
        Ok(StepOutput { loss: value, terms })
    }

    /// Held-out top-1 accuracy of the one-row-ahead prediction (`k = 1`): how often the
    /// context's prediction scores the true code highest among all codes of its batch of
    /// [`HELD_OUT_BATCH`] images (plain views), with the chance level `1 / (64 G^2)` and the
    /// number of predictions.
    fn pretext_metrics(&self, data: &Dataset, limit: usize) -> Vec<(String, f64)> {
        let model = self.model.valid();
        let device = crate::device::of(&model);
        let plain = self.views.eval_only();
        let end = limit.min(data.len()) / HELD_OUT_BATCH * HELD_OUT_BATCH;
        let (mut hits, mut n, mut codes_per_batch) = (0usize, 0usize, 1usize);
        for start in (0..end).step_by(HELD_OUT_BATCH) {
            let x = crate::eval::plain_batch(data, &plain, start..start + HELD_OUT_BATCH);
            let g = self.grid.side(x.shape[2]);
            let codes = model.backbone.forward(self.grid.cut(&x).to_tensor(&device));
            let f = codes.dims()[1];
            let grid = codes
                .clone()
                .reshape([HELD_OUT_BATCH, g, g, f])
                .permute([0, 3, 1, 2]);
            let context = model.context.forward(grid);
            let (logits, targets) = offset_logits(
                context,
                codes,
                &model.predictors[0],
                1,
                self.cfg.temperature,
            );
            codes_per_batch = HELD_OUT_BATCH * g * g;
            let best = crate::device::host_values(logits.argmax(1).float());
            hits += best
                .iter()
                .zip(&targets)
                .filter(|(p, t)| **p as u32 == **t)
                .count();
            n += targets.len();
        }
        if n == 0 {
            return Vec::new();
        }
        vec![
            ("prediction_accuracy".into(), hits as f64 / n as f64),
            ("prediction_chance".into(), 1.0 / codes_per_batch as f64),
            ("predictions".into(), n as f64),
        ]
    }

    fn backbone(&self) -> Backbone {
        self.model.backbone.clone()
    }

    crate::methods::model_checkpoint!(model);
}
