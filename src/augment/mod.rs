//! View transforms: the random augmentations that turn one image into the "views" a method
//! compares (SimCLR, Chen et al. 2020, section 3 and appendix A).
//!
//! Images are `f32` in `[0, 1]`, CHW order, 1 or 3 channels, held in an [`Image`]. A
//! [`ViewConfig`] describes one view pipeline; [`ViewConfig::make`] applies it with a given RNG.

pub mod affine;
pub mod blur;
pub mod color;
pub mod crop;
pub mod erase;
pub mod noise;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// A float image in CHW order, values nominally in `[0, 1]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    /// Pixels, `channels * height * width`, CHW order.
    pub data: Vec<f32>,
    /// Number of channels (1 or 3).
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
}

impl Image {
    /// Converts `u8` CHW pixels to `[0, 1]` floats.
    pub fn from_u8(pixels: &[u8], channels: usize, height: usize, width: usize) -> Image {
        Image {
            data: pixels.iter().map(|&p| p as f32 / 255.0).collect(),
            channels,
            height,
            width,
        }
    }

    /// The value at channel `c`, row `y`, column `x`.
    #[inline]
    pub fn at(&self, c: usize, y: usize, x: usize) -> f32 {
        self.data[(c * self.height + y) * self.width + x]
    }

    /// Mirrors the image left to right.
    pub fn flip_horizontal(&mut self) {
        let w = self.width;
        for row in self.data.chunks_exact_mut(w) {
            row.reverse();
        }
    }
}

/// One view pipeline: crop, affine, flip, colour jitter, gamma, grayscale, blur, solarization,
/// noise, normalization, erasing. Defaults follow SimCLR's CIFAR recipe; the steps SimCLR does
/// not have (affine, gamma, noise, erasing) are off by default, for small grey images on
/// which hue, saturation and grayscale do nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ViewConfig {
    /// Output side in pixels (square views).
    pub size: usize,
    /// RandomResizedCrop area range, as fractions of the image area.
    pub crop_scale: (f32, f32),
    /// RandomResizedCrop aspect-ratio range (width / height).
    pub crop_ratio: (f32, f32),
    /// Probability of a small random affine transform (rotation and shear, black fill).
    pub affine_prob: f32,
    /// Largest rotation of the affine transform, in degrees either way.
    pub affine_degrees: f32,
    /// Largest x-shear of the affine transform, in degrees either way.
    pub affine_shear: f32,
    /// Probability of a horizontal flip.
    pub flip_prob: f32,
    /// Probability of applying colour jitter.
    pub jitter_prob: f32,
    /// Brightness jitter strength (factor drawn from `[1-b, 1+b]`).
    pub brightness: f32,
    /// Contrast jitter strength.
    pub contrast: f32,
    /// Saturation jitter strength (RGB only).
    pub saturation: f32,
    /// Hue jitter strength, at most 0.5 (RGB only).
    pub hue: f32,
    /// Probability of a gamma correction.
    pub gamma_prob: f32,
    /// Gamma range, drawn log-uniformly.
    pub gamma: (f32, f32),
    /// Probability of converting to grayscale (RGB only).
    pub grayscale_prob: f32,
    /// Probability of a Gaussian blur.
    pub blur_prob: f32,
    /// Blur sigma range, in pixels.
    pub blur_sigma: (f32, f32),
    /// Probability of solarization (pixels above 0.5 are inverted).
    pub solarize_prob: f32,
    /// Probability of additive Gaussian noise.
    pub noise_prob: f32,
    /// Standard deviation of the noise, on the `[0, 1]` scale.
    pub noise_std: f32,
    /// Probability of random erasing (one rectangle set to the mean, after normalization).
    pub erase_prob: f32,
    /// Erased area range, as fractions of the view.
    pub erase_scale: (f32, f32),
    /// Erased rectangle aspect-ratio range.
    pub erase_ratio: (f32, f32),
    /// Per-channel mean subtracted after augmentation (one value per channel, or one for all).
    pub mean: Vec<f32>,
    /// Per-channel standard deviation divided by after augmentation.
    pub std: Vec<f32>,
}

impl Default for ViewConfig {
    fn default() -> Self {
        ViewConfig {
            size: 28,
            crop_scale: (0.2, 1.0),
            crop_ratio: (0.75, 4.0 / 3.0),
            affine_prob: 0.0,
            affine_degrees: 10.0,
            affine_shear: 10.0,
            flip_prob: 0.5,
            jitter_prob: 0.8,
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.4,
            hue: 0.1,
            gamma_prob: 0.0,
            gamma: (0.7, 1.4),
            grayscale_prob: 0.2,
            blur_prob: 0.0,
            blur_sigma: (0.1, 2.0),
            solarize_prob: 0.0,
            noise_prob: 0.0,
            noise_std: 0.05,
            erase_prob: 0.0,
            erase_scale: (0.02, 0.2),
            erase_ratio: (0.3, 3.3),
            mean: vec![0.5],
            std: vec![0.5],
        }
    }
}

