//! Generative pretext tasks: the autoencoder and the variational autoencoder ("Auto-Encoding
//! Variational Bayes", Kingma & Welling, ICLR 2014), at the "predict everything" end of the
//! lecture's spectrum of pretext tasks.
//!
//! The encoder is the backbone: its pooled feature vector (what evaluation reads) is the code
//! of the autoencoder, or, through two linear maps, the mean and log-variance of the VAE's
//! Gaussian posterior, sampled with the reparameterization trick. A decoder
//! ([`crate::nn::decoder`], from a vector) paints the image back. Reconstruction is
//! Bernoulli cross-entropy on pixels in `[0, 1]` (the default) or squared error; the VAE adds
//! `beta` times the KL divergence to the unit Gaussian, with `beta` ramped up linearly over
//! the warm-up epochs. Losses are per image (the negative ELBO in nats for the VAE); the
//! optimizer sees them divided by the number of pixels. The denoising option corrupts the encoder's input with Gaussian noise.

use crate::augment::{Image, ViewConfig, standard_normal};
use crate::config::RunConfig;
use crate::data::Dataset;
use crate::data::loader::{HostBatch, HostTensor, ViewSpec, mix_seed};
use crate::error::{Error, Result};
use crate::methods::pretext_view;
use crate::methods::{Method, MethodInfo, StepOutput};
use crate::nn::Backbone;
use crate::nn::decoder::Decoder;
use crate::train::optim::Optimizer;
use crate::train::step::finite_scalar;
use burn::nn::{Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::activation::{sigmoid, softplus};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Registry entry of the autoencoder.
pub const AE_INFO: MethodInfo = MethodInfo {
    name: "autoencoder",
    paper: "the convolutional (denoising) autoencoder: encoder = backbone, decoder head",
    summary: "reconstruct the image from the backbone's pooled features",
    settings: crate::methods::complete_settings::<AutoencoderConfig>,
    trained_readout: crate::methods::global_readout,
    build: |run, c, d| build(run, c, d, false),
};

/// Registry entry of the VAE.
pub const VAE_INFO: MethodInfo = MethodInfo {
    name: "vae",
    paper: "Kingma & Welling 2014, Auto-Encoding Variational Bayes",
    summary: "Gaussian latent from the backbone, reparameterization, reconstruction + beta * KL",
    settings: crate::methods::complete_settings::<AutoencoderConfig>,
    trained_readout: crate::methods::global_readout,
    build: |run, c, d| build(run, c, d, true),
};

/// How reconstructions are scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reconstruction {
    /// Bernoulli cross-entropy of pixels in `[0, 1]` (a likelihood: the ELBO is in nats).
    Bce,
    /// Squared error on pixels in `[0, 1]`.
    L2,
}

/// Autoencoder and VAE settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoencoderConfig {
    /// Reconstruction loss.
    pub reconstruction: Reconstruction,
    /// Standard deviation of the Gaussian noise added to the encoder's input (denoising; 0 =
    /// off), in normalized units.
    pub noise: f32,
    /// VAE latent dimension.
    pub latent_dim: usize,
    /// VAE weight of the KL term at the end of warm-up.
    pub beta: f32,
    /// VAE epochs over which the KL weight ramps linearly from 0 to `beta`.
    pub kl_warmup_epochs: f64,
    /// Widths of the decoder's upsampling blocks, coarse to fine.
    pub decoder_widths: Vec<usize>,
}

impl crate::methods::Settings for AutoencoderConfig {}

impl Default for AutoencoderConfig {
    fn default() -> Self {
        AutoencoderConfig {
            reconstruction: Reconstruction::Bce,
            noise: 0.0,
            latent_dim: 64,
            beta: 1.0,
            kl_warmup_epochs: 1.0,
            decoder_widths: vec![64, 32, 16],
        }
    }
}

/// KL divergence of `N(mu, exp(logvar))` from `N(0, I)`, summed over the latent dimensions
/// and averaged over the batch: `-0.5 * sum(1 + logvar - mu^2 - exp(logvar))`.
pub fn kl_to_unit_gaussian(mu: Tensor<2>, logvar: Tensor<2>) -> Tensor<1> {
    let b = mu.dims()[0];
    let terms = logvar.clone() + 1.0 - mu.powi_scalar(2) - logvar.exp();
    terms.sum().mul_scalar(-0.5 / b as f32)
}

