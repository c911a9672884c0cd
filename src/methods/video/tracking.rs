//! Tracking: "Unsupervised Learning of Visual Representations using Videos" (Wang & Gupta,
//! ICCV 2015).
//!
//! In each training clip, the patch that moves most is followed by a template-matching tracker
//! (`features::track`) for `gap` frames. The first patch (anchor) and the tracked one (positive)
//! show the same thing; a patch from another clip or place is a negative. A siamese network
//! (backbone + embedding MLP) is trained with the ranking loss
//! `max(0, D(a, p) - D(a, n) + margin)` on cosine distance, with random negatives during a
//! warm-up and then the hardest negatives of the batch (section 3.3 of the paper).
//!
//! Length: about 510 lines before its unit tests; the clip sampler, the hard-negative schedule
//! and the held-out distance ratio with its delta-method SE are one method's parts.

use crate::augment::{Image, normalize};
use crate::config::RunConfig;
use crate::data::Dataset;
use crate::data::loader::{HostBatch, ViewSpec};
use crate::error::{Error, Result};
use crate::features::track::{PairSearch, Place, TrackedPair, Tracker, find_pairs, patch_image};
use crate::losses::{cosine_distances, hardest_negatives, paired_cosine_distances, ranking_loss};
use crate::methods::{Method, MethodInfo, StepOutput, item_seeds, prepared};
use crate::nn::{Backbone, heads::Mlp};
use crate::pretext::frames::require_clips;
use crate::train::optim::Optimizer;
use crate::train::step::update;
use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Registry entry.
pub const INFO: MethodInfo = MethodInfo {
    name: "tracking",
    paper: "Wang & Gupta 2015, Unsupervised Learning of Visual Representations using Videos",
    summary: "a tracked moving patch is closer to its start than a random patch (triplet ranking)",
    settings: crate::methods::complete_settings::<TrackingConfig>,
    trained_readout: crate::methods::global_readout,
    build,
};

/// Tracking settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackingConfig {
    /// Frames between the first patch and the tracked one.
    pub gap: usize,
    /// Start a track every this many frames.
    pub every: usize,
    /// Tracker search radius, in pixels per frame.
    pub search: usize,
    /// Least mean absolute frame difference in a patch for it to count as moving.
    pub min_motion: f32,
    /// Least NCC of the tracked patch with the first for the pair to be kept.
    pub min_score: f32,
    /// Largest shift, in pixels, of the first and the tracked patch (each on its own) when
    /// they are cut for training, so the network cannot match exact pixels.
    pub jitter: usize,
    /// Ranking-loss margin (the paper: 0.5).
    pub margin: f32,
    /// Epochs with random negatives before hard-negative selection starts.
    pub hard_after_epochs: usize,
    /// Hardest negatives per anchor after the warm-up (0: random negatives throughout).
    pub hard_negatives: usize,
    /// Hidden width of the embedding MLP.
    pub hidden: usize,
    /// Width of the embedding the loss compares.
    pub embed_dim: usize,
}

impl crate::methods::Settings for TrackingConfig {
    fn validate(&self, _run: &RunConfig) -> Result<()> {
        TrackingConfig::validate(self)
    }
}

impl Default for TrackingConfig {
    fn default() -> Self {
        TrackingConfig {
            gap: 20,
            every: 1,
            search: 6,
            min_motion: 0.02,
            min_score: 0.4,
            jitter: 3,
            margin: 0.5,
            hard_after_epochs: 2,
            hard_negatives: 4,
            hidden: 512,
            embed_dim: 128,
        }
    }
}

impl TrackingConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        if self.gap == 0 || self.every == 0 || self.embed_dim == 0 || self.hidden == 0 {
            return Err(Error::Config(
                "tracking.gap, every, hidden and embed_dim must be at least 1".into(),
            ));
        }
        if !(self.margin > 0.0) || !(-1.0..=1.0).contains(&self.min_score) {
            return Err(Error::Config(format!(
                "tracking.margin = {} must be positive and min_score = {} in [-1, 1]",
                self.margin, self.min_score
            )));
        }
        Ok(())
    }

    fn search(&self, side: usize) -> PairSearch {
        PairSearch {
            tracker: Tracker {
                side,
                search: self.search,
            },
            gap: self.gap,
            every: self.every,
            min_motion: self.min_motion,
            min_score: self.min_score,
        }
    }
}

/// The siamese network: backbone and embedding MLP.
#[derive(Module, Debug)]
pub struct TrackingModel {
    /// The representation.
    pub backbone: Backbone,
    /// Backbone features to the embedding that the ranking loss compares.
    pub embed: Mlp,
}

