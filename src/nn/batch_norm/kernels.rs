//! Training-mode batch normalization of NCHW `f32` data in two passes over memory each way,
//! without the transposed copies of burn's composite (`swap_dims` to `[C, B*H*W]` before every
//! reduction).
//!
//! For channel `c` over its `N = B*H*W` values: `mean`, biased `var`, `x̂ = (x - mean) /
//! sqrt(var + eps)`, `y = gamma * x̂ + beta`. Backward (Ioffe & Szegedy 2015, eq. after Alg. 1):
//! `dbeta = Σ dy`, `dgamma = Σ dy * x̂`, `dx = gamma / sqrt(var + eps) * (dy - dbeta / N - x̂ *
//! dgamma / N)`. Sums run in f32 lanes within a plane and in f64 across planes, in a fixed
//! order.

use crate::simd::avx2_when_available;
use rayon::prelude::*;

/// Shape of the normalized data: `[batch, channels, plane]` with `plane = H*W`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    /// Images.
    pub batch: usize,
    /// Channels (the statistics are per channel).
    pub channels: usize,
    /// Values per channel per image (`H*W`).
    pub plane: usize,
}

impl Dims {
    fn count(&self) -> f64 {
        (self.batch * self.plane) as f64
    }

    /// The `plane` values of image `b`, channel `c`.
    fn at<'a>(&self, x: &'a [f32], b: usize, c: usize) -> &'a [f32] {
        &x[(b * self.channels + c) * self.plane..][..self.plane]
    }
}

/// Per-channel mean and biased variance in one pass: `(mean, var)`. Values are shifted by the
/// channel's first value before summing (so a large mean does not cancel the variance), summed
/// in eight f32 lanes within a plane and in f64 across planes.
pub fn stats(d: &Dims, x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let pairs: Vec<(f32, f32)> = (0..d.channels)
        .into_par_iter()
        .map(|c| channel_stats(d, x, c))
        .collect();
    pairs.into_iter().unzip()
}

avx2_when_available! {
    /// `(mean, var)` of channel `c` (see [`stats`]).
    fn channel_stats(d: &Dims, x: &[f32], c: usize) -> (f32, f32) {
        if d.batch == 0 || d.plane == 0 {
            return (0.0, 0.0);
        }
        let shift = d.at(x, 0, c)[0];
        let (mut s, mut q) = (0.0f64, 0.0f64);
        for b in 0..d.batch {
            let (ps, pq) = lane_sums(d.at(x, b, c), |v| {
                let t = v - shift;
                (t, t * t)
            });
            s += ps;
            q += pq;
        }
        let (m, e2) = (s / d.count(), q / d.count());
        ((m + shift as f64) as f32, (e2 - m * m).max(0.0) as f32)
    }
}

/// The sums of both components of `f` over `xs`, in eight independent f32 lanes (so that the
/// loop vectorizes), returned in f64.
#[inline(always)]
fn lane_sums(xs: &[f32], f: impl Fn(f32) -> (f32, f32)) -> (f64, f64) {
    lane_sums_zip(xs, xs, |v, _| f(v))
}

/// The sums of both components of `f` over pairs of `xs` and `ys`, in eight independent f32
/// lanes, returned in f64.
#[inline(always)]
fn lane_sums_zip(xs: &[f32], ys: &[f32], f: impl Fn(f32, f32) -> (f32, f32)) -> (f64, f64) {
    let (mut a, mut b) = ([0.0f32; 8], [0.0f32; 8]);
    let (cx, cy) = (xs.chunks_exact(8), ys.chunks_exact(8));
    let (rx, ry) = (cx.remainder(), cy.remainder());
    for (hx, hy) in cx.zip(cy) {
        for l in 0..8 {
            let (u, v) = f(hx[l], hy[l]);
            a[l] += u;
            b[l] += v;
        }
    }
    let (mut sa, mut sb) = (0.0f64, 0.0f64);
    for l in 0..8 {
        sa += a[l] as f64;
        sb += b[l] as f64;
    }
    for (x, y) in rx.iter().zip(ry) {
        let (u, w) = f(*x, *y);
        sa += u as f64;
        sb += w as f64;
    }
    (sa, sb)
}