/// Reconstruction loss of decoder `logits` against `target` pixels in `[0, 1]` (`[B, C, H,
/// W]`), summed over pixels and averaged over the batch.
pub fn reconstruction_loss(
    kind: Reconstruction,
    logits: Tensor<4>,
    target: Tensor<4>,
) -> Tensor<1> {
    let b = logits.dims()[0] as f32;
    match kind {
        // BCE with logits, stable form: softplus(x) - t * x.
        Reconstruction::Bce => (softplus(logits.clone(), 1.0) - target * logits).sum() / b,
        Reconstruction::L2 => (sigmoid(logits) - target).powi_scalar(2).sum() / b,
    }
}

/// Pixels in `[0, 1]` of views `x` normalized with `view`'s mean and std (the reconstruction
/// target).
pub fn pixel_target(x: &HostTensor, view: &ViewConfig) -> HostTensor {
    let mut t = x.clone();
    let [b, c, h, w] = x.shape;
    for i in 0..b {
        let img = crate::preview::denormalize(x, i, &view.mean, &view.std);
        t.data[i * c * h * w..(i + 1) * c * h * w]
            .iter_mut()
            .zip(img.data)
            .for_each(|(d, v)| *d = v.clamp(0.0, 1.0));
    }
    t
}

/// Held-out reconstruction error: the mean squared error per image of `reconstruct(x,
/// target)`'s pixel logits against the pixels of the first `limit` images of `data` (plain
/// views), and that of the mean image over those images (the baseline). `reconstruct` gets
/// the normalized views and their pixels in `[0, 1]`, in batches of 256.
pub fn reconstruction_errors(
    data: &Dataset,
    view: &ViewConfig,
    limit: usize,
    mut reconstruct: impl FnMut(&HostTensor, &HostTensor) -> Tensor<4>,
) -> (f64, f64) {
    let plain = view.eval_only();
    let end = limit.min(data.len());
    let (mut rec, mut n) = (0.0f64, 0usize);
    // The baseline predicts every pixel as its mean over the evaluated images; its error is
    // sum(t^2) - (sum t)^2 / n per pixel, gathered in the same pass.
    let (mut sum, mut sum_sq): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    for start in (0..end).step_by(256) {
        let range = start..(start + 256).min(end);
        let x = crate::eval::plain_batch(data, &plain, range.clone());
        let target = pixel_target(&x, view);
        let per = target.data.len() / range.len().max(1);
        if sum.is_empty() {
            (sum, sum_sq) = (vec![0.0; per], vec![0.0; per]);
        }
        // Squared error per image, to compare with the mean image whatever the loss.
        let pixels = crate::device::host_values(sigmoid(reconstruct(&x, &target)));
        for (i, img) in target.data.chunks(per).enumerate() {
            let p = &pixels[i * per..(i + 1) * per];
            rec += img
                .iter()
                .zip(p)
                .map(|(t, y)| ((t - y) as f64).powi(2))
                .sum::<f64>();
            for (k, &t) in img.iter().enumerate() {
                sum[k] += t as f64;
                sum_sq[k] += (t as f64).powi(2);
            }
        }
        n += range.len();
    }
    let n = n.max(1) as f64;
    let mean_img: f64 = sum.iter().zip(&sum_sq).map(|(s, q)| q - s * s / n).sum();
    (rec / n, mean_img / n)
}

/// Encoder (backbone), the VAE's posterior maps, and the decoder.
#[derive(Module, Debug)]
pub struct AutoencoderModel {
    /// The representation (the encoder).
    pub backbone: Backbone,
    /// VAE only: features to the posterior mean.
    pub mu: Option<Linear>,
    /// VAE only: features to the posterior log-variance.
    pub logvar: Option<Linear>,
    /// From the code to pixel logits.
    pub decoder: Decoder,
}

/// The autoencoder or VAE method.
pub struct Autoencoder {
    model: AutoencoderModel,
    cfg: AutoencoderConfig,
    view: ViewConfig,
    device: Device,
    seed: u64,
    /// VAE: `(epoch, sum of per-image ELBOs, images)` of the epoch in progress (a log
    /// summary only: after a resume inside an epoch it covers the steps since the resume).
    elbo_epoch: (usize, f64, usize),
}

