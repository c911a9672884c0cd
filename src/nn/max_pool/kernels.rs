//! 2x2 max pooling with stride 2 on NCHW `f32` data (the ConvNet's pooling): the forward keeps
//! which of the four values won each window (0 to 3, row-major), the backward sends each
//! output gradient to that value. A trailing odd row or column is dropped (floor), as in
//! burn's and PyTorch's default. Ties go to the first value, a NaN wins (the last one), as
//! in burn-flex and PyTorch.

use crate::simd::avx2_when_available;
use rayon::prelude::*;

/// Shape of the pooled data: `planes = B * C` planes of `h x w`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    /// Images times channels.
    pub planes: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
}

impl Dims {
    /// Output height.
    pub fn ho(&self) -> usize {
        self.h / 2
    }

    /// Output width.
    pub fn wo(&self) -> usize {
        self.w / 2
    }

    /// Planes per rayon task, so that small planes do not make one task each.
    fn min_planes(&self) -> usize {
        (2048 / (self.ho() * self.wo()).max(1)).max(1)
    }
}

/// The pooled values `[planes, ho, wo]` and the winner of each window.
pub fn forward(d: &Dims, x: &[f32]) -> (Vec<f32>, Vec<u8>) {
    let (ho, wo) = (d.ho(), d.wo());
    let (mut y, mut arg) = (
        vec![0.0f32; d.planes * ho * wo],
        vec![0u8; d.planes * ho * wo],
    );
    if ho * wo == 0 {
        return (y, arg);
    }
    y.par_chunks_mut(ho * wo)
        .zip(arg.par_chunks_mut(ho * wo))
        .zip(x.par_chunks(d.h * d.w))
        .with_min_len(d.min_planes())
        .for_each(|((ys, args), xs)| plane_forward(d.w, xs, ys, args));
    (y, arg)
}

avx2_when_available! {
    /// One plane of [`forward`]: `xs` `[h, w]` into `ys` and `args` `[ho, wo]`.
    fn plane_forward(w: usize, xs: &[f32], ys: &mut [f32], args: &mut [u8]) {
        let wo = w / 2;
        for ((yrow, arow), oy) in ys.chunks_exact_mut(wo).zip(args.chunks_exact_mut(wo)).zip(0..) {
            let top = &xs[2 * oy * w..][..2 * wo];
            let bottom = &xs[(2 * oy + 1) * w..][..2 * wo];
            for (ox, (y, a)) in yrow.iter_mut().zip(arow.iter_mut()).enumerate() {
                let window = [top[2 * ox], top[2 * ox + 1], bottom[2 * ox], bottom[2 * ox + 1]];
                let (mut best, mut at) = (window[0], 0u8);
                for (k, &v) in window.iter().enumerate().skip(1) {
                    if v > best || v.is_nan() {
                        best = v;
                        at = k as u8;
                    }
                }
                *y = best;
                *a = at;
            }
        }
    }
}

/// The input gradient `[planes, h, w]` of [`forward`]: `dy` at each window's winner, zero
/// elsewhere.
pub fn backward(d: &Dims, args: &[u8], dy: &[f32]) -> Vec<f32> {
    let (ho, wo) = (d.ho(), d.wo());
    let mut dx = vec![0.0f32; d.planes * d.h * d.w];
    if ho * wo == 0 {
        return dx;
    }
    dx.par_chunks_mut(d.h * d.w)
        .zip(args.par_chunks(ho * wo).zip(dy.par_chunks(ho * wo)))
        .with_min_len(d.min_planes())
        .for_each(|(out, (a, g))| {
            for (oy, (arow, grow)) in a.chunks_exact(wo).zip(g.chunks_exact(wo)).enumerate() {
                for (ox, (&k, &v)) in arow.iter().zip(grow).enumerate() {
                    let (dy_, dx_) = ((k / 2) as usize, (k % 2) as usize);
                    out[(2 * oy + dy_) * d.w + 2 * ox + dx_] = v;
                }
            }
        });
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Max pooling by the definition, with the index of the winner in the input plane.
    fn reference(d: &Dims, x: &[f32]) -> (Vec<f32>, Vec<usize>) {
        let (mut y, mut at) = (Vec::new(), Vec::new());
        for p in 0..d.planes {
            for oy in 0..d.ho() {
                for ox in 0..d.wo() {
                    let mut best: Option<(f32, usize)> = None;
                    for (ky, kx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                        let i = p * d.h * d.w + (2 * oy + ky) * d.w + 2 * ox + kx;
                        let v = x[i];
                        match best {
                            Some((b, _)) if !(v > b || v.is_nan()) => {}
                            _ => best = Some((v, i)),
                        }
                    }
                    let (v, i) = best.unwrap();
                    y.push(v);
                    at.push(i);
                }
            }
        }
        (y, at)
    }

    #[test]
    fn forward_and_backward_match_the_definition() {
        // Odd sizes (a trailing row and column are dropped), ties (rounded values) and a NaN.
        for (planes, h, w) in [(3, 5, 7), (2, 4, 4), (1, 1, 3), (5, 6, 3)] {
            let d = Dims { planes, h, w };
            let mut x: Vec<f32> = crate::nn::test_values(planes * h * w, 7)
                .iter()
                .map(|v| (v * 4.0).round())
                .collect();
            if x.len() > 5 {
                x[5] = f32::NAN;
            }
            let (y, args) = forward(&d, &x);
            let (ry, rat) = reference(&d, &x);
            assert_eq!(y.len(), ry.len());
            for (a, b) in y.iter().zip(&ry) {
                assert!(a == b || (a.is_nan() && b.is_nan()), "{y:?} vs {ry:?}");
            }
            let dy: Vec<f32> = (0..y.len()).map(|i| i as f32 + 1.0).collect();
            let dx = backward(&d, &args, &dy);
            let mut expected = vec![0.0f32; x.len()];
            for (i, &at) in rat.iter().enumerate() {
                expected[at] += dy[i];
            }
            assert_eq!(dx, expected, "planes {planes}, {h}x{w}");
        }
    }
}