impl ViewConfig {
    /// Checks ranges, naming the field at fault.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::Error::Config(m));
        if self.size == 0 {
            return bad("views.size must be positive".into());
        }
        let (a, b) = self.crop_scale;
        if !(a > 0.0 && a <= b && b <= 1.0) {
            return bad(format!(
                "views.crop_scale ({a}, {b}) must satisfy 0 < min <= max <= 1"
            ));
        }
        for (name, p) in [
            ("flip_prob", self.flip_prob),
            ("affine_prob", self.affine_prob),
            ("gamma_prob", self.gamma_prob),
            ("noise_prob", self.noise_prob),
            ("erase_prob", self.erase_prob),
            ("jitter_prob", self.jitter_prob),
            ("grayscale_prob", self.grayscale_prob),
            ("blur_prob", self.blur_prob),
            ("solarize_prob", self.solarize_prob),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return bad(format!("views.{name} = {p} is not a probability in [0, 1]"));
            }
        }
        let (a, b) = self.erase_scale;
        if !(a > 0.0 && a <= b && b < 1.0) {
            return bad(format!(
                "views.erase_scale ({a}, {b}) must satisfy 0 < min <= max < 1"
            ));
        }
        for (name, (a, b)) in [
            ("crop_ratio", self.crop_ratio),
            ("erase_ratio", self.erase_ratio),
            ("gamma", self.gamma),
        ] {
            if !(a > 0.0 && a <= b) {
                return bad(format!(
                    "views.{name} ({a}, {b}) must satisfy 0 < min <= max"
                ));
            }
        }
        if !(0.0..=45.0).contains(&self.affine_degrees)
            || !(0.0..=45.0).contains(&self.affine_shear)
        {
            return bad(format!(
                "views.affine_degrees ({}) and views.affine_shear ({}) must be in [0, 45]",
                self.affine_degrees, self.affine_shear
            ));
        }
        if self.noise_std < 0.0 {
            return bad(format!(
                "views.noise_std = {} must be non-negative",
                self.noise_std
            ));
        }
        if !(0.0..=0.5).contains(&self.hue) {
            return bad(format!("views.hue = {} must be in [0, 0.5]", self.hue));
        }
        for (name, v) in [
            ("brightness", self.brightness),
            ("contrast", self.contrast),
            ("saturation", self.saturation),
        ] {
            if v < 0.0 {
                return bad(format!("views.{name} = {v} must be non-negative"));
            }
        }
        if self.mean.is_empty() || self.std.is_empty() || self.std.iter().any(|&s| s <= 0.0) {
            return bad(
                "views.mean and views.std need at least one value each, std positive".into(),
            );
        }
        Ok(())
    }

    /// Normalization only: resize to `size` (whole image) and normalize. Used for evaluation.
    pub fn eval_only(&self) -> ViewConfig {
        ViewConfig {
            crop_scale: (1.0, 1.0),
            crop_ratio: (1.0, 1.0),
            affine_prob: 0.0,
            flip_prob: 0.0,
            jitter_prob: 0.0,
            gamma_prob: 0.0,
            grayscale_prob: 0.0,
            blur_prob: 0.0,
            solarize_prob: 0.0,
            noise_prob: 0.0,
            erase_prob: 0.0,
            ..self.clone()
        }
    }

    /// Produces one augmented, normalized view of `img`. The steps that are off by default
    /// draw nothing from `rng` while their probability is 0, so pipelines without them
    /// produce the same views as before they existed.
    pub fn make<R: Rng>(&self, img: &Image, rng: &mut R) -> Image {
        let happens = |p: f32, rng: &mut R| p > 0.0 && rng.random::<f32>() < p;
        let mut v = if self.crop_scale == (1.0, 1.0)
            && img.height == self.size
            && img.width == self.size
        {
            img.clone()
        } else {
            let region =
                crop::sample_region(img.height, img.width, self.crop_scale, self.crop_ratio, rng);
            crop::resized_crop(img, region, self.size, self.size)
        };
        if happens(self.affine_prob, rng) {
            v = affine::random(&v, self.affine_degrees, self.affine_shear, rng);
        }
        if rng.random::<f32>() < self.flip_prob {
            v.flip_horizontal();
        }
        if rng.random::<f32>() < self.jitter_prob {
            color::jitter(
                &mut v,
                self.brightness,
                self.contrast,
                self.saturation,
                self.hue,
                rng,
            );
        }
        if happens(self.gamma_prob, rng) {
            color::random_gamma(&mut v, self.gamma, rng);
        }
        if v.channels == 3 && rng.random::<f32>() < self.grayscale_prob {
            color::to_grayscale(&mut v);
        }
        if rng.random::<f32>() < self.blur_prob {
            let sigma = rng.random_range(self.blur_sigma.0..=self.blur_sigma.1);
            blur::gaussian_blur(&mut v, sigma);
        }
        if rng.random::<f32>() < self.solarize_prob {
            color::solarize(&mut v, 0.5);
        }
        if happens(self.noise_prob, rng) {
            noise::gaussian(&mut v, self.noise_std, rng);
        }
        normalize(&mut v, &self.mean, &self.std);
        if happens(self.erase_prob, rng) {
            erase::random(&mut v, self.erase_scale, self.erase_ratio, 0.0, rng);
        }
        v
    }
}

