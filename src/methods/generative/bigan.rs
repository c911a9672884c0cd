//! BiGAN / ALI: "Adversarial Feature Learning" (Donahue, Krähenbühl & Darrell, ICLR 2017);
//! "Adversarially Learned Inference" (Dumoulin et al., ICLR 2017).
//!
//! A generator `G` maps codes `z ~ N(0, I)` to images, an encoder `E` (the backbone and a
//! linear map) maps images to codes, and a discriminator `D` tells real pairs `(x, E(x))` from
//! generated pairs `(G(z), z)`. Updates alternate: `D` descends its cross-entropy with `E`
//! and `G` held fixed, then `E` and `G` descend the cross-entropy with the labels flipped (the
//! non-saturating form) with `D` held fixed. At the optimum `E` inverts `G`, and the encoder's
//! features are the representation.
//!
//! Options beyond the papers' recipe (all off by default): a slower discriminator
//! (`discriminator_lr_scale`), BigBiGAN's unary scores of the image and the code alone
//! (Donahue & Simonyan, NeurIPS 2019), and ALICE's cycle term on `G(E(x))` (Li et al.,
//! NeurIPS 2017), which gives the encoder a gradient about the image while the
//! discriminator still tells the pairs apart by the image alone.

use crate::augment::{Image, ViewConfig, standard_normal};
use crate::config::RunConfig;
use crate::data::Dataset;
use crate::data::loader::{HostBatch, ViewSpec, mix_seed};
use crate::error::{Error, Result};
use crate::methods::generative::autoencoder::{
    Reconstruction, pixel_target, reconstruction_errors, reconstruction_loss,
};
use crate::methods::pretext_view;
use crate::methods::{Method, MethodInfo, StepOutput};
use crate::nn::Backbone;
use crate::nn::decoder::Decoder;
use crate::nn::heads::Mlp;
use crate::train::optim::Optimizer;
use crate::train::step::finite_scalar;
use burn::module::list_param_ids;
use burn::nn::{DropoutConfig, Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::activation::{sigmoid, softplus};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Registry entry.
pub const INFO: MethodInfo = MethodInfo {
    name: "bigan",
    paper: "Donahue et al. 2017, Adversarial Feature Learning (BiGAN); Dumoulin et al. 2017 (ALI)",
    summary: "encoder and generator fool a discriminator of (image, code) pairs",
    settings: crate::methods::complete_settings::<BiganConfig>,
    trained_readout: crate::methods::global_readout,
    build,
};

/// BiGAN settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BiganConfig {
    /// Code dimension.
    pub latent_dim: usize,
    /// Widths of the generator's upsampling blocks, coarse to fine.
    pub generator_widths: Vec<usize>,
    /// Width multiplier of the discriminator's ConvNet on images.
    pub discriminator_width: f32,
    /// Hidden width of the discriminator's joint MLP.
    pub discriminator_hidden: usize,
    /// Dropout on the discriminator's joint input (image features and code) while training:
    /// it keeps the discriminator from winning outright early on (the BiGAN and ALI papers
    /// use dropout in the discriminator). 0 = off.
    pub discriminator_dropout: f64,
    /// The discriminator's learning rate as a multiple of the schedule's (the encoder and
    /// generator take the schedule's): below 1 slows a discriminator that wins outright.
    pub discriminator_lr_scale: f64,
    /// BigBiGAN's unary scores (Donahue & Simonyan 2019): next to the joint score of `(x, z)`,
    /// the discriminator scores the image alone and the code alone, and the loss sums the three
    /// cross-entropies. The code's own score pushes the encoder's codes towards N(0, I) even
    /// while the joint score tells the pairs apart by the image.
    pub unary_scores: bool,
    /// ALICE's cycle term (Li et al. 2017): the encoder and generator also descend
    /// `cycle_weight` times the per-pixel Bernoulli cross-entropy of `G(E(x))` against `x`.
    /// 0 = plain BiGAN.
    pub cycle_weight: f32,
}

impl crate::methods::Settings for BiganConfig {}

impl Default for BiganConfig {
    fn default() -> Self {
        BiganConfig {
            latent_dim: 64,
            generator_widths: vec![64, 32, 16],
            discriminator_width: 0.5,
            discriminator_hidden: 256,
            discriminator_dropout: 0.0,
            discriminator_lr_scale: 1.0,
            unary_scores: false,
            cycle_weight: 0.0,
        }
    }
}

