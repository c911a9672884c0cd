//! 2-D convolution for the backbones: on the CPU (Flex) backend, im2col + GEMM over chunks of
//! images with a backward of its own ([`kernels`]); elsewhere, and for what it does not cover
//! (dilation, groups, `Same` padding, other dtypes), burn's `conv2d`.
//!
//! Why: burn-flex 0.22.1 computes the weight gradient as a convolution with the batch as
//! channels, whose GEMMs have as many rows as the kernel has taps (9), and runs the small GEMMs
//! of a step on one thread. Here each GEMM spans many images' positions (see [`kernels`]).

mod extension;
pub mod kernels;

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::DType;

/// Applies `conv` to `x` `[B, Cin, H, W]`: the same result as `conv.forward(x)` (up to float
/// summation order), by GEMM on the CPU backend.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    match gemm_geometry(conv, &x) {
        Some(packed) => {
            let y = extension::conv2d_gemm(x, conv.weight.val(), packed);
            match &conv.bias {
                Some(b) => {
                    let [c] = b.dims();
                    y + b.val().reshape([1, c, 1, 1])
                }
                None => y,
            }
        }
        None => conv.forward(x),
    }
}

/// `[stride_h, stride_w, pad_top, pad_left, ho, wo]` when the GEMM path applies.
fn gemm_geometry(conv: &Conv2d, x: &Tensor<4>) -> Option<[usize; 6]> {
    if !crate::nn::flex::own_kernels_apply(&x.device(), x.dtype())
        || conv.weight.val().dtype() != DType::F32
    {
        return None;
    }
    if conv.groups != 1 || conv.dilation != [1, 1] {
        return None;
    }
    let padding = match conv.padding {
        PaddingConfig2d::Valid => [(0, 0), (0, 0)],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
        _ => return None,
    };
    let [b, cin, h, w] = x.dims();
    let [cout, wcin, kh, kw] = conv.weight.dims();
    if wcin != cin {
        return None;
    }
    let g = kernels::Geometry::new([b, cin, h, w], [cout, kh, kw], conv.stride, padding)?;
    Some([g.stride[0], g.stride[1], g.pad[0], g.pad[1], g.ho, g.wo])
}
