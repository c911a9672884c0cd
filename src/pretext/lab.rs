//! CIELAB colour and the quantized ab space of colorization (Zhang, Isola & Efros 2016):
//! sRGB <-> Lab (D65 white, 2-degree observer), the in-gamut ab bins of a square grid, soft
//! encoding of a colour onto its nearest bins, class-rebalancing weights from the empirical
//! bin prior, and the annealed-mean decoding of predicted bin distributions.
//!
//! The gamut is computed, not read from a file: a bin is in gamut when the ab of some 8-bit
//! sRGB colour rounds to it. On the 10-unit grid that gives 261 bins, a in [-90, 100] and
//! b in [-110, 90], the same extent as the paper's 313 bins; the paper's set (its
//! `pts_in_hull.npy`) was gathered from ImageNet pixels and holds 52 more bins on the edge of
//! that extent (e.g. a = -90 with b = 50..90, where sRGB reaches only b = 80), which no 8-bit
//! sRGB colour reaches under the standard conversion.

use std::sync::OnceLock;

/// D65 reference white (X, Z; Y = 1).
const WHITE_X: f64 = 0.950_47;
const WHITE_Z: f64 = 1.088_83;
const DELTA: f64 = 6.0 / 29.0;

fn srgb_to_linear(c: f64) -> f64 {
    if c <= 0.04045 {
        c / 12.92
    } else {
        ((c + 0.055) / 1.055).powf(2.4)
    }
}

fn linear_to_srgb(c: f64) -> f64 {
    if c <= 0.003_130_8 {
        12.92 * c
    } else {
        1.055 * c.powf(1.0 / 2.4) - 0.055
    }
}

fn f_lab(t: f64) -> f64 {
    if t > DELTA * DELTA * DELTA {
        t.cbrt()
    } else {
        t / (3.0 * DELTA * DELTA) + 4.0 / 29.0
    }
}

fn f_lab_inv(t: f64) -> f64 {
    if t > DELTA {
        t * t * t
    } else {
        3.0 * DELTA * DELTA * (t - 4.0 / 29.0)
    }
}

