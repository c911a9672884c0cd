//! Inpainting, or filling in the blanks: "Context Encoders: Feature Learning by Inpainting"
//! (Pathak et al., CVPR 2016).
//!
//! A region of the view is hidden (set to the data mean, 0 after normalization): random
//! blocks covering a quarter of the image (the default; the paper found random regions
//! gave better features than the central square) or a central square. The backbone encodes what is left, a decoder
//! ([`crate::nn::decoder`]) paints the whole image back, and the loss is the mean squared
//! error on the hidden pixels (plus, optionally, a small weight on the visible ones). The
//! paper's adversarial term is left out, as in its feature-learning experiments' L2 variant.

use crate::augment::ViewConfig;
use crate::config::RunConfig;
use crate::data::Dataset;
use crate::data::loader::HostTensor;
use crate::error::{Error, Result};
use crate::methods::MethodInfo;
use crate::methods::pretext::multi_task::{TaskKind, TaskOutput, build_single};
use crate::methods::pretext_view;
use crate::nn::Backbone;
use crate::nn::decoder::Decoder;
use crate::pretext::masks::{MaskKind, make_mask};
use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Registry entry.
pub const INFO: MethodInfo = MethodInfo {
    name: "inpainting",
    paper: "Pathak et al. 2016, Context Encoders: Feature Learning by Inpainting",
    summary: "paint back hidden random blocks (or a central square) from their context, L2 loss",
    settings: crate::methods::complete_settings::<InpaintingConfig>,
    trained_readout: crate::methods::global_readout,
    build: |run, c, d| build_single(TaskKind::Inpainting, run, c, d),
};

/// Inpainting settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InpaintingConfig {
    /// Which region is hidden.
    pub mask: MaskKind,
    /// Side of the central square relative to the view (the paper: 1/2), or the area
    /// fraction hidden by random blocks (the paper: 1/4).
    pub fraction: f32,
    /// Weight of the squared error on the visible pixels (0: hidden pixels only).
    pub context_weight: f32,
    /// Widths of the decoder's upsampling blocks, coarse to fine.
    pub decoder_widths: Vec<usize>,
    /// Decode from the pooled feature vector (the representation evaluation reads) through
    /// a fully connected layer, as the context encoder's channel-wise fully connected layer
    /// joins all positions; `false` decodes the last feature map directly.
    pub bottleneck: bool,
}

impl crate::methods::Settings for InpaintingConfig {}

impl Default for InpaintingConfig {
    fn default() -> Self {
        InpaintingConfig {
            mask: MaskKind::RandomBlocks,
            fraction: 0.25,
            context_weight: 0.0,
            decoder_widths: vec![64, 32, 16],
            bottleneck: true,
        }
    }
}

/// The decoder that paints the image back.
#[derive(Module, Debug)]
pub struct InpaintingHead {
    /// From the last feature map to image channels.
    pub decoder: Decoder,
}

/// The inpainting task.
pub struct InpaintingTask {
    cfg: InpaintingConfig,
    view: ViewConfig,
}

/// Masked inputs, masks and reconstructions of one batch.
struct Filled {
    masked: HostTensor,
    mask: Vec<f32>,
    output: Tensor<4>,
}

impl InpaintingTask {
    /// The task and its decoder for a backbone with `features` channels on images with
    /// `channels` channels.
    pub fn new(
        cfg: &InpaintingConfig,
        run: &RunConfig,
        channels: usize,
        features: usize,
        device: &Device,
    ) -> Result<(Self, InpaintingHead)> {
        let cfg = cfg.clone();
        if !(cfg.fraction > 0.0 && cfg.fraction < 1.0)
            || !(cfg.context_weight >= 0.0)
            || cfg.decoder_widths.is_empty()
        {
            return Err(Error::Config(format!(
                "inpainting: fraction = {} must be in (0, 1), context_weight = {} non-negative, decoder_widths non-empty",
                cfg.fraction, cfg.context_weight
            )));
        }
        let decoder = if cfg.bottleneck {
            let side = run
                .views
                .size
                .div_ceil(1 << cfg.decoder_widths.len())
                .max(1);
            Decoder::from_vector(features, side, &cfg.decoder_widths, channels, device)
        } else {
            Decoder::new(features, &cfg.decoder_widths, channels, device)
        };
        let head = InpaintingHead { decoder };
        Ok((
            InpaintingTask {
                cfg,
                view: pretext_view(run),
            },
            head,
        ))
    }

    /// One view per image.
    pub fn views(&self) -> Vec<ViewConfig> {
        vec![self.view.clone()]
    }

    /// Hides the masked region of every image and paints it back.
    fn fill<R: Rng>(
        &self,
        head: &InpaintingHead,
        backbone: &Backbone,
        view: &HostTensor,
        rng: &mut R,
        device: &Device,
    ) -> Filled {
        let [b, c, h, w] = view.shape;
        let mut masked = view.clone();
        let mut mask = Vec::with_capacity(b * h * w);
        for i in 0..b {
            let m = make_mask(self.cfg.mask, h.min(w), self.cfg.fraction, rng);
            for ch in 0..c {
                let plane = &mut masked.data[(i * c + ch) * h * w..(i * c + ch + 1) * h * w];
                for (v, &hidden) in plane.iter_mut().zip(&m) {
                    if hidden > 0.0 {
                        *v = 0.0;
                    }
                }
            }
            mask.extend(m);
        }
        let x = masked.to_tensor(device);
        let output = if head.decoder.stem.is_some() {
            head.decoder.forward_vector(backbone.forward(x), h)
        } else {
            let feats = backbone
                .forward_stages(x)
                .pop()
                .expect("a backbone has stages");
            head.decoder.forward(feats, h)
        };
        Filled {
            masked,
            mask,
            output,
        }
    }

