//! Audio-visual correspondence: "Look, Listen and Learn" (Arandjelovic & Zisserman, ICCV 2017)
//! with the AVE-Net of "Objects that Sound" (ECCV 2018).
//!
//! An image and a sound either belong together or not. The image goes through the backbone,
//! the sound's log-mel spectrogram (a window of `frames` frames at a random place) through an
//! audio ConvNet; each embedding is L2-normalized, and the Euclidean distance between them is
//! all the correspondence classifier sees (a 1 -> 2 linear layer), which forces the two
//! embeddings into one space where distance means "goes together": cross-modal retrieval in
//! both directions reads that space.
//!
//! Length: about 500 lines with its unit tests; the audio network, the correspondence head, the
//! pair sampler and the held-out retrieval metrics (recall, AUC) that AVID + CMA reuses belong
//! together.

use crate::config::RunConfig;
use crate::data::Dataset;
use crate::data::loader::{HostBatch, ViewSpec, mix_seed};
use crate::error::{Error, Result};
use crate::features::mel::Spectrogram;
use crate::methods::pretext_view;
use crate::methods::{Method, MethodInfo, StepOutput, metrics_or_warn, prepared};
use crate::nn::Backbone;
use crate::nn::audio_visual::{AudioVisualNet, sound_windows};
use crate::train::optim::Optimizer;
use crate::train::step::classification_step;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Registry entry.
pub const INFO: MethodInfo = MethodInfo {
    name: "avc",
    paper: "Arandjelovic & Zisserman 2017/2018, Look, Listen and Learn; Objects that Sound (AVE-Net)",
    summary: "whether an image and a sound belong together, from the distance of their embeddings",
    settings: crate::methods::complete_settings::<AvcConfig>,
    trained_readout: crate::methods::global_readout,
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

impl crate::methods::Settings for AvcConfig {}

impl Default for AvcConfig {
    fn default() -> Self {
        AvcConfig {
            frames: 96,
            embed_dim: 128,
            audio_width: 0.5,
        }
    }
}

/// Both towers and the correspondence classifier.
#[derive(Module, Debug)]
pub struct AvcModel {
    /// Image and sound encoders into one space.
    pub net: AudioVisualNet,
    /// Distance to (no, yes) scores.
    pub classifier: Linear,
}

impl AvcModel {
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
}

fn build(run: &RunConfig, in_channels: usize, device: &Device) -> Result<Box<dyn Method>> {
    let cfg: AvcConfig = crate::methods::settings(run)?;
    if cfg.frames == 0 || cfg.embed_dim == 0 || cfg.audio_width <= 0.0 {
        return Err(Error::Config(
            "avc.frames, embed_dim and audio_width must be positive".into(),
        ));
    }
    Ok(Box::new(Avc {
        model: AvcModel {
            net: AudioVisualNet::new(
                &run.backbone,
                in_channels,
                cfg.embed_dim,
                cfg.audio_width,
                device,
            ),
            classifier: LinearConfig::new(1, 2).init(device),
        },
        cfg,
        view: pretext_view(run),
        sounds: None,
        seed: run.seed,
        device: device.clone(),
    }))
}

/// The sound spectrograms of `data`, or an error saying the method needs them.
pub fn sounds_of(data: &Dataset) -> Result<Arc<Vec<Spectrogram>>> {
    data.sounds.clone().ok_or_else(|| {
        Error::Config(
            "this method learns from images with sounds: give an image + sound source (av:PATH)"
                .into(),
        )
    })
}

/// The embeddings of every image of `data` (preprocessed by `view` without augmentation)
/// and of the first `frames` spectrogram frames of its sound, 256 items at a time:
/// `([n, E], [n, E])`.
pub fn embed_pairs(
    net: &AudioVisualNet,
    view: &crate::augment::ViewConfig,
    frames: usize,
    data: &Dataset,
) -> Result<(Tensor<2>, Tensor<2>)> {
    let sounds = sounds_of(data)?;
    let device = crate::device::of(net);
    let view = view.eval_only();
    let all: Vec<usize> = (0..data.len()).collect();
    let (mut v, mut a) = (Vec::new(), Vec::new());
    for start in (0..data.len()).step_by(256) {
        let end = (start + 256).min(data.len());
        v.push(
            net.embed_images(crate::eval::plain_batch(data, &view, start..end).to_tensor(&device)),
        );
        a.push(net.embed_sounds(sound_windows(
            &sounds,
            &all[start..end],
            frames,
            None,
            &device,
        )));
    }
    Ok((Tensor::cat(v, 0), Tensor::cat(a, 0)))
}

/// [`sounds_of`] for training: one sound per image, or an error.
pub fn paired_sounds(data: &Dataset) -> Result<Arc<Vec<Spectrogram>>> {
    let sounds = sounds_of(data)?;
    if sounds.len() != data.len() {
        return Err(Error::Config(format!(
            "{} images but {} sounds",
            data.len(),
            sounds.len()
        )));
    }
    Ok(sounds)
}

impl Avc {
    /// Held-out scores on `data`: balanced correspondence accuracy over all image-sound pairs
    /// (own pairs "yes", all others "no"); recall@5 of sound-to-image and image-to-sound
    /// retrieval among all its items, ranked by the classifier's margin, with the chance
    /// level `5 / n`; retrieval AUCs with their standard errors ([`auc_metrics`]).
    pub fn held_out(&self, data: &Dataset) -> Result<Vec<(String, f64)>> {
        let n = data.len();
        if n < 2 {
            sounds_of(data)?;
            return Ok(Vec::new());
        }
        let model = self.model.valid();
        let (v, a) = embed_pairs(&model.net, &self.view, self.cfg.frames, data)?;
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
            (
                "sound_to_image_recall_at_5".into(),
                recall_at_k(&d, n, true, 5),
            ),
            (
                "image_to_sound_recall_at_5".into(),
                recall_at_k(&d, n, false, 5),
            ),
            ("recall_at_5_chance".into(), (5.0 / n as f64).min(1.0)),
        ]
        .into_iter()
        .chain(auc_metrics(&d, n))
        .collect())
    }
}