/// Encoder, generator and discriminator.
#[derive(Module, Debug)]
pub struct BiganModel {
    /// The representation (the encoder's trunk).
    pub backbone: Backbone,
    /// Encoder: features to the code.
    pub encoder_head: Linear,
    /// Generator: code to image logits.
    pub generator: Decoder,
    /// Discriminator's image path (its last feature map, flattened, is used).
    pub disc_image: Backbone,
    /// Discriminator's joint MLP on (image features, code).
    pub disc_joint: Mlp,
    /// With `unary_scores`: the discriminator's score of the image features alone.
    pub disc_image_score: Option<Linear>,
    /// With `unary_scores`: the discriminator's MLP scoring the code alone.
    pub disc_code: Option<Mlp>,
}

impl BiganModel {
    /// The encoder's codes `E(x)` of images `x`.
    pub fn encode(&self, x: Tensor<4>) -> Tensor<2> {
        self.encoder_head.forward(self.backbone.forward(x))
    }

    /// The pixel logits of the cycles `G(E(x))`.
    pub fn cycle(&self, x: Tensor<4>) -> Tensor<4> {
        let side = x.dims()[2];
        self.generator.forward_vector(self.encode(x), side)
    }
}

/// The BiGAN method.
pub struct Bigan {
    model: BiganModel,
    cfg: BiganConfig,
    view: ViewConfig,
    device: Device,
    seed: u64,
}

fn build(run: &RunConfig, in_channels: usize, device: &Device) -> Result<Box<dyn Method>> {
    let cfg: BiganConfig = crate::methods::settings(run)?;
    if cfg.latent_dim == 0
        || cfg.generator_widths.is_empty()
        || !(cfg.discriminator_width > 0.0)
        || !(0.0..1.0).contains(&cfg.discriminator_dropout)
        || !(cfg.discriminator_lr_scale > 0.0 && cfg.discriminator_lr_scale.is_finite())
        || !(cfg.cycle_weight >= 0.0 && cfg.cycle_weight.is_finite())
    {
        return Err(Error::Config(format!(
            "bigan: latent_dim ({}) must be positive, generator_widths non-empty, discriminator_width ({}) positive, discriminator_dropout ({}) in [0, 1), discriminator_lr_scale ({}) positive, cycle_weight ({}) at least 0",
            cfg.latent_dim,
            cfg.discriminator_width,
            cfg.discriminator_dropout,
            cfg.discriminator_lr_scale,
            cfg.cycle_weight
        )));
    }
    if run.optim.kind != crate::train::optim::OptimizerKind::AdamW {
        tracing::warn!(
            "bigan with {:?}: the papers train GANs with Adam (--optimizer adamw --set schedule.lr=0.0002 --set optim.beta1=0.5 --set optim.weight_decay=0)",
            run.optim.kind
        );
    }
    let backbone = Backbone::new(&run.backbone, in_channels, device);
    let f = backbone.feature_dim();
    let mut disc_cfg = run.backbone.clone();
    disc_cfg.width = cfg.discriminator_width;
    let disc_image = Backbone::new(&disc_cfg, in_channels, device);
    // The discriminator reads the whole last feature map, flattened: pooled features keep
    // only texture statistics, and a generator can fool them with textures.
    let disc_features = disc_image.flat_dim(in_channels, run.views.size, device);
    let side = run
        .views
        .size
        .div_ceil(1 << cfg.generator_widths.len())
        .max(1);
    let model = BiganModel {
        encoder_head: LinearConfig::new(f, cfg.latent_dim).init(device),
        generator: Decoder::from_vector(
            cfg.latent_dim,
            side,
            &cfg.generator_widths,
            in_channels,
            device,
        ),
        disc_joint: Mlp::new(
            disc_features + cfg.latent_dim,
            cfg.discriminator_hidden,
            1,
            device,
        ),
        disc_image_score: cfg
            .unary_scores
            .then(|| LinearConfig::new(disc_features, 1).init(device)),
        disc_code: cfg
            .unary_scores
            .then(|| Mlp::new(cfg.latent_dim, cfg.discriminator_hidden, 1, device)),
        disc_image,
        backbone,
    };
    Ok(Box::new(Bigan {
        model,
        view: pretext_view(run),
        device: device.clone(),
        seed: run.seed,
        cfg,
    }))
}

