//! MAE: "Masked Autoencoders Are Scalable Vision Learners" (He et al., CVPR 2022).
//!
//! The image is cut into patches and a random `mask_ratio` (75 %) of them is hidden, a new
//! draw for every image. The ViT encoder sees the visible patches only (with their position
//! embeddings); a light decoder takes the encoded visible tokens and a shared, learned mask
//! token in every hidden place, adds its own position embeddings, and predicts each patch's
//! pixels. The loss is the mean squared error on the hidden patches only, against the
//! patch's pixels normalized by their own mean and variance (`norm_pix_loss`, section 4.1).
//! The encoder is what evaluation reads, on the whole, unmasked image (its last three blocks'
//! tokens pooled to 3x3, the ViT's default readout).
//!
//! Held-out score: the masked-patch error on held-out images against the error of predicting
//! the mean normalized patch (the best constant).

use crate::augment::ViewConfig;
use crate::config::RunConfig;
use crate::data::Dataset;
use crate::data::loader::{HostBatch, HostTensor, ViewSpec, mix_seed};
use crate::error::{Error, Result};
use crate::methods::{Method, MethodInfo, StepOutput, item_seeds};
use crate::nn::Backbone;
use crate::nn::transformer::Block;
use crate::nn::vit::Vit;
use crate::train::optim::Optimizer;
use crate::train::step::update;
use burn::module::Param;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// Registry entry.
pub const INFO: MethodInfo = MethodInfo {
    name: "mae",
    paper: "He et al. 2022, Masked Autoencoders Are Scalable Vision Learners",
    summary: "ViT encoder on a random quarter of the patches, light decoder predicts the rest",
    settings: crate::methods::complete_settings::<MaeConfig>,
    trained_readout: crate::methods::global_readout,
    build,
};

/// MAE's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaeConfig {
    /// Fraction of the patches hidden from the encoder (the paper: 0.75).
    pub mask_ratio: f32,
    /// Decoder token width (the paper: 512 for ViT-L).
    pub decoder_dim: usize,
    /// Decoder blocks (the paper: 8; 1 still works, section 4.1).
    pub decoder_depth: usize,
    /// Decoder attention heads.
    pub decoder_heads: usize,
    /// Targets: each patch normalized by its own pixels' mean and variance (the paper's
    /// better choice), or the raw (view-normalized) pixels.
    pub norm_pix_loss: bool,
}

impl Default for MaeConfig {
    fn default() -> Self {
        MaeConfig {
            mask_ratio: 0.75,
            decoder_dim: 128,
            decoder_depth: 2,
            decoder_heads: 4,
            norm_pix_loss: true,
        }
    }
}

impl crate::methods::Settings for MaeConfig {
    fn validate(&self, run: &RunConfig) -> Result<()> {
        if !(self.mask_ratio > 0.0 && self.mask_ratio < 1.0)
            || self.decoder_dim == 0
            || self.decoder_heads == 0
            || self.decoder_dim % self.decoder_heads != 0
        {
            return Err(Error::Config(format!(
                "mae: mask_ratio = {} must be in (0, 1), decoder_dim a positive multiple of \
                 decoder_heads",
                self.mask_ratio
            )));
        }
        if run.backbone.kind.vit_preset().is_none() {
            return Err(Error::Config(format!(
                "mae needs a ViT backbone (--backbone vit_tiny or vit_small), not {:?}",
                run.backbone.kind
            )));
        }
        Ok(())
    }
}

/// `x` `[B, C, H, W]` cut into `p` x `p` patches, row by row: `[B, (H/p)(W/p), p·p·C]`, each
/// patch's values in (row, column, channel) order, as MAE's `patchify`.
pub fn patchify(x: Tensor<4>, p: usize) -> Tensor<3> {
    let [b, c, h, w] = x.dims();
    let (gh, gw) = (h / p, w / p);
    x.narrow(2, 0, gh * p)
        .narrow(3, 0, gw * p)
        .reshape([b, c, gh, p, gw, p])
        .permute([0, 2, 4, 3, 5, 1])
        .reshape([b, gh * gw, p * p * c])
}

/// Each row of `t` (`[B, N, P]`) minus its mean, over the square root of its biased variance
/// plus 1e-6: MAE's normalized-pixel targets.
pub fn normalize_patches(t: Tensor<3>) -> Tensor<3> {
    let mean = t.clone().mean_dim(2);
    let centred = t - mean;
    let var = centred.clone().powi_scalar(2).mean_dim(2);
    centred / (var + 1e-6).sqrt()
}