fn lab_from_linear(r: f64, g: f64, b: f64) -> [f64; 3] {
    let x = (0.412_456_4 * r + 0.357_576_1 * g + 0.180_437_5 * b) / WHITE_X;
    let y = 0.212_672_9 * r + 0.715_152_2 * g + 0.072_175_0 * b;
    let z = (0.019_333_9 * r + 0.119_192_0 * g + 0.950_304_1 * b) / WHITE_Z;
    let (fx, fy, fz) = (f_lab(x), f_lab(y), f_lab(z));
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

/// sRGB in `[0, 1]` to Lab (`L` in `[0, 100]`, `a` and `b` roughly in `[-110, 110]`).
pub fn srgb_to_lab(rgb: [f32; 3]) -> [f32; 3] {
    let [r, g, b] = rgb.map(|c| srgb_to_linear(c as f64));
    lab_from_linear(r, g, b).map(|v| v as f32)
}

/// Lab to sRGB, not clipped (values outside `[0, 1]` mean the colour is out of gamut).
pub fn lab_to_srgb(lab: [f32; 3]) -> [f32; 3] {
    let fy = (lab[0] as f64 + 16.0) / 116.0;
    let fx = fy + lab[1] as f64 / 500.0;
    let fz = fy - lab[2] as f64 / 200.0;
    let (x, y, z) = (
        f_lab_inv(fx) * WHITE_X,
        f_lab_inv(fy),
        f_lab_inv(fz) * WHITE_Z,
    );
    let r = 3.240_454_2 * x - 1.537_138_5 * y - 0.498_531_4 * z;
    let g = -0.969_266_0 * x + 1.876_010_8 * y + 0.041_556_0 * z;
    let b = 0.055_643_4 * x - 0.204_025_9 * y + 1.057_225_2 * z;
    [r, g, b].map(|c| linear_to_srgb(c) as f32)
}

/// The in-gamut bins of the ab plane quantized on a square grid.
#[derive(Clone, Debug)]
pub struct AbGamut {
    /// Grid step in ab units.
    pub grid: f32,
    /// Bin centres `(a, b)`, ordered by `a` then `b`.
    pub centers: Vec<[f32; 2]>,
    /// Grid cell `(round(a / grid), round(b / grid))`, offset by `OFFSET`, to its bin.
    lookup: Vec<Option<u16>>,
}

/// Grid cells per side of the lookup table (covers ab in about [-130, 130] at 10 units).
const SIDE: i32 = 64;

impl AbGamut {
    /// The bins of the `grid`-unit lattice reached by the ab of some 8-bit sRGB colour.
    pub fn srgb(grid: f32) -> AbGamut {
        let lin: Vec<f64> = (0..256).map(|v| srgb_to_linear(v as f64 / 255.0)).collect();
        let mut hit = vec![false; (SIDE * SIDE) as usize];
        for &r in &lin {
            for &g in &lin {
                for &b in &lin {
                    let [_, a, bb] = lab_from_linear(r, g, b);
                    if let Some(i) = cell_index(a as f32, bb as f32, grid) {
                        hit[i] = true;
                    }
                }
            }
        }
        let mut centers = Vec::new();
        let mut lookup = vec![None; hit.len()];
        for ia in 0..SIDE {
            for ib in 0..SIDE {
                let i = (ia * SIDE + ib) as usize;
                if hit[i] {
                    lookup[i] = Some(centers.len() as u16);
                    centers.push([(ia - SIDE / 2) as f32 * grid, (ib - SIDE / 2) as f32 * grid]);
                }
            }
        }
        AbGamut {
            grid,
            centers,
            lookup,
        }
    }

    /// The 10-unit gamut of the paper, computed once per process.
    pub fn standard() -> &'static AbGamut {
        static GAMUT: OnceLock<AbGamut> = OnceLock::new();
        GAMUT.get_or_init(|| AbGamut::srgb(10.0))
    }

    /// Number of bins `Q`.
    pub fn len(&self) -> usize {
        self.centers.len()
    }

    /// Whether there are no bins.
    pub fn is_empty(&self) -> bool {
        self.centers.is_empty()
    }

    /// The bin of colour `(a, b)`: its grid cell when in gamut, else the nearest centre.
    pub fn bin_of(&self, a: f32, b: f32) -> usize {
        if let Some(Some(q)) = cell_index(a, b, self.grid).map(|i| self.lookup[i]) {
            return q as usize;
        }
        self.nearest(a, b, 1)[0].0
    }

    /// The `k` nearest bin centres to `(a, b)` with their squared distances, nearest first.
    pub fn nearest(&self, a: f32, b: f32, k: usize) -> Vec<(usize, f32)> {
        let mut best: Vec<(usize, f32)> = Vec::with_capacity(k + 1);
        for (q, c) in self.centers.iter().enumerate() {
            let d = (c[0] - a).powi(2) + (c[1] - b).powi(2);
            if best.len() < k || d < best[best.len() - 1].1 {
                let at = best.partition_point(|&(_, e)| e <= d);
                best.insert(at, (q, d));
                best.truncate(k);
            }
        }
        best
    }

    /// Soft encoding (the paper's section 2.1): weights on the `k` nearest bins proportional to
    /// a Gaussian of the distance with `sigma`, summing to 1.
    pub fn soft_encode(&self, a: f32, b: f32, k: usize, sigma: f32) -> Vec<(usize, f32)> {
        let near = self.nearest(a, b, k);
        let w: Vec<f32> = near
            .iter()
            .map(|&(_, d)| (-(d - near[0].1) / (2.0 * sigma * sigma)).exp())
            .collect();
        let total: f32 = w.iter().sum();
        near.iter()
            .zip(w)
            .map(|(&(q, _), w)| (q, w / total))
            .collect()
    }

    /// Class-rebalancing weights (the paper's eq. 3-4): the empirical bin distribution `prior`
    /// is smoothed with a Gaussian of `sigma` ab units, mixed with the uniform distribution
    /// (`lambda` of uniform), inverted, and scaled so its expectation under the smoothed
    /// prior is 1.
    pub fn rebalance_weights(&self, prior: &[f64], lambda: f64, sigma: f64) -> Vec<f32> {
        let q = self.len();
        let total: f64 = prior.iter().sum::<f64>().max(f64::MIN_POSITIVE);
        let mut smooth = vec![0.0; q];
        for (i, ci) in self.centers.iter().enumerate() {
            let mut norm = 0.0;
            for (j, cj) in self.centers.iter().enumerate() {
                let d2 = ((ci[0] - cj[0]).powi(2) + (ci[1] - cj[1]).powi(2)) as f64;
                let k = (-d2 / (2.0 * sigma * sigma)).exp();
                smooth[i] += k * prior[j] / total;
                norm += k;
            }
            smooth[i] /= norm;
        }
        let s: f64 = smooth.iter().sum();
        smooth.iter_mut().for_each(|p| *p /= s);
        let w: Vec<f64> = smooth
            .iter()
            .map(|p| 1.0 / ((1.0 - lambda) * p + lambda / q as f64))
            .collect();
        let expectation: f64 = w.iter().zip(&smooth).map(|(w, p)| w * p).sum();
        w.iter().map(|w| (w / expectation) as f32).collect()
    }

    /// The annealed mean (the paper's eq. 5): the distribution `probs` over the bins is
    /// sharpened to `exp(log p / t)` (renormalized) and the bin centres averaged under it.
    pub fn annealed_mean(&self, probs: &[f32], t: f32) -> [f32; 2] {
        let logs: Vec<f32> = probs.iter().map(|p| p.max(1e-12).ln() / t).collect();
        let m = logs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let w: Vec<f32> = logs.iter().map(|l| (l - m).exp()).collect();
        let total: f32 = w.iter().sum();
        let mut ab = [0.0f32; 2];
        for (wi, c) in w.iter().zip(&self.centers) {
            ab[0] += wi * c[0] / total;
            ab[1] += wi * c[1] / total;
        }
        ab
    }
}

fn cell_index(a: f32, b: f32, grid: f32) -> Option<usize> {
    let ia = (a / grid).round() as i32 + SIDE / 2;
    let ib = (b / grid).round() as i32 + SIDE / 2;
    ((0..SIDE).contains(&ia) && (0..SIDE).contains(&ib)).then(|| (ia * SIDE + ib) as usize)
}

/// The lightness of every image of an RGB data set as a grey data set (`L / 100` scaled to
/// bytes): what a colorization backbone sees, so it can be evaluated on colour data.
/// Grey data sets are returned as they are.
pub fn lightness_dataset(data: &crate::data::Dataset) -> crate::data::Dataset {
    if data.channels != 3 {
        return data.clone();
    }
    let plane = data.height * data.width;
    let mut pixels = Vec::with_capacity(data.len() * plane);
    for i in 0..data.len() {
        let px = data.image(i);
        for p in 0..plane {
            let rgb = [px[p], px[plane + p], px[2 * plane + p]].map(|v| v as f32 / 255.0);
            let l = srgb_to_lab(rgb)[0];
            pixels.push((l / 100.0 * 255.0).round().clamp(0.0, 255.0) as u8);
        }
    }
    crate::data::Dataset {
        pixels,
        channels: 1,
        ..data.clone_without_pixels()
    }
}