impl Bigan {
    /// Generated images `G(z)` in the views' normalized units and, with the cycle term, the
    /// pixel logits of the cycles `G(ex)`. The codes and the encoder's codes then go through
    /// the generator in one batch, in both halves of the step, so that its BatchNorm
    /// statistics cover both and the discriminator trains on the same fakes the generator
    /// makes (with the cycles in their own batch, the running statistics came from the codes
    /// alone and held-out cycles were worse than the mean image; with the shared batch in the
    /// generator's half only, the discriminator saw other fakes and the generator collapsed).
    fn generate(
        &self,
        m: &BiganModel,
        z: Tensor<2>,
        ex: &Tensor<2>,
        side: usize,
    ) -> (Tensor<4>, Option<Tensor<4>>) {
        if self.cfg.cycle_weight > 0.0 {
            let b = z.dims()[0];
            let logits = m
                .generator
                .forward_vector(Tensor::cat(vec![z, ex.clone()], 0), side);
            (
                self.to_views(logits.clone().narrow(0, 0, b)),
                Some(logits.narrow(0, b, b)),
            )
        } else {
            let logits = m.generator.forward_vector(z, side);
            (self.to_views(logits), None)
        }
    }

    /// Generator logits in the views' normalized units: `(sigmoid(logits) - mean) / std`.
    fn to_views(&self, logits: Tensor<4>) -> Tensor<4> {
        let px = sigmoid(logits);
        let c = px.dims()[1];
        let stat = |v: &[f32]| {
            let vals: Vec<f32> = (0..c).map(|i| v[i.min(v.len() - 1)]).collect();
            Tensor::<4>::from_data(TensorData::new(vals, [1, c, 1, 1]), &self.device)
        };
        (px - stat(&self.view.mean)) / stat(&self.view.std)
    }

    /// Discriminator logits `(real, fake)` of the real pairs `(x, ex)` and the generated pairs
    /// `(gx, z)`: the joint score, then with `unary_scores` the image's and the code's. Real
    /// and generated pairs are scored in one batch: with separate batches, BatchNorm would
    /// normalize away what tells them apart (a generator's grey background against real black
    /// ones).
    fn discriminate_pairs(
        &self,
        model: &BiganModel,
        x: Tensor<4>,
        ex: Tensor<2>,
        gx: Tensor<4>,
        z: Tensor<2>,
    ) -> Vec<(Tensor<2>, Tensor<2>)> {
        let b = x.dims()[0];
        let f = model.disc_image.forward_flat(Tensor::cat(vec![x, gx], 0));
        let codes = Tensor::cat(vec![ex, z], 0);
        // Dropout at rate 0 passes its input through.
        let dropout = DropoutConfig::new(self.cfg.discriminator_dropout).init();
        let joint = dropout.forward(Tensor::cat(vec![f.clone(), codes.clone()], 1));
        let mut logits = vec![model.disc_joint.forward(joint)];
        if let (Some(image_score), Some(code_score)) = (&model.disc_image_score, &model.disc_code) {
            logits.push(image_score.forward(dropout.forward(f)));
            logits.push(code_score.forward(dropout.forward(codes)));
        }
        logits
            .into_iter()
            .map(|l| (l.clone().narrow(0, 0, b), l.narrow(0, b, b)))
            .collect()
    }
}

/// The discriminator's loss over its scores (`real_is_real`), or the encoder-generator's
/// (labels flipped): the sum of the mean cross-entropies.
fn pair_loss(scores: Vec<(Tensor<2>, Tensor<2>)>, real_is_real: bool) -> Tensor<1> {
    scores
        .into_iter()
        .map(|(real, fake)| bce(real, real_is_real) + bce(fake, !real_is_real))
        .reduce(|a, b| a + b)
        .expect("at least the joint score")
}

/// Mean binary cross-entropy of logits `l` against label 1 (`real`) or 0.
fn bce(l: Tensor<2>, real: bool) -> Tensor<1> {
    let l = if real { l.neg() } else { l };
    softplus(l, 1.0).mean()
}