/// Mean squared error of `pred` and `target` (`[B, N, P]`) over the patches where `mask`
/// (`[B, N]`) is 1: each patch's mean over its `P` values, averaged over the hidden patches.
pub fn masked_patch_mse(pred: Tensor<3>, target: Tensor<3>, mask: Tensor<2>) -> Tensor<1> {
    let [b, n, _] = pred.dims();
    let per_patch = (pred - target).powi_scalar(2).mean_dim(2).reshape([b, n]);
    (per_patch * mask.clone()).sum() / mask.sum()
}

/// One image's random order of its `n` patches (the first ones stay visible, the rest are
/// hidden) and each patch's place in that order (MAE's `ids_shuffle` / `ids_restore`), drawn
/// from `seed`.
pub fn random_masking(n: usize, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let mut restore = vec![0; n];
    for (place, &patch) in order.iter().enumerate() {
        restore[patch] = place;
    }
    (order, restore)
}

/// The light decoder: embedding of the encoder's tokens, a learned mask token, position
/// embeddings, transformer blocks, and a linear prediction of each patch's values.
#[derive(Module, Debug)]
pub struct MaeDecoder {
    /// Encoder width to decoder width.
    pub embed: Linear,
    /// The token put in every hidden patch's place, `[1, 1, decoder_dim]`.
    pub mask_token: Param<Tensor<3>>,
    /// Position embedding `[1, decoder_dim, g, g]` on the encoder's patch grid.
    pub pos_embed: Param<Tensor<4>>,
    /// Decoder blocks.
    pub blocks: Vec<Block>,
    /// Final LayerNorm.
    pub norm: LayerNorm,
    /// Decoder width to a patch's values.
    pub pred: Linear,
}

/// The encoder (a ViT backbone) and the decoder.
#[derive(Module, Debug)]
pub struct MaeModel {
    /// The representation.
    pub encoder: Backbone,
    /// Trained with it, dropped after pretraining.
    pub decoder: MaeDecoder,
}

/// The MAE method.
pub struct Mae {
    model: MaeModel,
    cfg: MaeConfig,
    view: ViewConfig,
    seed: u64,
    device: Device,
}

fn vit(b: &Backbone) -> &Vit {
    match b {
        Backbone::Vit(v) => v,
        _ => unreachable!("MaeConfig::validate requires a ViT"),
    }
}

fn build(run: &RunConfig, in_channels: usize, device: &Device) -> Result<Box<dyn Method>> {
    let c: MaeConfig = crate::methods::settings(run)?;
    let encoder = Backbone::new(&run.backbone, in_channels, device);
    let v = vit(&encoder);
    let (p, dim) = (v.patch(), v.feature_dim());
    let [_, _, gh, gw] = v.pos_embed.val().dims();
    let normal = |shape: Vec<usize>| {
        Tensor::<1>::random(
            [shape.iter().product::<usize>()],
            burn::tensor::Distribution::Normal(0.0, 0.02),
            device,
        )
    };
    let decoder = MaeDecoder {
        embed: LinearConfig::new(dim, c.decoder_dim).init(device),
        mask_token: Param::from_tensor(normal(vec![c.decoder_dim]).reshape([1, 1, c.decoder_dim])),
        pos_embed: Param::from_tensor(normal(vec![c.decoder_dim, gh, gw]).reshape([
            1,
            c.decoder_dim,
            gh,
            gw,
        ])),
        blocks: (0..c.decoder_depth)
            .map(|_| Block::new(c.decoder_dim, 4 * c.decoder_dim, c.decoder_heads, device))
            .collect(),
        norm: LayerNormConfig::new(c.decoder_dim).init(device),
        pred: LinearConfig::new(c.decoder_dim, p * p * in_channels).init(device),
    };
    // MAE's augmentation: crops and flips, no colour distortion.
    let view = ViewConfig {
        crop_scale: (0.2, 1.0),
        jitter_prob: 0.0,
        grayscale_prob: 0.0,
        blur_prob: 0.0,
        solarize_prob: 0.0,
        ..run.views.clone()
    };
    Ok(Box::new(Mae {
        model: MaeModel { encoder, decoder },
        cfg: c,
        view,
        seed: run.seed,
        device: device.clone(),
    }))
}

/// Row indices into a `[B * n, D]` flattening: for each image `b`, `b * n + ids[b][j]`.
fn flat_rows(ids: &[Vec<usize>], n: usize, device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = ids
        .iter()
        .enumerate()
        .flat_map(|(b, row)| row.iter().map(move |&i| (b * n + i) as i64))
        .collect();
    let len = v.len();
    Tensor::from_data(TensorData::new(v, [len]), device)
}

