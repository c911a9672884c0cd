//! Convolution as a few large matrix products (im2col + GEMM), on plain `f32` slices in NCHW.
//!
//! A batch is cut into chunks of whole images whose output positions together make about
//! [`TARGET_COLUMNS`] columns. For a chunk, `col` (`[Cin*kh*kw, images*Ho*Wo]`) holds the input
//! patches, and
//! - forward: `Y = W · col` (one GEMM, `m = Cout`, `n = columns`, `k = Cin*kh*kw`);
//! - weight gradient: `dW += dY · colᵀ` (`k = columns`: long, so every GEMM runs full-width
//!   microkernels, not the 9-row edge kernel that a 3x3 output gives);
//! - input gradient: `dcol = Wᵀ · dY`, then `col2im` adds the patches back into `dX`.
//!
//! Chunks run in parallel on rayon's threads, each GEMM single-threaded, with per-thread scratch
//! buffers that are reused from step to step. The weight gradient is summed in a fixed number of
//! groups, each over a fixed range of chunks, then added in order: the result does not depend
//! on the number of threads or on scheduling.

use crate::linalg::matmul;
use rayon::prelude::*;
use std::cell::RefCell;

/// Columns (output positions over the chunk's images) one GEMM aims at.
pub const TARGET_COLUMNS: usize = 1024;

/// At most this many partial weight gradients are summed (fixed, so results do not depend on
/// the thread count).
const WEIGHT_GRAD_GROUPS: usize = 8;

/// Shapes of one 2-D convolution (dilation 1, one group).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Images in the batch.
    pub batch: usize,
    /// Input channels.
    pub cin: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Vertical and horizontal stride.
    pub stride: [usize; 2],
    /// Zero padding above and to the left (the bottom and right follow from the output size).
    pub pad: [usize; 2],
    /// Output height.
    pub ho: usize,
    /// Output width.
    pub wo: usize,
}

impl Geometry {
    /// The geometry of a convolution with `padding = [(top, bottom), (left, right)]`; `None`
    /// when the kernel does not fit in the padded input.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        [batch, cin, h, w]: [usize; 4],
        [cout, kh, kw]: [usize; 3],
        stride: [usize; 2],
        padding: [(usize, usize); 2],
    ) -> Option<Geometry> {
        let (ph, pw) = (
            h + padding[0].0 + padding[0].1,
            w + padding[1].0 + padding[1].1,
        );
        if kh == 0 || kw == 0 || stride[0] == 0 || stride[1] == 0 || ph < kh || pw < kw {
            return None;
        }
        Some(Geometry {
            batch,
            cin,
            h,
            w,
            cout,
            kh,
            kw,
            stride,
            pad: [padding[0].0, padding[1].0],
            ho: (ph - kh) / stride[0] + 1,
            wo: (pw - kw) / stride[1] + 1,
        })
    }

    /// Rows of `col`: `Cin * kh * kw`.
    pub fn patch_len(&self) -> usize {
        self.cin * self.kh * self.kw
    }

    /// Output positions per image.
    pub fn positions(&self) -> usize {
        self.ho * self.wo
    }

    /// Images per chunk.
    fn chunk_images(&self) -> usize {
        TARGET_COLUMNS
            .div_ceil(self.positions().max(1))
            .clamp(1, self.batch.max(1))
    }
}

thread_local! {
    /// Per-thread scratch: patches, and the chunk's outputs or output gradients.
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Runs `f` with this thread's scratch buffers grown to `a` and `b` values.
fn with_scratch<R>(a: usize, b: usize, f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let (x, y) = &mut *s;
        if x.len() < a {
            x.resize(a, 0.0);
        }
        if y.len() < b {
            y.resize(b, 0.0);
        }
        f(&mut x[..a], &mut y[..b])
    })
}

/// The output columns `[lo, hi)` whose input column `ox * stride + offset` lies in `[0, len)`.
fn valid_range(offset: isize, stride: usize, len: usize, out: usize) -> (usize, usize) {
    let s = stride as isize;
    let lo = if offset >= 0 {
        0
    } else {
        (-offset + s - 1) / s
    };
    let last = len as isize - 1 - offset;
    let hi = if last < 0 { 0 } else { last / s + 1 };
    let (lo, hi) = (lo.min(out as isize) as usize, hi.min(out as isize) as usize);
    (lo, hi.max(lo))
}