fn build(
    run: &RunConfig,
    in_channels: usize,
    device: &Device,
    variational: bool,
) -> Result<Box<dyn Method>> {
    let cfg: AutoencoderConfig = crate::methods::settings(run)?;
    if cfg.latent_dim == 0
        || cfg.decoder_widths.is_empty()
        || !(cfg.beta >= 0.0)
        || !(cfg.noise >= 0.0)
        || !(cfg.kl_warmup_epochs >= 0.0)
    {
        return Err(Error::Config(format!(
            "autoencoder: latent_dim ({}) must be positive, decoder_widths non-empty, beta ({}), noise ({}) and kl_warmup_epochs ({}) non-negative",
            cfg.latent_dim, cfg.beta, cfg.noise, cfg.kl_warmup_epochs
        )));
    }
    let backbone = Backbone::new(&run.backbone, in_channels, device);
    let f = backbone.feature_dim();
    let side = run
        .views
        .size
        .div_ceil(1 << cfg.decoder_widths.len())
        .max(1);
    let code = if variational { cfg.latent_dim } else { f };
    let model = AutoencoderModel {
        mu: variational.then(|| LinearConfig::new(f, cfg.latent_dim).init(device)),
        logvar: variational.then(|| LinearConfig::new(f, cfg.latent_dim).init(device)),
        decoder: Decoder::from_vector(code, side, &cfg.decoder_widths, in_channels, device),
        backbone,
    };
    Ok(Box::new(Autoencoder {
        model,
        view: ViewConfig {
            mean: run.views.mean.clone(),
            std: run.views.std.clone(),
            ..pretext_view(run)
        },
        device: device.clone(),
        seed: run.seed,
        elbo_epoch: (0, 0.0, 0),
        cfg,
    }))
}

/// One pass: the code (or posterior) of a batch and the decoder's logits.
struct Pass {
    logits: Tensor<4>,
    posterior: Option<(Tensor<2>, Tensor<2>)>,
}

impl Autoencoder {
    fn variational(&self) -> bool {
        self.model.mu.is_some()
    }

    fn pass<R: Rng>(
        &self,
        model: &AutoencoderModel,
        x: &HostTensor,
        rng: &mut R,
        sample: bool,
        device: &Device,
    ) -> Pass {
        let mut input = x.clone();
        if self.cfg.noise > 0.0 && sample {
            let noise = standard_normal(input.data.len(), rng);
            for (v, e) in input.data.iter_mut().zip(noise) {
                *v += self.cfg.noise * e;
            }
        }
        let feats = model.backbone.forward(input.to_tensor(device));
        let side = x.shape[2];
        match (&model.mu, &model.logvar) {
            (Some(mu_map), Some(lv_map)) => {
                let mu = mu_map.forward(feats.clone());
                let logvar = lv_map.forward(feats).clamp(-10.0, 10.0);
                let z = if sample {
                    let [b, d] = mu.dims();
                    let eps = standard_normal(b * d, rng);
                    let eps = Tensor::<2>::from_data(TensorData::new(eps, [b, d]), device);
                    mu.clone() + eps * logvar.clone().mul_scalar(0.5).exp()
                } else {
                    mu.clone()
                };
                Pass {
                    logits: model.decoder.forward_vector(z, side),
                    posterior: Some((mu, logvar)),
                }
            }
            _ => Pass {
                logits: model.decoder.forward_vector(feats, side),
                posterior: None,
            },
        }
    }

    fn inference(&self) -> (AutoencoderModel, Device) {
        let model = self.model.valid();
        let device = crate::device::of(&model);
        (model, device)
    }
}

impl Autoencoder {
    /// The KL weight (VAE) after `done` steps: `beta`, ramped linearly from 0 over the first
    /// `kl_warmup_epochs` epochs of `steps_per_epoch` steps.
    fn beta_at(&self, done: u64, steps_per_epoch: u64) -> f32 {
        let warm = self.cfg.kl_warmup_epochs * steps_per_epoch as f64;
        if warm <= 0.0 {
            self.cfg.beta
        } else {
            self.cfg.beta * (done as f64 / warm).min(1.0) as f32
        }
    }
}