impl Mae {
    /// Predictions and loss of `model` on images `x` (`[B, C, H, W]`) with one mask per image
    /// drawn from `seeds`: `(loss, pred, target, mask)`.
    fn masked_pass(
        &self,
        model: &MaeModel,
        x: Tensor<4>,
        seeds: &[u64],
        device: &Device,
    ) -> (Tensor<1>, Tensor<3>, Tensor<3>, Tensor<2>) {
        let v = vit(&model.encoder);
        let d = &model.decoder;
        let b = x.dims()[0];
        let (tokens, (h, w)) = v.embed(x.clone());
        let [_, n, dim] = tokens.dims();
        let keep = ((n as f32 * (1.0 - self.cfg.mask_ratio)).round() as usize).clamp(1, n - 1);
        let draws: Vec<(Vec<usize>, Vec<usize>)> =
            seeds.iter().map(|&s| random_masking(n, s)).collect();
        let visible: Vec<Vec<usize>> = draws.iter().map(|(o, _)| o[..keep].to_vec()).collect();
        let restore: Vec<Vec<usize>> = draws.iter().map(|(_, r)| r.clone()).collect();
        let kept = tokens
            .reshape([b * n, dim])
            .select(0, flat_rows(&visible, n, device))
            .reshape([b, keep, dim]);
        let latent = v.encode(kept, false).pop().expect("the encoder's output");
        // Decoder: the visible tokens, then mask tokens, put back in patch order.
        let dd = self.cfg.decoder_dim;
        let vis = d.embed.forward(latent);
        let masks = d.mask_token.val().expand([b, n - keep, dd]);
        let full = Tensor::cat(vec![vis, masks], 1)
            .reshape([b * n, dd])
            .select(0, flat_rows(&restore, n, device))
            .reshape([b, n, dd]);
        let pos = crate::nn::vit::resize_grid(d.pos_embed.val(), (h, w));
        let mut y = full + pos.reshape([1, dd, h * w]).swap_dims(1, 2);
        for block in &d.blocks {
            y = block.forward(y);
        }
        let pred = d.pred.forward(d.norm.forward(y));
        let raw = patchify(x, v.patch());
        let target = if self.cfg.norm_pix_loss {
            normalize_patches(raw)
        } else {
            raw
        };
        let mask_values: Vec<f32> = restore
            .iter()
            .flat_map(|r| r.iter().map(|&place| if place >= keep { 1.0 } else { 0.0 }))
            .collect();
        let mask = Tensor::<2>::from_data(TensorData::new(mask_values, [b, n]), device);
        let loss = masked_patch_mse(pred.clone(), target.clone(), mask.clone());
        (loss, pred, target, mask)
    }
}

impl Method for Mae {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn views(&self) -> ViewSpec {
        ViewSpec {
            views: vec![self.view.clone()],
        }
    }

    fn train_step(
        &mut self,
        batch: &HostBatch,
        opt: &mut Optimizer,
        lr: f64,
    ) -> Result<StepOutput> {
        let step = batch.step + 1;
        let x = batch.views[0].to_tensor(&self.device);
        let seeds = item_seeds(self.seed, batch, 0x3A5E);
        let (loss, ..) = self.masked_pass(&self.model, x, &seeds, &self.device);
        let (model, value) = update(self.model.clone(), loss, opt, lr, step, "MAE loss")?;
        self.model = model;
        Ok(StepOutput {
            loss: value,
            terms: vec![],
        })
    }