impl Method for Bigan {
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
        // Steps done, this one included: keyed to the batch, so a resume draws the same.
        let step = batch.step + 1;
        let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[self.seed, 0xB16A, step]));
        if self.cfg.discriminator_dropout > 0.0 {
            // Dropout masks come from the backend's generator, which a checkpoint cannot hold:
            // reseeding it from the step draws the same masks after a resume.
            self.device.seed(mix_seed(&[self.seed, 0xD80F, step]));
        }
        let x = batch.views[0].to_tensor(&self.device);
        let [b, _, side, _] = x.dims();
        let d = self.cfg.latent_dim;
        let z = Tensor::<2>::from_data(
            TensorData::new(standard_normal(b * d, &mut rng), [b, d]),
            &self.device,
        );

        // Discriminator step, encoder and generator held fixed.
        let m = &self.model;
        let ex = m.encode(x.clone()).detach();
        let (gz, _) = self.generate(m, z.clone(), &ex, side);
        let scores = self.discriminate_pairs(m, x.clone(), ex, gz.detach(), z.clone());
        let d_loss = pair_loss(scores, true);
        let d_value = finite_scalar(&d_loss, step, "BiGAN discriminator loss")?;
        let mut grads = d_loss.backward();
        let mut ids = list_param_ids(&m.disc_image);
        ids.extend(list_param_ids(&m.disc_joint));
        ids.extend(list_param_ids(&m.disc_image_score));
        ids.extend(list_param_ids(&m.disc_code));
        let d_grads = GradientsParams::from_params(&mut grads, &self.model, &ids);
        let d_lr = lr * self.cfg.discriminator_lr_scale;
        self.model = opt.step(d_lr, self.model.clone(), d_grads);

        // Encoder and generator step against the updated discriminator, labels flipped.
        let m = &self.model;
        let ex = m.encode(x.clone());
        let (gz, cycle_logits) = self.generate(m, z.clone(), &ex, side);
        let scores = self.discriminate_pairs(m, x.clone(), ex, gz, z);
        let adversarial = pair_loss(scores, false);
        let adversarial_value = finite_scalar(&adversarial, step, "BiGAN encoder-generator loss")?;
        let mut eg_loss = adversarial;
        let mut eg_value = adversarial_value;
        let mut terms = vec![
            ("discriminator_loss".into(), d_value),
            ("encoder_generator_loss".into(), adversarial_value),
        ];
        if let Some(logits) = cycle_logits {
            let target = pixel_target(&batch.views[0], &self.view).to_tensor(&self.device);
            let [_, c, h, w] = x.dims();
            let cycle =
                reconstruction_loss(Reconstruction::Bce, logits, target) / (c * h * w) as f32;
            let cycle_value = finite_scalar(&cycle, step, "BiGAN cycle loss")?;
            terms.push(("cycle_loss".into(), cycle_value));
            eg_value += self.cfg.cycle_weight * cycle_value;
            eg_loss = eg_loss + cycle.mul_scalar(self.cfg.cycle_weight);
        }
        let mut grads = eg_loss.backward();
        let mut ids = list_param_ids(&m.backbone);
        ids.extend(list_param_ids(&m.encoder_head));
        ids.extend(list_param_ids(&m.generator));
        let eg_grads = GradientsParams::from_params(&mut grads, &self.model, &ids);
        self.model = opt.step(lr, self.model.clone(), eg_grads);
        Ok(StepOutput {
            loss: eg_value,
            terms,
        })
    }

    /// The held-out cycle `G(E(x))`: its squared error per image against the mean image's.
    fn pretext_metrics(&self, data: &Dataset, limit: usize) -> Vec<(String, f64)> {
        let model = self.model.valid();
        let device = crate::device::of(&model);
        let (rec, mean_img) = reconstruction_errors(data, &self.view, limit, |x, _| {
            model.cycle(x.to_tensor(&device))
        });
        vec![
            ("reconstruction_sse".to_string(), rec),
            ("mean_image_sse".to_string(), mean_img),
        ]
    }

    fn write_previews(&self, data: &Dataset, dir: &Path) -> Result<Vec<PathBuf>> {
        let model = self.model.valid();
        let device = crate::device::of(&model);
        let view = self.view.eval_only();
        let n = data.len().min(8);
        let x = crate::eval::plain_batch(data, &view, 0..n);
        let side = x.shape[2];
        let d = self.cfg.latent_dim;
        let to_images = crate::preview::images_of;
        // Reconstructions G(E(x)) next to x.
        let recon = to_images(sigmoid(model.cycle(x.to_tensor(&device))));
        let rows: Vec<Vec<Image>> = (0..n)
            .map(|i| {
                vec![
                    crate::preview::denormalize(&x, i, &view.mean, &view.std),
                    recon[i].clone(),
                ]
            })
            .collect();
        let recon_path = dir.join("bigan_reconstructions.png");
        crate::preview::save_rows(&recon_path, &rows, 3)?;
        let mut rng = ChaCha8Rng::seed_from_u64(0xB16);
        let z = Tensor::<2>::from_data(
            TensorData::new(standard_normal(64 * d, &mut rng), [64, d]),
            &device,
        );
        let samples = to_images(sigmoid(model.generator.forward_vector(z, side)));
        let rows: Vec<Vec<Image>> = samples.chunks(8).map(|r| r.to_vec()).collect();
        let path = dir.join("bigan_samples.png");
        crate::preview::save_rows(&path, &rows, 3)?;
        Ok(vec![recon_path, path])
    }

    fn backbone(&self) -> Backbone {
        self.model.backbone.clone()
    }

    crate::methods::model_checkpoint!(model);
}