impl Method for Autoencoder {
    fn name(&self) -> &'static str {
        if self.variational() {
            VAE_INFO.name
        } else {
            AE_INFO.name
        }
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
        // Steps done, this one included: keyed to the batch, so a resume draws the same.
        let step = batch.step + 1;
        let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[self.seed, 0xAE, step]));
        let beta = self.beta_at(batch.step, batch.steps_per_epoch);
        let x = &batch.views[0];
        let target = pixel_target(x, &self.view).to_tensor(&self.device);
        let pass = self.pass(&self.model, x, &mut rng, true, &self.device);
        let rec = reconstruction_loss(self.cfg.reconstruction, pass.logits, target);
        let mut terms = vec![(
            "reconstruction".to_string(),
            finite_scalar(&rec, step, "reconstruction")?,
        )];
        let loss = match pass.posterior {
            Some((mu, logvar)) => {
                let kl = kl_to_unit_gaussian(mu, logvar);
                let kl_v = finite_scalar(&kl, step, "KL")?;
                terms.push(("kl".into(), kl_v));
                terms.push(("beta".into(), beta));
                if self.cfg.reconstruction == Reconstruction::Bce {
                    let elbo = -(terms[0].1 + kl_v);
                    terms.push(("elbo".into(), elbo));
                    let b = batch.indices.len();
                    self.elbo_epoch.0 = batch.epoch;
                    self.elbo_epoch.1 += elbo as f64 * b as f64;
                    self.elbo_epoch.2 += b;
                    if step % batch.steps_per_epoch.max(1) == 0 {
                        let (epoch, sum, n) = self.elbo_epoch;
                        let mean = sum / n.max(1) as f64;
                        tracing::info!(
                            "epoch {epoch}: mean training ELBO {mean:.2} nats per image"
                        );
                        terms.push(("epoch_elbo".into(), mean as f32));
                        self.elbo_epoch = (epoch + 1, 0.0, 0);
                    }
                }
                rec + kl * beta
            }
            None => rec,
        };
        // Optimized per pixel (the same optimum as the per-image sum, with gradients of the
        // size the optimizers' learning rates expect); reported per image, in nats for BCE.
        let pixels = (x.shape[1] * x.shape[2] * x.shape[3]) as f32;
        let value = finite_scalar(&loss, step, "autoencoder loss")?;
        let loss = loss / pixels;
        let grads = GradientsParams::from_grads(loss.backward(), &self.model);
        self.model = opt.step(lr, self.model.clone(), grads);
        Ok(StepOutput { loss: value, terms })
    }

    fn pretext_metrics(&self, data: &Dataset, limit: usize) -> Vec<(String, f64)> {
        let (model, device) = self.inference();
        let mut rng = ChaCha8Rng::seed_from_u64(0xE1B0);
        let (mut elbo, mut n) = (0.0f64, 0usize);
        let (rec, mean_img) = reconstruction_errors(data, &self.view, limit, |x, target| {
            let pass = self.pass(&model, x, &mut rng, self.variational(), &device);
            if let Some((mu, logvar)) = &pass.posterior {
                let t = target.to_tensor(&device);
                let bce: f32 =
                    reconstruction_loss(Reconstruction::Bce, pass.logits.clone(), t).into_scalar();
                let k: f32 = kl_to_unit_gaussian(mu.clone(), logvar.clone()).into_scalar();
                let b = x.shape[0];
                elbo += (bce + k) as f64 * b as f64;
                n += b;
            }
            pass.logits
        });
        let mut out = vec![
            ("reconstruction_sse".to_string(), rec),
            ("mean_image_sse".to_string(), mean_img),
        ];
        if self.variational() {
            out.push(("negative_elbo_nats".to_string(), elbo / n.max(1) as f64));
        }
        out
    }

    fn write_previews(&self, data: &Dataset, dir: &Path) -> Result<Vec<PathBuf>> {
        let (model, device) = self.inference();
        let view = self.view.eval_only();
        let n = data.len().min(8);
        let x = crate::eval::plain_batch(data, &view, 0..n);
        let target = pixel_target(&x, &self.view);
        let mut rng = ChaCha8Rng::seed_from_u64(0x9E1);
        let pass = self.pass(&model, &x, &mut rng, false, &device);
        let to_images = |logits: Tensor<4>| crate::preview::images_of(sigmoid(logits));
        let recon = to_images(pass.logits);
        let truth = crate::preview::denormalize;
        let rows: Vec<Vec<Image>> = (0..n)
            .map(|i| vec![truth(&target, i, &[0.0], &[1.0]), recon[i].clone()])
            .collect();
        let name = self.name();
        let path = dir.join(format!("{name}_reconstructions.png"));
        crate::preview::save_rows(&path, &rows, 3)?;
        let mut written = vec![path];
        if let Some(mu) = &model.mu {
            let d = mu.weight.dims()[1];
            let z = standard_normal(64 * d, &mut rng);
            let z = Tensor::<2>::from_data(TensorData::new(z, [64, d]), &device);
            let samples = to_images(model.decoder.forward_vector(z, x.shape[2]));
            let rows: Vec<Vec<Image>> = samples.chunks(8).map(|r| r.to_vec()).collect();
            let path = dir.join("vae_samples.png");
            crate::preview::save_rows(&path, &rows, 3)?;
            written.push(path);
        }
        Ok(written)
    }

    fn backbone(&self) -> Backbone {
        self.model.backbone.clone()
    }

    crate::methods::model_checkpoint!(model);
}
