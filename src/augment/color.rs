//! Colour transforms: jitter (brightness, contrast, saturation, hue, in random order, as
//! torchvision's `ColorJitter`), gamma, grayscale and solarization. Values are clamped to `[0, 1]`.

use super::Image;
use rand::Rng;
use rand::seq::SliceRandom;

fn luma(img: &Image, i: usize) -> f32 {
    let plane = img.height * img.width;
    if img.channels == 3 {
        0.299 * img.data[i] + 0.587 * img.data[plane + i] + 0.114 * img.data[2 * plane + i]
    } else {
        img.data[i]
    }
}

/// Blends every pixel with `other(i)` (a per-pixel value shared by all channels):
/// `f * x + (1 - f) * other`, clamped.
fn blend(img: &mut Image, f: f32, other: impl Fn(&Image, usize) -> f32) {
    let plane = img.height * img.width;
    let o: Vec<f32> = (0..plane).map(|i| other(img, i)).collect();
    for c in 0..img.channels {
        for (p, &g) in img.data[c * plane..(c + 1) * plane].iter_mut().zip(&o) {
            *p = (f * *p + (1.0 - f) * g).clamp(0.0, 1.0);
        }
    }
}

/// Multiplies intensities by `f`.
pub fn adjust_brightness(img: &mut Image, f: f32) {
    img.data
        .iter_mut()
        .for_each(|p| *p = (*p * f).clamp(0.0, 1.0));
}

/// Scales the distance from the mean grey level by `f`.
pub fn adjust_contrast(img: &mut Image, f: f32) {
    let plane = img.height * img.width;
    let mean = (0..plane).map(|i| luma(img, i)).sum::<f32>() / plane as f32;
    blend(img, f, |_, _| mean);
}

/// Scales the distance from each pixel's grey level by `f` (no-op on grey images).
pub fn adjust_saturation(img: &mut Image, f: f32) {
    if img.channels == 3 {
        blend(img, f, luma);
    }
}

/// Rotates hue by `shift` turns (in `[-0.5, 0.5]`), through HSV (no-op on grey images).
pub fn adjust_hue(img: &mut Image, shift: f32) {
    if img.channels != 3 {
        return;
    }
    let plane = img.height * img.width;
    for i in 0..plane {
        let (r, g, b) = (img.data[i], img.data[plane + i], img.data[2 * plane + i]);
        let max = r.max(g).max(b);
        let min = r.min(g).min(b);
        let d = max - min;
        let mut h = if d == 0.0 {
            0.0
        } else if max == r {
            ((g - b) / d).rem_euclid(6.0) / 6.0
        } else if max == g {
            ((b - r) / d + 2.0) / 6.0
        } else {
            ((r - g) / d + 4.0) / 6.0
        };
        let s = if max == 0.0 { 0.0 } else { d / max };
        h = (h + shift).rem_euclid(1.0);
        let (r, g, b) = hsv_to_rgb(h, s, max);
        img.data[i] = r;
        img.data[plane + i] = g;
        img.data[2 * plane + i] = b;
    }
}

fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    let h6 = h * 6.0;
    let i = h6.floor();
    let f = h6 - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match (i as i32).rem_euclid(6) {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

/// Colour jitter: each adjustment with a factor drawn uniformly around 1 (hue around 0),
/// applied in a random order.
pub fn jitter<R: Rng>(
    img: &mut Image,
    brightness: f32,
    contrast: f32,
    saturation: f32,
    hue: f32,
    rng: &mut R,
) {
    let mut order = [0u8, 1, 2, 3];
    order.shuffle(rng);
    for op in order {
        match op {
            0 if brightness > 0.0 => adjust_brightness(
                img,
                rng.random_range((1.0 - brightness).max(0.0)..=1.0 + brightness),
            ),
            1 if contrast > 0.0 => adjust_contrast(
                img,
                rng.random_range((1.0 - contrast).max(0.0)..=1.0 + contrast),
            ),
            2 if saturation > 0.0 => adjust_saturation(
                img,
                rng.random_range((1.0 - saturation).max(0.0)..=1.0 + saturation),
            ),
            3 if hue > 0.0 => adjust_hue(img, rng.random_range(-hue..=hue)),
            _ => {}
        }
    }
}

/// Replaces every channel by the luma (ITU-R 601) of the pixel.
pub fn to_grayscale(img: &mut Image) {
    blend(img, 0.0, luma);
}

/// Inverts pixels at or above `threshold` (BYOL's solarization).
pub fn solarize(img: &mut Image, threshold: f32) {
    img.data.iter_mut().for_each(|p| {
        if *p >= threshold {
            *p = 1.0 - *p
        }
    });
}

/// Gamma correction: every value `x` becomes `x^gamma` (gamma below 1 brightens the dark
/// tones, above 1 darkens them; black and white stay).
pub fn adjust_gamma(img: &mut Image, gamma: f32) {
    img.data
        .iter_mut()
        .for_each(|p| *p = p.clamp(0.0, 1.0).powf(gamma));
}

/// A gamma drawn log-uniformly from `range`, so that `g` and `1 / g` are equally likely.
pub fn random_gamma<R: Rng>(img: &mut Image, range: (f32, f32), rng: &mut R) {
    adjust_gamma(img, super::log_uniform(range, rng));
}