    /// `masked_patch_mse` on the first `limit` images of `data` (masks drawn from a fixed
    /// seed), `mean_patch_mse` of the best constant prediction (the mean target patch of those
    /// images) on the same hidden patches, and the standard error of their difference over
    /// images (`difference_se`).
    fn pretext_metrics(&self, data: &Dataset, limit: usize) -> Vec<(String, f64)> {
        let model = self.model.valid();
        let device = crate::device::of(&model);
        let view = self.view.eval_only();
        let n = data.len().min(limit);
        let mut per_image: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = Vec::new();
        let (mut sum_t, mut count) = (Vec::<f64>::new(), 0usize);
        let mut dims = (0, 0);
        for start in (0..n).step_by(250) {
            let end = (start + 250).min(n);
            let host: HostTensor = crate::eval::plain_batch(data, &view, start..end);
            let x = host.to_tensor(&device);
            let seeds: Vec<u64> = (start..end)
                .map(|i| mix_seed(&[0x3A5E, i as u64]))
                .collect();
            let (_, pred, target, mask) = self.masked_pass(&model, x, &seeds, &device);
            let [b, np, p] = pred.dims();
            dims = (np, p);
            let (pv, tv, mv) = (
                crate::device::host_values(pred),
                crate::device::host_values(target),
                crate::device::host_values(mask),
            );
            if sum_t.is_empty() {
                sum_t = vec![0.0; p];
            }
            for i in 0..b {
                let r = i * np * p..(i + 1) * np * p;
                for (j, v) in tv[r.clone()].iter().enumerate() {
                    sum_t[j % p] += *v as f64;
                }
                count += np;
                per_image.push((
                    pv[r.clone()].to_vec(),
                    tv[r].to_vec(),
                    mv[i * np..(i + 1) * np].to_vec(),
                ));
            }
        }
        let mean_patch: Vec<f64> = sum_t.iter().map(|s| s / count.max(1) as f64).collect();
        let (np, p) = dims;
        let mut diffs = Vec::new();
        let (mut model_err, mut const_err, mut hidden) = (0.0f64, 0.0f64, 0.0f64);
        for (pred, target, mask) in &per_image {
            let (mut m_e, mut c_e, mut h) = (0.0f64, 0.0f64, 0.0f64);
            for k in 0..np {
                if mask[k] < 0.5 {
                    continue;
                }
                let (mut a, mut c) = (0.0, 0.0);
                for j in 0..p {
                    let t = target[k * p + j] as f64;
                    a += (pred[k * p + j] as f64 - t).powi(2);
                    c += (mean_patch[j] - t).powi(2);
                }
                m_e += a / p as f64;
                c_e += c / p as f64;
                h += 1.0;
            }
            model_err += m_e;
            const_err += c_e;
            hidden += h;
            diffs.push((c_e - m_e) / h.max(1.0));
        }
        let (_, sd) = crate::eval::mean_sd(&diffs);
        vec![
            ("masked_patch_mse".into(), model_err / hidden.max(1.0)),
            ("mean_patch_mse".into(), const_err / hidden.max(1.0)),
            (
                "difference_se".into(),
                sd / (diffs.len().max(1) as f64).sqrt(),
            ),
        ]
    }

    fn backbone_prefix(&self) -> &'static str {
        "encoder."
    }

    fn backbone(&self) -> Backbone {
        self.model.encoder.clone()
    }

    crate::methods::model_checkpoint!(model);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patchify_orders_rows_columns_channels() {
        // 2 channels, 4 x 4, patch 2: value = 100 c + 10 y + x.
        let data: Vec<f32> = (0..2)
            .flat_map(|c| {
                (0..4).flat_map(move |y| (0..4).map(move |x| (100 * c + 10 * y + x) as f32))
            })
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(data, [1, 2, 4, 4]), &Device::flex());
        let p = patchify(x, 2);
        assert_eq!(p.dims(), [1, 4, 8]);
        let v: Vec<f32> = p.into_data().try_to_vec::<f32>().unwrap();
        // Patch 1 (top right): pixels (y, x) = (0, 2), (0, 3), (1, 2), (1, 3), channels inner.
        assert_eq!(
            &v[8..16],
            &[2.0, 102.0, 3.0, 103.0, 12.0, 112.0, 13.0, 113.0]
        );
    }

    #[test]
    fn masking_restores_patch_order_and_the_loss_counts_hidden_patches_only() {
        let (order, restore) = random_masking(10, 42);
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        for (place, &patch) in order.iter().enumerate() {
            assert_eq!(restore[patch], place);
        }
        assert_ne!(random_masking(10, 43).0, order);
        // Two patches of 2 values; only the second is hidden: its error alone counts.
        let dev = Device::flex();
        let pred =
            Tensor::<3>::from_data(TensorData::new(vec![9.0, 9.0, 1.0, 3.0], [1, 2, 2]), &dev);
        let target =
            Tensor::<3>::from_data(TensorData::new(vec![0.0, 0.0, 0.0, 0.0], [1, 2, 2]), &dev);
        let mask = Tensor::<2>::from_data(TensorData::new(vec![0.0, 1.0], [1, 2]), &dev);
        let got: f32 = masked_patch_mse(pred, target, mask).into_scalar();
        assert!((got - 5.0).abs() < 1e-6, "{got}");
        // Normalized patches: mean 0, variance 1 (up to the 1e-6).
        let t = Tensor::<3>::from_data(TensorData::new(vec![1.0, 3.0, 5.0, 7.0], [1, 1, 4]), &dev);
        let v: Vec<f32> = normalize_patches(t)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let s = 5.0f32.sqrt();
        for (a, b) in v.iter().zip([-3.0 / s, -1.0 / s, 1.0 / s, 3.0 / s]) {
            assert!((a - b).abs() < 1e-5, "{v:?}");
        }
    }
}