/// The tracking method.
pub struct Tracking {
    model: TrackingModel,
    cfg: TrackingConfig,
    side: usize,
    mean: Vec<f32>,
    std: Vec<f32>,
    frames: Option<Dataset>,
    pairs: Vec<TrackedPair>,
    seed: u64,
    device: Device,
}

fn build(run: &RunConfig, in_channels: usize, device: &Device) -> Result<Box<dyn Method>> {
    let cfg: TrackingConfig = crate::methods::settings(run)?;
    let backbone = Backbone::new(&run.backbone, in_channels, device);
    let embed = Mlp::new(backbone.feature_dim(), cfg.hidden, cfg.embed_dim, device);
    Ok(Box::new(Tracking {
        model: TrackingModel { backbone, embed },
        cfg,
        side: run.views.size,
        mean: run.views.mean.clone(),
        std: run.views.std.clone(),
        frames: None,
        pairs: Vec::new(),
        seed: run.seed,
        device: device.clone(),
    }))
}

/// A random patch of `data` for a negative: from another clip than `clip` when there is one,
/// at a random frame and place.
fn random_patch<R: Rng>(data: &Dataset, clip: usize, side: usize, rng: &mut R) -> (usize, Place) {
    let others: Vec<usize> = (0..data.clips.len()).filter(|&k| k != clip).collect();
    let k = if others.is_empty() {
        clip
    } else {
        others[rng.random_range(0..others.len())]
    };
    let r = &data.clips[k];
    let f = rng.random_range(r.clone());
    let place = (
        rng.random_range(0..=data.height - side),
        rng.random_range(0..=data.width - side),
    );
    (f, place)
}

/// Distances on held-out data between pairs that should be close (`near`: a tracked patch,
/// a frame close in time) and pairs that need not be (`other`), summed over anchors.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HeldOutDistances {
    /// Anchors whose near distance is the smaller.
    pub closer: usize,
    /// Anchors.
    pub n: usize,
    /// Sum of near distances.
    pub near: f64,
    /// Sum of other distances.
    pub other: f64,
    /// Sums of squared near distances, squared other distances and their products (for the
    /// standard error of the distance ratio).
    pub squares: [f64; 3],
}

impl HeldOutDistances {
    /// Adds anchors with these near and other distances.
    pub fn add(&mut self, near: &[f32], other: &[f32]) {
        for (&a, &b) in near.iter().zip(other) {
            self.closer += (a < b) as usize;
            self.n += 1;
            self.near += a as f64;
            self.other += b as f64;
            let (a, b) = (a as f64, b as f64);
            self.squares[0] += a * a;
            self.squares[1] += b * b;
            self.squares[2] += a * b;
        }
    }

    /// The standard error of the distance ratio `R = mean(near) / mean(other)` by the delta
    /// method: `sqrt(mean((near - R other)^2) / n) / mean(other)`.
    pub fn ratio_se(&self) -> f64 {
        let n = self.n.max(1) as f64;
        let r = self.near / self.other.max(1e-12);
        let [aa, bb, ab] = self.squares;
        let spread = ((aa - 2.0 * r * ab + r * r * bb) / n).max(0.0);
        (spread / n).sqrt() / (self.other / n).max(1e-12)
    }

    /// Adds anchors from features: the cosine distances of each row of `anchor` to the same
    /// row of `near` and of `other`.
    pub fn add_features(&mut self, anchor: Tensor<2>, near: Tensor<2>, other: Tensor<2>) {
        self.add(
            &crate::device::host_values(paired_cosine_distances(anchor.clone(), near)),
            &crate::device::host_values(paired_cosine_distances(anchor, other)),
        );
    }

    /// `{what}_closer_fraction`, `{what}_distance_ratio` (mean near over mean other
    /// distance: lower is better), its standard error `{what}_distance_ratio_se` and
    /// `{what}_pairs`.
    pub fn metrics(&self, what: &str) -> Vec<(String, f64)> {
        vec![
            (
                format!("{what}_closer_fraction"),
                self.closer as f64 / self.n.max(1) as f64,
            ),
            (
                format!("{what}_distance_ratio"),
                self.near / self.other.max(1e-12),
            ),
            (format!("{what}_distance_ratio_se"), self.ratio_se()),
            (format!("{what}_pairs"), self.n as f64),
        ]
    }
}

/// `place` moved by up to `jitter` pixels each way, kept inside an `h` x `w` frame.
fn jittered<R: Rng>(
    place: Place,
    jitter: usize,
    h: usize,
    w: usize,
    side: usize,
    rng: &mut R,
) -> Place {
    let j = jitter as i64;
    let mut shift = |v: usize, limit: usize| {
        (v as i64 + rng.random_range(-j..=j)).clamp(0, (limit - side) as i64) as usize
    };
    (shift(place.0, h), shift(place.1, w))
}