    /// Squared error per pixel on the hidden region (mean over hidden pixels and channels),
    /// plus `context_weight` times that on the visible region.
    pub fn loss<R: Rng>(
        &self,
        head: &InpaintingHead,
        backbone: &Backbone,
        views: &[HostTensor],
        rng: &mut R,
        device: &Device,
    ) -> TaskOutput {
        let filled = self.fill(head, backbone, &views[0], rng, device);
        TaskOutput {
            loss: self.masked_error(&filled, &views[0], device),
            accuracy: None,
        }
    }

    fn masked_error(&self, filled: &Filled, truth: &HostTensor, device: &Device) -> Tensor<1> {
        let [b, c, h, w] = truth.shape;
        let mask =
            Tensor::<4>::from_data(TensorData::new(filled.mask.clone(), [b, 1, h, w]), device);
        let err = (filled.output.clone() - truth.to_tensor(device)).powi_scalar(2);
        let hidden = filled.mask.iter().sum::<f32>().max(1.0) * c as f32;
        let visible = (b * h * w) as f32 * c as f32 - hidden + 1.0;
        let on_hidden = (err.clone() * mask.clone()).sum() / hidden;
        if self.cfg.context_weight > 0.0 {
            let on_visible = (err * (mask.neg() + 1.0)).sum() / visible;
            on_hidden + on_visible * self.cfg.context_weight
        } else {
            on_hidden
        }
    }

    /// Mean squared error on the hidden pixels of the first `limit` images of `data` (eval
    /// views, seeded masks), and that of filling them with the mean (0): the baseline a
    /// network must beat. The model must be in inference mode.
    pub fn held_out_error(
        &self,
        head: &InpaintingHead,
        backbone: &Backbone,
        data: &Dataset,
        limit: usize,
        device: &Device,
    ) -> (f64, f64) {
        let view = self.view.eval_only();
        let mut rng = ChaCha8Rng::seed_from_u64(0x1A9);
        let (mut model, mut baseline, mut n) = (0.0, 0.0, 0usize);
        let end = limit.min(data.len());
        for start in (0..end).step_by(256) {
            let truth = crate::eval::plain_batch(data, &view, start..(start + 256).min(end));
            let filled = self.fill(head, backbone, &truth, &mut rng, device);
            let err: f32 = self.masked_error(&filled, &truth, device).into_scalar();
            // The mean fill predicts 0 everywhere.
            let [b, c, h, w] = truth.shape;
            let (mut sq, mut cnt) = (0.0f64, 0.0f64);
            for i in 0..b {
                for ch in 0..c {
                    for p in 0..h * w {
                        if filled.mask[i * h * w + p] > 0.0 {
                            sq += (truth.data[(i * c + ch) * h * w + p] as f64).powi(2);
                            cnt += 1.0;
                        }
                    }
                }
            }
            model += err as f64 * b as f64;
            baseline += sq / cnt.max(1.0) * b as f64;
            n += b;
        }
        (model / n.max(1) as f64, baseline / n.max(1) as f64)
    }

    /// Writes `inpainting.png` in `dir`: for 8 images of `data`, the masked input, the
    /// input with the hole filled by the network, and the truth.
    pub fn preview(
        &self,
        head: &InpaintingHead,
        backbone: &Backbone,
        data: &Dataset,
        dir: &Path,
        device: &Device,
    ) -> Result<PathBuf> {
        let view = self.view.eval_only();
        let n = data.len().min(8);
        let truth = crate::eval::plain_batch(data, &view, 0..n);
        let mut rng = ChaCha8Rng::seed_from_u64(0x1A9);
        let filled = self.fill(head, backbone, &truth, &mut rng, device);
        let out: Vec<f32> = filled
            .output
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        let [b, c, h, w] = truth.shape;
        let mut composite = truth.clone();
        for i in 0..b {
            for ch in 0..c {
                for p in 0..h * w {
                    if filled.mask[i * h * w + p] > 0.0 {
                        let k = (i * c + ch) * h * w + p;
                        composite.data[k] = out[k];
                    }
                }
            }
        }
        let (m, s) = (&view.mean, &view.std);
        let rows: Vec<Vec<crate::augment::Image>> = (0..b)
            .map(|i| {
                vec![
                    crate::preview::denormalize(&filled.masked, i, m, s),
                    crate::preview::denormalize(&composite, i, m, s),
                    crate::preview::denormalize(&truth, i, m, s),
                ]
            })
            .collect();
        let path = dir.join("inpainting.png");
        crate::preview::save_rows(&path, &rows, 3)?;
        Ok(path)
    }
}