/// Writes the patches of `images` consecutive images of `x` into `col` (`[K, images * P]`).
fn im2col(g: &Geometry, x: &[f32], images: usize, col: &mut [f32]) {
    let (p, n, plane) = (g.positions(), images * g.positions(), g.h * g.w);
    for ci in 0..g.cin {
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let row = (ci * g.kh + ky) * g.kw + kx;
                let dst_row = &mut col[row * n..(row + 1) * n];
                let x0 = kx as isize - g.pad[1] as isize;
                let (lo, hi) = valid_range(x0, g.stride[1], g.w, g.wo);
                for i in 0..images {
                    let src = &x[(i * g.cin + ci) * plane..][..plane];
                    let dst = &mut dst_row[i * p..(i + 1) * p];
                    for oy in 0..g.ho {
                        let out = &mut dst[oy * g.wo..(oy + 1) * g.wo];
                        let iy = (oy * g.stride[0] + ky) as isize - g.pad[0] as isize;
                        if iy < 0 || iy >= g.h as isize || lo == hi {
                            out.fill(0.0);
                            continue;
                        }
                        let line = &src[iy as usize * g.w..][..g.w];
                        out[..lo].fill(0.0);
                        out[hi..].fill(0.0);
                        let start = (lo as isize * g.stride[1] as isize + x0) as usize;
                        if g.stride[1] == 1 {
                            out[lo..hi].copy_from_slice(&line[start..start + hi - lo]);
                        } else {
                            for (k, o) in out[lo..hi].iter_mut().enumerate() {
                                *o = line[start + k * g.stride[1]];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Adds the patches in `col` (`[K, images * P]`) back into `images` images of `dx`.
fn col2im(g: &Geometry, col: &[f32], images: usize, dx: &mut [f32]) {
    let (p, n, plane) = (g.positions(), images * g.positions(), g.h * g.w);
    for i in 0..images {
        for ci in 0..g.cin {
            let dst = &mut dx[(i * g.cin + ci) * plane..][..plane];
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    let row = (ci * g.kh + ky) * g.kw + kx;
                    let src = &col[row * n + i * p..][..p];
                    let x0 = kx as isize - g.pad[1] as isize;
                    let (lo, hi) = valid_range(x0, g.stride[1], g.w, g.wo);
                    if lo == hi {
                        continue;
                    }
                    for oy in 0..g.ho {
                        let iy = (oy * g.stride[0] + ky) as isize - g.pad[0] as isize;
                        if iy < 0 || iy >= g.h as isize {
                            continue;
                        }
                        let line = &mut dst[iy as usize * g.w..][..g.w];
                        let start = (lo as isize * g.stride[1] as isize + x0) as usize;
                        let vals = &src[oy * g.wo + lo..oy * g.wo + hi];
                        if g.stride[1] == 1 {
                            for (d, v) in line[start..start + hi - lo].iter_mut().zip(vals) {
                                *d += v;
                            }
                        } else {
                            for (k, v) in vals.iter().enumerate() {
                                line[start + k * g.stride[1]] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Forward convolution: `x` `[B, Cin, H, W]`, `weight` `[Cout, Cin, kh, kw]` (contiguous)
/// -> `[B, Cout, Ho, Wo]`.
pub fn forward(g: &Geometry, x: &[f32], weight: &[f32]) -> Vec<f32> {
    let (k, p) = (g.patch_len(), g.positions());
    let chunk = g.chunk_images();
    let mut y = vec![0.0f32; g.batch * g.cout * p];
    if y.is_empty() {
        return y;
    }
    y.par_chunks_mut(chunk * g.cout * p)
        .zip(x.par_chunks(chunk * g.cin * g.h * g.w))
        .for_each(|(ys, xs)| {
            let images = ys.len() / (g.cout * p);
            let n = images * p;
            let out_len = if images == 1 { 0 } else { g.cout * n };
            with_scratch(k * n, out_len, |col, out| {
                im2col(g, xs, images, col);
                if images == 1 {
                    matmul((g.cout, n, k), ys, n, false, weight, (k, 1), col, (n, 1));
                    return;
                }
                matmul((g.cout, n, k), out, n, false, weight, (k, 1), col, (n, 1));
                for i in 0..images {
                    for co in 0..g.cout {
                        ys[(i * g.cout + co) * p..][..p]
                            .copy_from_slice(&out[co * n + i * p..][..p]);
                    }
                }
            });
        });
    y
}

/// Gradients of [`forward`] for the output gradient `dy`: `(dX, dW)`; `dX` is `None` unless
/// `want_dx`.
pub fn backward(
    g: &Geometry,
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    want_dx: bool,
) -> (Option<Vec<f32>>, Vec<f32>) {
    let (k, p) = (g.patch_len(), g.positions());
    let chunk = g.chunk_images();
    let image_in = g.cin * g.h * g.w;
    let chunks = g.batch.div_ceil(chunk);
    let groups = chunks.clamp(1, WEIGHT_GRAD_GROUPS);
    // Group `j` covers chunks [j * chunks / groups, (j + 1) * chunks / groups).
    let first_image = |j: usize| (j * chunks / groups * chunk).min(g.batch);
    let mut dx = if want_dx {
        vec![0.0f32; g.batch * image_in]
    } else {
        Vec::new()
    };
    let mut dx_parts: Vec<Option<&mut [f32]>> = Vec::with_capacity(groups);
    {
        let mut rest: &mut [f32] = &mut dx;
        for j in 0..groups {
            if want_dx {
                let len = (first_image(j + 1) - first_image(j)) * image_in;
                let (head, tail) = rest.split_at_mut(len);
                dx_parts.push(Some(head));
                rest = tail;
            } else {
                dx_parts.push(None);
            }
        }
    }
    let partials: Vec<Vec<f32>> = dx_parts
        .into_par_iter()
        .enumerate()
        .map(|(j, mut dx_part)| {
            let mut dw = vec![0.0f32; g.cout * k];
            let (start, end) = (first_image(j), first_image(j + 1));
            let mut b0 = start;
            while b0 < end {
                let images = chunk.min(end - b0);
                let n = images * p;
                with_scratch(k * n, g.cout * n, |col, dyc| {
                    let dys = &dy[b0 * g.cout * p..(b0 + images) * g.cout * p];
                    // This chunk's output gradient as one [Cout, images * P] matrix.
                    let (lhs, lhs_rs): (&[f32], usize) = if images == 1 {
                        (dys, p)
                    } else {
                        for i in 0..images {
                            for co in 0..g.cout {
                                dyc[co * n + i * p..][..p]
                                    .copy_from_slice(&dys[(i * g.cout + co) * p..][..p]);
                            }
                        }
                        (&dyc[..], n)
                    };
                    im2col(g, &x[b0 * image_in..(b0 + images) * image_in], images, col);
                    // dW += dY · colᵀ
                    matmul(
                        (g.cout, k, n),
                        &mut dw,
                        k,
                        true,
                        lhs,
                        (lhs_rs, 1),
                        col,
                        (1, n),
                    );
                    if let Some(dxp) = dx_part.as_deref_mut() {
                        // dcol = Wᵀ · dY, then scatter-add into dX.
                        matmul(
                            (k, n, g.cout),
                            col,
                            n,
                            false,
                            weight,
                            (1, k),
                            lhs,
                            (lhs_rs, 1),
                        );
                        let off = (b0 - start) * image_in;
                        col2im(g, col, images, &mut dxp[off..off + images * image_in]);
                    }
                });
                b0 += images;
            }
            dw
        })
        .collect();
    let mut dw = vec![0.0f32; g.cout * k];
    for part in &partials {
        for (d, v) in dw.iter_mut().zip(part) {
            *d += v;
        }
    }
    (want_dx.then_some(dx), dw)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct convolution in f64, the reference.
    fn direct(g: &Geometry, x: &[f32], w: &[f32]) -> Vec<f64> {
        let mut y = vec![0.0f64; g.batch * g.cout * g.positions()];
        for b in 0..g.batch {
            for co in 0..g.cout {
                for oy in 0..g.ho {
                    for ox in 0..g.wo {
                        let mut s = 0.0f64;
                        for ci in 0..g.cin {
                            for ky in 0..g.kh {
                                for kx in 0..g.kw {
                                    let iy = (oy * g.stride[0] + ky) as isize - g.pad[0] as isize;
                                    let ix = (ox * g.stride[1] + kx) as isize - g.pad[1] as isize;
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize
                                    {
                                        continue;
                                    }
                                    let xv = x
                                        [((b * g.cin + ci) * g.h + iy as usize) * g.w + ix as usize]
                                        as f64;
                                    let wv = w[((co * g.cin + ci) * g.kh + ky) * g.kw + kx] as f64;
                                    s += xv * wv;
                                }
                            }
                        }
                        y[((b * g.cout + co) * g.ho + oy) * g.wo + ox] = s;
                    }
                }
            }
        }
        y
    }

    fn values(n: usize, seed: u64) -> Vec<f32> {
        crate::nn::test_values(n, seed)
    }

    fn close(a: &[f32], b: &[f64], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: length");
        let scale = b.iter().fold(1e-6f64, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (*x as f64 - y).abs() <= 1e-5 * scale,
                "{what}[{i}]: {x} vs {y} (scale {scale})"
            );
        }
    }

    /// The shapes the backbones use: 3x3 stride 1 and 2 with padding 1, 1x1 stride 2, 7x7
    /// stride 2 padding 3, an asymmetric kernel without padding (CPC), and a batch larger than
    /// one chunk.
    fn cases() -> Vec<Geometry> {
        vec![
            Geometry::new([3, 2, 7, 6], [4, 3, 3], [1, 1], [(1, 1), (1, 1)]).unwrap(),
            Geometry::new([2, 3, 9, 9], [5, 3, 3], [2, 2], [(1, 1), (1, 1)]).unwrap(),
            Geometry::new([2, 4, 8, 8], [6, 1, 1], [2, 2], [(0, 0), (0, 0)]).unwrap(),
            Geometry::new([1, 2, 15, 13], [3, 7, 7], [2, 2], [(3, 3), (3, 3)]).unwrap(),
            Geometry::new([2, 3, 5, 6], [2, 2, 3], [1, 1], [(0, 0), (0, 0)]).unwrap(),
            Geometry::new([70, 2, 4, 4], [3, 3, 3], [1, 1], [(1, 1), (1, 1)]).unwrap(),
            // The ConvNet's first block at 10 px: (10 + 2 - 3) is odd, so the last row and
            // column of the input meet no window's bottom-right tap.
            Geometry::new([2, 1, 10, 10], [3, 3, 3], [2, 2], [(1, 1), (1, 1)]).unwrap(),
        ]
    }

    #[test]
    fn forward_matches_direct_convolution_in_f64() {
        for (i, g) in cases().into_iter().enumerate() {
            let x = values(g.batch * g.cin * g.h * g.w, i as u64);
            let w = values(g.cout * g.patch_len(), 100 + i as u64);
            close(
                &forward(&g, &x, &w),
                &direct(&g, &x, &w),
                &format!("case {i}"),
            );
        }
    }

    /// Gradients of `L = sum(r * Y)` against the f64 adjoint: `dW[co, ci, ky, kx] = sum r * x`
    /// and `dX = sum r * w`, obtained by differentiating the direct convolution (it is linear,
    /// so one-hot directional derivatives of the f64 reference are exact).
    #[test]
    fn backward_matches_adjoint_of_direct_convolution() {
        for (i, g) in cases().into_iter().enumerate() {
            let x = values(g.batch * g.cin * g.h * g.w, i as u64);
            let w = values(g.cout * g.patch_len(), 100 + i as u64);
            let r = values(g.batch * g.cout * g.positions(), 200 + i as u64);
            let (dx, dw) = backward(&g, &x, &w, &r, true);
            let dot = |y: &[f64]| y.iter().zip(&r).map(|(a, b)| a * *b as f64).sum::<f64>();
            let mut dw_ref = vec![0.0f64; w.len()];
            for (j, d) in dw_ref.iter_mut().enumerate() {
                let mut e = vec![0.0f32; w.len()];
                e[j] = 1.0;
                *d = dot(&direct(&g, &x, &e));
            }
            let mut dx_ref = vec![0.0f64; x.len()];
            for (j, d) in dx_ref.iter_mut().enumerate() {
                let mut e = vec![0.0f32; x.len()];
                e[j] = 1.0;
                *d = dot(&direct(&g, &e, &w));
            }
            close(&dw, &dw_ref, &format!("case {i} dW"));
            close(&dx.unwrap(), &dx_ref, &format!("case {i} dX"));
            let (none, dw2) = backward(&g, &x, &w, &r, false);
            assert!(none.is_none());
            assert_eq!(dw, dw2, "case {i}: dW does not depend on want_dx");
        }
    }

    #[test]
    fn geometry_refuses_a_kernel_larger_than_the_padded_input() {
        assert!(Geometry::new([1, 1, 2, 2], [1, 3, 3], [1, 1], [(0, 0), (0, 0)]).is_none());
        let g = Geometry::new([1, 1, 28, 28], [1, 3, 3], [2, 2], [(1, 1), (1, 1)]).unwrap();
        assert_eq!((g.ho, g.wo), (14, 14));
    }
}