impl Tracking {
    /// Normalized patches as a `[n, 1, side, side]` tensor.
    fn patches(&self, data: &Dataset, which: &[(usize, Place)], device: &Device) -> Tensor<4> {
        let s = self.side;
        let mut px = Vec::with_capacity(which.len() * s * s);
        for &(f, place) in which {
            let mut img = patch_image(data, f, place, s);
            normalize(&mut img, &self.mean, &self.std);
            px.extend_from_slice(&img.data);
        }
        Tensor::from_data(TensorData::new(px, [which.len(), 1, s, s]), device)
    }

    /// Tracked pairs of `data` with the method's tracker and patch side.
    pub fn pairs_of(&self, data: &Dataset) -> Vec<TrackedPair> {
        find_pairs(data, &self.cfg.search(self.side))
    }

    /// On the tracked pairs of `data` (held out): how much closer the tracked patch is to the
    /// first patch than a random patch elsewhere in the same frame is (cosine distance of
    /// backbone features).
    pub fn tracked_closer_fraction(&self, data: &Dataset) -> HeldOutDistances {
        let pairs = self.pairs_of(data);
        if pairs.is_empty() {
            return HeldOutDistances::default();
        }
        let model = self.model.valid();
        let device = crate::device::of(&model);
        let mut rng = ChaCha8Rng::seed_from_u64(0x7AC4);
        let mut out = HeldOutDistances::default();
        for chunk in pairs.chunks(128) {
            let a: Vec<(usize, Place)> = chunk.iter().map(|p| (p.first, p.start)).collect();
            let t: Vec<(usize, Place)> = chunk.iter().map(|p| (p.last, p.end)).collect();
            // A patch of the same frame as the tracked one, elsewhere (at least half a
            // patch away): the tracked thing must be closer than the rest of the scene.
            let r: Vec<(usize, Place)> = chunk
                .iter()
                .map(|p| {
                    let half = self.side / 2;
                    loop {
                        let place = (
                            rng.random_range(0..=data.height - self.side),
                            rng.random_range(0..=data.width - self.side),
                        );
                        if place.0.abs_diff(p.end.0) >= half || place.1.abs_diff(p.end.1) >= half {
                            return (p.last, place);
                        }
                    }
                })
                .collect();
            let feats =
                |w: &[(usize, Place)]| model.backbone.forward(self.patches(data, w, &device));
            let (fa, ft, fr) = (feats(&a), feats(&t), feats(&r));
            out.add_features(fa, ft, fr);
        }
        out
    }
}

impl Method for Tracking {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn views(&self) -> ViewSpec {
        // Patches are cut from the clips in `train_step`; the loader only draws the order.
        ViewSpec { views: Vec::new() }
    }

    fn prepare(&mut self, data: &Dataset, _fresh_run: bool) -> Result<()> {
        require_clips(data, INFO.name)?;
        if data.height < 2 * self.side || data.width < 2 * self.side {
            return Err(Error::Config(format!(
                "tracking cuts {} px patches (views.size) out of frames, which must be at least \
                 twice as large: the frames are {}x{} (raise video.side, e.g. --set video.side=96)",
                self.side, data.height, data.width
            )));
        }
        if data.channels != 1 {
            return Err(Error::Config(
                "tracking follows grey frames: keep video.gray = true".into(),
            ));
        }
        self.pairs = self.pairs_of(data);
        if self.pairs.is_empty() {
            return Err(Error::Config(format!(
                "tracking found no patch moving more than tracking.min_motion = {} that the \
                 tracker kept above tracking.min_score = {} over {} frames",
                self.cfg.min_motion, self.cfg.min_score, self.cfg.gap
            )));
        }
        tracing::info!("tracking: {} tracked pairs", self.pairs.len());
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
        let (mut a, mut p, mut n) = (Vec::new(), Vec::new(), Vec::new());
        for seed in item_seeds(self.seed, batch, 0x7AC4) {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let pair = self.pairs[rng.random_range(0..self.pairs.len())];
            let (h, w, j) = (data.height, data.width, self.cfg.jitter);
            a.push((
                pair.first,
                jittered(pair.start, j, h, w, self.side, &mut rng),
            ));
            p.push((pair.last, jittered(pair.end, j, h, w, self.side, &mut rng)));
            n.push(random_patch(
                data,
                data.clip_of(pair.first).unwrap_or(0),
                self.side,
                &mut rng,
            ));
        }
        let x = Tensor::cat(
            vec![
                self.patches(data, &a, &self.device),
                self.patches(data, &p, &self.device),
                self.patches(data, &n, &self.device),
            ],
            0,
        );
        let z = self.model.embed.forward(self.model.backbone.forward(x));
        let (za, zp, zn) = (
            z.clone().narrow(0, 0, b),
            z.clone().narrow(0, b, b),
            z.narrow(0, 2 * b, b),
        );
        let d_ap = paired_cosine_distances(za.clone(), zp);
        let d_an = cosine_distances(za, zn);
        let hard = self.cfg.hard_negatives > 0 && batch.epoch >= self.cfg.hard_after_epochs;
        let chosen = if hard {
            let d: Vec<f32> = d_an
                .clone()
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32 distances");
            hardest_negatives(&d, b, self.cfg.hard_negatives, false)
        } else {
            (0..b).map(|i| vec![i]).collect()
        };
        let ap_mean = d_ap.clone().mean().into_scalar();
        let loss = ranking_loss(d_ap, d_an.clone(), &chosen, self.cfg.margin);
        let an_mean = d_an.mean().into_scalar();
        let (model, value) = update(self.model.clone(), loss, opt, lr, step, "ranking loss")?;
        self.model = model;
        Ok(StepOutput {
            loss: value,
            terms: vec![
                ("d_anchor_positive".into(), ap_mean),
                ("d_anchor_negative".into(), an_mean),
                ("hard_negatives".into(), hard as u8 as f32),
            ],
        })
    }