/// `1 / sqrt(var + eps)` per channel.
pub fn inv_std(var: &[f32], eps: f64) -> Vec<f32> {
    var.iter()
        .map(|v| (1.0 / (*v as f64 + eps).sqrt()) as f32)
        .collect()
}

/// The affine map of channel `c`: `y = x * a + s`.
#[inline(always)]
fn affine(c: usize, mean: &[f32], inv_std: &[f32], gamma: &[f32], beta: &[f32]) -> (f32, f32) {
    let a = gamma[c] * inv_std[c];
    (a, beta[c] - mean[c] * a)
}

/// Planes per rayon task, so that tiny planes (a 3x3 map) do not make one task each.
fn min_planes(d: &Dims) -> usize {
    (4096 / d.plane.max(1)).max(1)
}

/// `y = gamma * (x - mean) * inv_std + beta`, then `max(y, 0)` when `relu`.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    d: &Dims,
    x: &[f32],
    mean: &[f32],
    inv_std: &[f32],
    gamma: &[f32],
    beta: &[f32],
    relu: bool,
) -> Vec<f32> {
    let mut y = vec![0.0f32; x.len()];
    if d.plane == 0 {
        return y;
    }
    y.par_chunks_mut(d.plane)
        .zip(x.par_chunks(d.plane))
        .enumerate()
        .with_min_len(min_planes(d))
        .for_each(|(i, (ys, xs))| {
            let (a, s) = affine(i % d.channels, mean, inv_std, gamma, beta);
            plane_forward(ys, xs, a, s, relu);
        });
    y
}

avx2_when_available! {
    /// One plane of [`forward`]: `ys = xs * a + s`, rectified when `relu`.
    fn plane_forward(ys: &mut [f32], xs: &[f32], a: f32, s: f32, relu: bool) {
        if relu {
            for (o, v) in ys.iter_mut().zip(xs) {
                *o = (v * a + s).max(0.0);
            }
        } else {
            for (o, v) in ys.iter_mut().zip(xs) {
                *o = v * a + s;
            }
        }
    }
}

/// Gradients of [`forward`] with the batch statistics: `(dx, dgamma, dbeta)`. With `relu`,
/// `dy` is the gradient of the rectified output (it passes where `gamma * x̂ + beta > 0`).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    d: &Dims,
    x: &[f32],
    mean: &[f32],
    inv_std: &[f32],
    gamma: &[f32],
    beta: &[f32],
    relu: bool,
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let sums: Vec<(f64, f64)> = (0..d.channels)
        .into_par_iter()
        .map(|c| {
            let (a, s) = affine(c, mean, inv_std, gamma, beta);
            channel_grad_sums(d, x, dy, c, (mean[c], inv_std[c]), (a, s), relu)
        })
        .collect();
    let dbeta: Vec<f32> = sums.iter().map(|s| s.0 as f32).collect();
    let dgamma: Vec<f32> = sums.iter().map(|s| s.1 as f32).collect();
    let mut dx = vec![0.0f32; x.len()];
    if d.plane > 0 {
        let n = d.count();
        dx.par_chunks_mut(d.plane)
            .zip(x.par_chunks(d.plane).zip(dy.par_chunks(d.plane)))
            .enumerate()
            .with_min_len(min_planes(d))
            .for_each(|(i, (out, (xs, gs)))| {
                let c = i % d.channels;
                let (a, s) = affine(c, mean, inv_std, gamma, beta);
                let k = gamma[c] * inv_std[c];
                let means = ((sums[c].0 / n) as f32, (sums[c].1 / n) as f32);
                let stats = (mean[c], inv_std[c]);
                plane_backward(out, xs, gs, k, stats, means, (a, s), relu);
            });
    }
    (dx, dgamma, dbeta)
}