/// Grey image with `heat` (any range, min-max scaled) laid over it in red, upsampled
/// bilinearly from its `h` x `w` grid.
fn overlay(img: &crate::augment::Image, heat: &[f32], h: usize, w: usize) -> crate::augment::Image {
    let (lo, hi) = heat
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let span = (hi - lo).max(1e-6);
    let (ih, iw, plane) = (img.height, img.width, img.height * img.width);
    let grey: Vec<f32> = (0..plane)
        .map(|p| {
            (0..img.channels)
                .map(|c| img.data[c * plane + p])
                .sum::<f32>()
                / img.channels as f32
        })
        .collect();
    let at = |y: f32, x: f32| {
        let (y, x) = (y.clamp(0.0, (h - 1) as f32), x.clamp(0.0, (w - 1) as f32));
        let (y0, x0) = (y.floor() as usize, x.floor() as usize);
        let (y1, x1) = ((y0 + 1).min(h - 1), (x0 + 1).min(w - 1));
        let (fy, fx) = (y - y0 as f32, x - x0 as f32);
        let v = |yy: usize, xx: usize| (heat[yy * w + xx] - lo) / span;
        (1.0 - fy) * ((1.0 - fx) * v(y0, x0) + fx * v(y0, x1))
            + fy * ((1.0 - fx) * v(y1, x0) + fx * v(y1, x1))
    };
    let mut data = vec![0f32; 3 * plane];
    for y in 0..ih {
        for x in 0..iw {
            let p = y * iw + x;
            let t = at(
                (y as f32 + 0.5) * h as f32 / ih as f32 - 0.5,
                (x as f32 + 0.5) * w as f32 / iw as f32 - 0.5,
            );
            let g = 0.6 * grey[p];
            data[p] = g + 0.4 * t;
            data[plane + p] = g;
            data[2 * plane + p] = g * (1.0 - 0.5 * t);
        }
    }
    crate::augment::Image {
        data,
        channels: 3,
        height: ih,
        width: iw,
    }
}

