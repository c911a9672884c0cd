//! Max pooling for the backbones: on the CPU (Flex) backend, the ConvNet's 2x2 / stride 2
//! pooling runs a kernel of its own ([`kernels`]); elsewhere, and for other pooling
//! geometries, burn's `MaxPool2d`.
//!
//! Why: burn-flex 0.22.1 pools through its general 3-D pooling (index arithmetic with
//! divisions per window) and routes the gradient by a scalar scatter over i64 indices; the
//! kernel here keeps one byte per window and handles one plane per task.

mod extension;
pub mod kernels;

use burn::nn::PaddingConfig2d;
use burn::nn::pool::MaxPool2d;
use burn::prelude::*;

/// Applies `pool` to `x` `[B, C, H, W]`: the same result as `pool.forward(x)`, by the kernel
/// of its own on the CPU backend when the pooling is 2x2 with stride 2, no padding.
pub fn max_pool2d(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    let covered = pool.kernel_size == [2, 2]
        && pool.stride == [2, 2]
        && pool.dilation == [1, 1]
        && !pool.ceil_mode
        && matches!(pool.padding, PaddingConfig2d::Valid);
    if covered && crate::nn::flex::own_kernels_apply(&x.device(), x.dtype()) {
        extension::max_pool_2x2(x)
    } else {
        pool.forward(x)
    }
}