/// The gradient reaching the affine output `v * a + s` through the ReLU: `g`, or 0 where
/// the ReLU was off.
#[inline(always)]
fn relu_gate(g: f32, v: f32, a: f32, s: f32) -> f32 {
    if v * a + s <= 0.0 { 0.0 } else { g }
}

avx2_when_available! {
    /// `(Σ dy', Σ dy' * x̂)` over channel `c`, `dy'` being `dy` through the ReLU's gate;
    /// `(m, r)` the channel's mean and `1 / std`, `(a, s)` its affine map.
    fn channel_grad_sums(
        d: &Dims,
        x: &[f32],
        dy: &[f32],
        c: usize,
        stats: (f32, f32),
        map: (f32, f32),
        relu: bool,
    ) -> (f64, f64) {
        let ((m, r), (a, s)) = (stats, map);
        let (mut sb, mut sg) = (0.0f64, 0.0f64);
        // The gated gradient of one plane, written first: with the gate inside the lane sums,
        // LLVM branches around each lane's load and the loop loses its vectors.
        let mut gated = vec![0.0f32; if relu { d.plane } else { 0 }];
        for b in 0..d.batch {
            let (xs, mut gs) = (d.at(x, b, c), d.at(dy, b, c));
            if relu {
                for ((o, v), g) in gated.iter_mut().zip(xs).zip(gs) {
                    *o = relu_gate(*g, *v, a, s);
                }
                gs = &gated;
            }
            let (pb, pg) = lane_sums_zip(xs, gs, |v, g| (g, g * (v - m) * r));
            sb += pb;
            sg += pg;
        }
        (sb, sg)
    }
}