/// Writes rows of: an image of `data`, where its own sound comes from in it (red), and where
/// the sound of another item would (of another category, or half the data away), for up to
/// `rows` items spread over `data`. `view` preprocesses the images, `frames` is the width of
/// the sound windows.
pub fn save_localization(
    net: &AudioVisualNet,
    view: &crate::augment::ViewConfig,
    frames: usize,
    path: &Path,
    data: &Dataset,
    rows: usize,
) -> Result<()> {
    let sounds = sounds_of(data)?;
    let n = rows.min(data.len());
    if n == 0 {
        return Err(Error::Config("no image to localize sounds in".into()));
    }
    let labels = data.labels.clone().unwrap_or_else(|| vec![0; data.len()]);
    let items: Vec<usize> = (0..n).map(|i| i * data.len() / n).collect();
    // For each item, an item of another category (or the next one).
    let others: Vec<usize> = items
        .iter()
        .map(|&i| {
            (1..data.len())
                .map(|k| (i + k * 7) % data.len())
                .find(|&j| labels[j] != labels[i])
                .unwrap_or((i + data.len() / 2) % data.len())
        })
        .collect();
    let device = crate::device::of(net);
    let plain = view.eval_only();
    let images = crate::eval::plain_batch(&data.subset(&items), &plain, 0..n).to_tensor(&device);
    let own = net.embed_sounds(sound_windows(&sounds, &items, frames, None, &device));
    let other = net.embed_sounds(sound_windows(&sounds, &others, frames, None, &device));
    let heat_own = net.localize(images.clone(), own);
    let [_, h, w] = heat_own.dims();
    let heat_other = net.localize(images, other);
    let to_vec = |t: Tensor<3>| t.into_data().try_to_vec::<f32>().expect("f32 maps");
    let (ho, hx) = (to_vec(heat_own), to_vec(heat_other));
    let grid: Vec<Vec<crate::augment::Image>> = items
        .iter()
        .enumerate()
        .map(|(r, &i)| {
            let img = crate::augment::Image::from_u8(
                data.image(i),
                data.channels,
                data.height,
                data.width,
            );
            vec![
                img.clone(),
                overlay(&img, &ho[r * h * w..(r + 1) * h * w], h, w),
                overlay(&img, &hx[r * h * w..(r + 1) * h * w], h, w),
            ]
        })
        .collect();
    crate::preview::save_rows(path, &grid, (128 / data.height.max(1)).max(1) as u32)
}

/// Whether each query's own item is among the `k` best scored of all `n` items (fewer
/// than `k` others score higher): the fraction of queries, from `scores` `[n, n]` row-major
/// (queries are rows when `by_row`, else columns).
pub fn recall_at_k(scores: &[f32], n: usize, by_row: bool, k: usize) -> f64 {
    let hits = (0..n)
        .filter(|&q| {
            let own = score(scores, n, by_row, q, q);
            (0..n)
                .filter(|&j| j != q && score(scores, n, by_row, q, j) > own)
                .count()
                < k
        })
        .count();
    hits as f64 / n.max(1) as f64
}

/// Query `q`'s score for item `j` in an `n x n` matrix: row `q` when `by_row`, else column.
fn score(scores: &[f32], n: usize, by_row: bool, q: usize, j: usize) -> f32 {
    if by_row {
        scores[q * n + j]
    } else {
        scores[j * n + q]
    }
}