    fn pretext_metrics(&self, data: &Dataset, _limit: usize) -> Vec<(String, f64)> {
        let d = self.tracked_closer_fraction(data);
        if d.n == 0 {
            tracing::warn!("no tracked pairs in the held-out clips");
            return Vec::new();
        }
        d.metrics("tracked")
    }

    fn write_previews(&self, data: &Dataset, dir: &Path) -> Result<Vec<PathBuf>> {
        let path = dir.join("tracks.png");
        save_tracks(&path, data, &self.pairs_of(data), self.side, 8)?;
        Ok(vec![path])
    }

    fn backbone(&self) -> Backbone {
        self.model.backbone.clone()
    }

    crate::methods::model_checkpoint!(model);
}

/// Draws a white square outline at `place` on a grey frame.
fn outlined(data: &Dataset, frame: usize, place: Place, side: usize) -> Image {
    let mut img = Image::from_u8(
        &data.image(frame)[..data.height * data.width],
        1,
        data.height,
        data.width,
    );
    let (y0, x0, w) = (place.0, place.1, data.width);
    for d in 0..side {
        for (y, x) in [
            (y0, x0 + d),
            (y0 + side - 1, x0 + d),
            (y0 + d, x0),
            (y0 + d, x0 + side - 1),
        ] {
            img.data[y * w + x] = 1.0;
        }
    }
    img
}

/// Writes up to `rows` tracked pairs of `data`, spread over its pairs, as rows of: the first
/// frame with the box, the last frame with the tracked box, the first patch, the tracked one.
pub fn save_tracks(
    path: &Path,
    data: &Dataset,
    pairs: &[TrackedPair],
    side: usize,
    rows: usize,
) -> Result<()> {
    if pairs.is_empty() {
        return Err(Error::Config(format!(
            "no tracked pairs to draw in {}",
            path.display()
        )));
    }
    let n = rows.min(pairs.len());
    let picked: Vec<&TrackedPair> = (0..n).map(|i| &pairs[i * pairs.len() / n]).collect();
    let grid: Vec<Vec<Image>> = picked
        .iter()
        .map(|p| {
            vec![
                outlined(data, p.first, p.start, side),
                outlined(data, p.last, p.end, side),
                patch_image(data, p.first, p.start, side),
                patch_image(data, p.last, p.end, side),
            ]
        })
        .collect();
    crate::preview::save_rows(path, &grid, 2)
}

#[cfg(test)]
mod tests {
    use super::HeldOutDistances;

    #[test]
    fn distance_ratio_se_matches_the_delta_method_by_hand() {
        let mut d = HeldOutDistances::default();
        d.add(&[1.0, 2.0, 3.0], &[2.0, 2.0, 2.0]);
        // R = 2 / 2 = 1; residuals near - R other = -1, 0, 1, mean square 2/3;
        // SE = sqrt(2/3 / 3) / mean(other) = sqrt(2/9) / 2.
        assert!((d.ratio_se() - (2.0f64 / 9.0).sqrt() / 2.0).abs() < 1e-12);
        assert_eq!((d.closer, d.n), (1, 3));
    }
}
