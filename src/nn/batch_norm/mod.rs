//! BatchNorm for the backbones: in training on the CPU (Flex) backend, a fused kernel
//! ([`kernels`]) with a backward of its own; otherwise burn's `BatchNorm::forward`. The module,
//! its parameters, running statistics and their update rule are burn's, unchanged.
//!
//! Why: burn's default `batch_norm_train` (which Flex does not override) copies the activation
//! to `[C, B*H*W]` twice forward and twice backward and makes about ten elementwise passes; in
//! the ConvNet's SimCLR step the transposed copies alone took 16 % of the time. Here the
//! statistics take one pass, the output one (with the ReLU when one follows), and the backward
//! two, reusing the forward's statistics.

mod extension;
pub mod kernels;

use burn::nn::BatchNorm;
use burn::prelude::*;

/// `bn.forward(x)` for `x` `[B, C, ...]`, fused on the CPU backend in training.
pub fn batch_norm<const D: usize>(bn: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    fused(bn, x, false).unwrap_or_else(|x| bn.forward(x))
}

/// `relu(bn.forward(x))`, fused into one operation on the CPU backend in training.
pub fn batch_norm_relu<const D: usize>(bn: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    fused(bn, x, true).unwrap_or_else(|x| burn::tensor::activation::relu(bn.forward(x)))
}

/// The fused kernel's output, or `x` back when it does not apply.
fn fused<const D: usize>(bn: &BatchNorm, x: Tensor<D>, relu: bool) -> Result<Tensor<D>, Tensor<D>> {
    let device = x.device();
    let training = device.is_autodiff() && bn.training.is_enabled();
    if !training || !crate::nn::flex::own_kernels_apply(&device, x.dtype()) {
        return Err(x);
    }
    let stats = extension::stats(x.clone().detach());
    let [_, c] = stats.dims();
    let mean = stats.clone().narrow(0, 0, 1).reshape([c]);
    let var = stats.clone().narrow(0, 1, 1).reshape([c]);
    // burn's update rule (BatchNorm::forward_train), unchanged.
    let running_mean = bn.running_mean.value_sync().to_device(&device);
    let running_var = bn.running_var.value_sync().to_device(&device);
    bn.running_mean.update(
        running_mean
            .mul_scalar(1.0 - bn.momentum)
            .add(mean.mul_scalar(bn.momentum))
            .detach(),
    );
    bn.running_var.update(
        running_var
            .mul_scalar(1.0 - bn.momentum)
            .add(var.mul_scalar(bn.momentum))
            .detach(),
    );
    Ok(extension::train(
        x,
        bn.gamma.val(),
        bn.beta.val(),
        stats,
        bn.epsilon,
        relu,
    ))
}