/// Retrieval AUC of each query's own item against the `n - 1` others: the fraction of others
/// that score below it (ties count half), averaged over the `n` queries (chance 1/2), and the
/// standard error of that mean (`sd / sqrt(n)` over the queries). `scores` and `by_row` as in
/// [`recall_at_k`]. Unlike recall@5 on a few items, it uses every pair, so it separates a
/// trained model from chance on 20 held-out pairs.
pub fn retrieval_auc(scores: &[f32], n: usize, by_row: bool) -> (f64, f64) {
    let per_query: Vec<f64> = (0..n)
        .map(|q| {
            let own = score(scores, n, by_row, q, q);
            let below: f64 = (0..n)
                .filter(|&j| j != q)
                .map(|j| match score(scores, n, by_row, q, j).partial_cmp(&own) {
                    Some(std::cmp::Ordering::Less) => 1.0,
                    Some(std::cmp::Ordering::Equal) => 0.5,
                    _ => 0.0,
                })
                .sum();
            below / (n - 1).max(1) as f64
        })
        .collect();
    let m = n.max(1) as f64;
    let mean = per_query.iter().sum::<f64>() / m;
    let var = per_query.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (m - 1.0).max(1.0);
    (mean, (var / m).sqrt())
}

/// The held-out retrieval AUCs in both directions, with their standard errors and chance.
pub fn auc_metrics(scores: &[f32], n: usize) -> Vec<(String, f64)> {
    let (s2i, s2i_se) = retrieval_auc(scores, n, true);
    let (i2s, i2s_se) = retrieval_auc(scores, n, false);
    vec![
        ("sound_to_image_auc".into(), s2i),
        ("sound_to_image_auc_se".into(), s2i_se),
        ("image_to_sound_auc".into(), i2s),
        ("image_to_sound_auc_se".into(), i2s_se),
        ("auc_chance".into(), 0.5),
    ]
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
        let sounds = paired_sounds(data)?;
        self.sounds = Some(sounds);
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
        let sounds = prepared(&self.sounds, INFO.name)?.clone();
        let b = batch.indices.len();
        let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[
            self.seed,
            batch.epoch as u64,
            batch.indices[0] as u64,
            0xA7C0,
        ]));
        let a = self.model.net.embed_sounds(sound_windows(
            &sounds,
            &batch.indices,
            self.cfg.frames,
            Some(&mut rng),
            &self.device,
        ));
        let v = self
            .model
            .net
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
            step,
            "correspondence loss",
            "correspondence_accuracy",
        )?;
        self.model = model;
        Ok(out)
    }

    fn pretext_metrics(&self, data: &Dataset, _limit: usize) -> Vec<(String, f64)> {
        metrics_or_warn(self.held_out(data), "correspondence scores")
    }

    fn write_previews(&self, data: &Dataset, dir: &Path) -> Result<Vec<PathBuf>> {
        let path = dir.join("localization.png");
        save_localization(
            &self.model.net.valid(),
            &self.view,
            self.cfg.frames,
            &path,
            data,
            8,
        )?;
        Ok(vec![path])
    }

    fn backbone(&self) -> Backbone {
        self.model.net.backbone.clone()
    }

    fn backbone_prefix(&self) -> &'static str {
        "net.backbone."
    }

    crate::methods::model_checkpoint!(model);
}

#[cfg(test)]
mod tests {
    use super::{recall_at_k, retrieval_auc};

    #[test]
    fn retrieval_auc_counts_the_others_ranked_below_by_hand() {
        // Rows are queries. Query 0: own 0.9 beats 0.1 and 0.5 (AUC 1). Query 1: own 0.2 is
        // below 0.3 and above 0.1 (1/2). Query 2: own 0.4 ties 0.4, beats 0.0 (3/4).
        let s = [0.9, 0.1, 0.5, 0.3, 0.2, 0.1, 0.4, 0.0, 0.4];
        let (auc, se) = retrieval_auc(&s, 3, true);
        assert!((auc - 0.75).abs() < 1e-12, "{auc}");
        // sd of {1, 0.5, 0.75} is 0.25; SE 0.25 / sqrt(3).
        assert!((se - 0.25 / 3f64.sqrt()).abs() < 1e-12, "{se}");
        assert!((recall_at_k(&s, 3, true, 1) - 2.0 / 3.0).abs() < 1e-12);
    }
}