avx2_when_available! {
    /// One plane of the input gradient: `dx = k * (dy' - mean(dy') - x̂ * mean(dy' * x̂))`
    /// with `k = gamma / std` and `(mb, mg)` those two means.
    fn plane_backward(
        out: &mut [f32],
        xs: &[f32],
        gs: &[f32],
        k: f32,
        stats: (f32, f32),
        means: (f32, f32),
        map: (f32, f32),
        relu: bool,
    ) {
        let ((m, r), (mb, mg), (a, s)) = (stats, means, map);
        if relu {
            for ((o, v), g) in out.iter_mut().zip(xs).zip(gs) {
                *o = k * (relu_gate(*g, *v, a, s) - mb - (v - m) * r * mg);
            }
        } else {
            for ((o, v), g) in out.iter_mut().zip(xs).zip(gs) {
                *o = k * (g - mb - (v - m) * r * mg);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values in [-1.5, 2.5).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        crate::nn::test_values(n, seed ^ 0x9E37_79B9_7F4A_7C15)
            .iter()
            .map(|v| v * 2.0 + 0.5)
            .collect()
    }

    /// The loss `L = Σ r * BN(x)` (rectified when `relu`) in f64, recomputing the statistics
    /// from `x`.
    fn loss(
        d: &Dims,
        x: &[f64],
        gamma: &[f64],
        beta: &[f64],
        r: &[f32],
        eps: f64,
        relu: bool,
    ) -> f64 {
        let mut total = 0.0;
        for c in 0..d.channels {
            let idx: Vec<usize> = (0..d.batch)
                .flat_map(|b| (0..d.plane).map(move |p| (b * d.channels + c) * d.plane + p))
                .collect();
            let mean = idx.iter().map(|&i| x[i]).sum::<f64>() / idx.len() as f64;
            let var = idx.iter().map(|&i| (x[i] - mean).powi(2)).sum::<f64>() / idx.len() as f64;
            for &i in &idx {
                let y = gamma[c] * (x[i] - mean) / (var + eps).sqrt() + beta[c];
                total += r[i] as f64 * if relu { y.max(0.0) } else { y };
            }
        }
        total
    }

    #[test]
    fn forward_normalizes_each_channel() {
        let d = Dims {
            batch: 3,
            channels: 2,
            plane: 5,
        };
        let x = values(30, 1);
        let (mean, var) = stats(&d, &x);
        let y = forward(
            &d,
            &x,
            &mean,
            &inv_std(&var, 1e-5),
            &[1.0, 2.0],
            &[0.0, 3.0],
            false,
        );
        let (ym, yv) = stats(&d, &y);
        assert!(ym[0].abs() < 1e-5 && (ym[1] - 3.0).abs() < 1e-5, "{ym:?}");
        assert!(
            (yv[0] - 1.0).abs() < 1e-3 && (yv[1] - 4.0).abs() < 4e-3,
            "{yv:?}"
        );
    }

    /// The one-pass statistics agree with two-pass f64 ones on data far from zero.
    #[test]
    fn stats_match_two_pass_f64_with_a_large_mean() {
        let d = Dims {
            batch: 3,
            channels: 2,
            plane: 37,
        };
        let x: Vec<f32> = values(3 * 2 * 37, 4)
            .iter()
            .map(|v| v * 0.01 + 1000.0)
            .collect();
        let (mean, var) = stats(&d, &x);
        for c in 0..2 {
            let vals: Vec<f64> = (0..3)
                .flat_map(|b| d.at(&x, b, c).iter().map(|v| *v as f64))
                .collect();
            let m = vals.iter().sum::<f64>() / vals.len() as f64;
            let v = vals.iter().map(|a| (a - m).powi(2)).sum::<f64>() / vals.len() as f64;
            assert!((mean[c] as f64 - m).abs() < 1e-4, "mean {} vs {m}", mean[c]);
            assert!(
                (var[c] as f64 - v).abs() < 1e-3 * v,
                "var {} vs {v}",
                var[c]
            );
        }
    }

    /// Central finite differences of the f64 loss against every gradient, with and without the
    /// ReLU (no value sits within the step of its kink).
    #[test]
    fn backward_matches_finite_differences_in_f64() {
        for relu in [false, true] {
            check_backward(relu);
        }
    }

    fn check_backward(relu: bool) {
        let d = Dims {
            batch: 2,
            channels: 3,
            plane: 4,
        };
        let eps = 1e-5;
        let x = values(24, 2);
        let gamma = [0.5f32, -1.2, 2.0];
        let beta = [0.1f32, 0.0, -0.3];
        let r = values(24, 3);
        let (mean, var) = stats(&d, &x);
        let (dx, dgamma, dbeta) =
            backward(&d, &x, &mean, &inv_std(&var, eps), &gamma, &beta, relu, &r);
        let f64s = |v: &[f32]| v.iter().map(|a| *a as f64).collect::<Vec<f64>>();
        let (x64, g64, b64) = (f64s(&x), f64s(&gamma), f64s(&beta));
        let h = 1e-6;
        let fd = |v: &[f64], i: usize, which: u8| {
            let mut plus = v.to_vec();
            let mut minus = v.to_vec();
            plus[i] += h;
            minus[i] -= h;
            let f = |t: &[f64]| match which {
                0 => loss(&d, t, &g64, &b64, &r, eps, relu),
                1 => loss(&d, &x64, t, &b64, &r, eps, relu),
                _ => loss(&d, &x64, &g64, t, &r, eps, relu),
            };
            (f(&plus) - f(&minus)) / (2.0 * h)
        };
        for (i, g) in dx.iter().enumerate() {
            let want = fd(&x64, i, 0);
            assert!(
                (*g as f64 - want).abs() < 1e-3,
                "relu {relu} dx[{i}]: {g} vs {want}"
            );
        }
        for c in 0..3 {
            let (wg, wb) = (fd(&g64, c, 1), fd(&b64, c, 2));
            assert!(
                (dgamma[c] as f64 - wg).abs() < 1e-3,
                "dgamma[{c}]: {} vs {wg}",
                dgamma[c]
            );
            assert!(
                (dbeta[c] as f64 - wb).abs() < 1e-3,
                "dbeta[{c}]: {} vs {wb}",
                dbeta[c]
            );
        }
    }
}