/// A value log-uniform in `range` (so `g` and `1 / g` are equally likely); `range.0` when the
/// range is a single point.
pub fn log_uniform<R: Rng>(range: (f32, f32), rng: &mut R) -> f32 {
    let (a, b) = (range.0.ln(), range.1.ln());
    if a < b {
        rng.random_range(a..=b).exp()
    } else {
        range.0
    }
}

/// `n` independent standard normal samples (Box-Muller, two uniform draws per sample).
pub fn standard_normal<R: Rng>(n: usize, rng: &mut R) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let (u1, u2): (f32, f32) = (rng.random::<f32>().max(1e-7), rng.random());
            (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
        })
        .collect()
}

/// Subtracts `mean` and divides by `std` per channel (a single value applies to all channels).
pub fn normalize(img: &mut Image, mean: &[f32], std: &[f32]) {
    let plane = img.height * img.width;
    for c in 0..img.channels {
        let m = mean[c.min(mean.len() - 1)];
        let s = std[c.min(std.len() - 1)];
        for p in &mut img.data[c * plane..(c + 1) * plane] {
            *p = (*p - m) / s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn image() -> Image {
        let data = (0..28 * 28)
            .map(|i| ((i * 37) % 256) as f32 / 255.0)
            .collect();
        Image {
            data,
            channels: 1,
            height: 28,
            width: 28,
        }
    }

    fn views(cfg: &ViewConfig) -> Vec<Vec<f32>> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        (0..8).map(|_| cfg.make(&image(), &mut rng).data).collect()
    }

    #[test]
    fn steps_off_draw_nothing_and_steps_on_change_the_views() {
        // At probability 0 the new steps leave the random stream alone: changing their
        // strengths gives the very same views.
        let base = ViewConfig::default();
        let strengths = ViewConfig {
            affine_degrees: 30.0,
            noise_std: 0.3,
            gamma: (0.5, 2.0),
            erase_scale: (0.1, 0.5),
            ..base.clone()
        };
        assert_eq!(views(&base), views(&strengths));
        for on in [
            ViewConfig {
                affine_prob: 1.0,
                ..base.clone()
            },
            ViewConfig {
                gamma_prob: 1.0,
                ..base.clone()
            },
            ViewConfig {
                noise_prob: 1.0,
                ..base.clone()
            },
            ViewConfig {
                erase_prob: 1.0,
                ..base.clone()
            },
        ] {
            assert_ne!(views(&base), views(&on), "{on:?}");
        }
        // Evaluation views have none of them.
        let all_on = ViewConfig {
            affine_prob: 1.0,
            gamma_prob: 1.0,
            noise_prob: 1.0,
            erase_prob: 1.0,
            ..base.clone()
        };
        assert_eq!(views(&base.eval_only()), views(&all_on.eval_only()));
    }

    #[test]
    fn gamma_powers_values_and_noise_stays_in_range() {
        let mut img = Image {
            data: vec![0.0, 0.25, 1.0],
            channels: 1,
            height: 1,
            width: 3,
        };
        color::adjust_gamma(&mut img, 2.0);
        assert_eq!(img.data, vec![0.0, 0.0625, 1.0]);
        let mut img = image();
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        noise::gaussian(&mut img, 0.5, &mut rng);
        assert!(img.data.iter().all(|v| (0.0..=1.0).contains(v)));
        let moved = img
            .data
            .iter()
            .zip(&image().data)
            .filter(|(a, b)| a != b)
            .count();
        assert!(moved > 700, "{moved}");
    }

    #[test]
    fn bad_new_settings_are_refused_by_name() {
        for (cfg, name) in [
            (
                ViewConfig {
                    erase_prob: 1.5,
                    ..Default::default()
                },
                "erase_prob",
            ),
            (
                ViewConfig {
                    erase_scale: (0.3, 0.1),
                    ..Default::default()
                },
                "erase_scale",
            ),
            (
                ViewConfig {
                    gamma: (0.0, 1.0),
                    ..Default::default()
                },
                "gamma",
            ),
            (
                ViewConfig {
                    affine_degrees: 90.0,
                    ..Default::default()
                },
                "affine_degrees",
            ),
            (
                ViewConfig {
                    noise_std: -1.0,
                    ..Default::default()
                },
                "noise_std",
            ),
        ] {
            let e = cfg.validate().unwrap_err().to_string();
            assert!(e.contains(name), "{e}");
        }
    }
}
