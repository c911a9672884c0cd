//! Additive Gaussian pixel noise, clamped to `[0, 1]`: a sensor-like perturbation that makes
//! a method ignore single-pixel detail.

use super::Image;
use rand::Rng;

/// Adds independent `N(0, std^2)` noise to every value and clamps to `[0, 1]`.
pub fn gaussian<R: Rng>(img: &mut Image, std: f32, rng: &mut R) {
    let noise = super::standard_normal(img.data.len(), rng);
    for (p, n) in img.data.iter_mut().zip(noise) {
        *p = (*p + std * n).clamp(0.0, 1.0);
    }
}
