//! The exact GELU, `x Φ(x) = x (1 + erf(x / √2)) / 2` (Hendrycks & Gimpel 2016; PyTorch's
//! `nn.GELU()` default), as a burn backend extension on the CPU: the forward with a rational
//! approximation of erf and the backward `dy (Φ(x) + x φ(x))` in one pass with
//! [`crate::simd::exp_f32`], both in plain arithmetic that vectorizes (AVX2 where the CPU has
//! it), over rayon's threads. burn-flex 0.22.1 computes erf with scalar `libm` calls and
//! the backward as a chain of whole-tensor operations, all on one thread: the GELU of a ViT
//! block's MLP took longer than its two linear layers. Elsewhere (other backends, dtypes, or
//! with [`crate::nn::set_own_cpu_kernels`] off) burn's `gelu` runs.

use crate::nn::flex::{tensor, values};
use crate::simd::{avx2_when_available, exp_f32};
use burn::backend::autodiff::{
    Autodiff,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, backend_extension};
use burn::prelude::*;
use burn_flex::FlexTensor;
use rayon::prelude::*;

/// Elements per parallel chunk.
const CHUNK: usize = 1 << 14;

/// erf(x) for f32: `x P(x²) / Q(x²)` on `x` clamped to [-4, 4] (erf is 1 to f32 precision
/// beyond), a rational fit of degree 13 over 8 (the form XLA and Eigen use for f32). Maximum
/// absolute error against an f64 erf: under 1e-6 (tested below).
#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = x2 * p + -2.101_024e-6;
    p = x2 * p + -5.692_506_4e-5;
    p = x2 * p + -7.349_906_3e-4;
    p = x2 * p + -2.954_600_2e-3;
    p = x2 * p + -1.609_603_3e-2;
    let mut q = x2 * -1.456_607_2e-5 + -2.133_740_6e-4;
    q = x2 * q + -1.682_827e-3;
    q = x2 * q + -7.373_329_3e-3;
    q = x2 * q + -1.426_473_9e-2;
    x * p / q
}

/// The exact GELU of one value.
#[inline(always)]
pub fn gelu_f32(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_f32(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// The GELU's derivative at `x`: `Φ(x) + x φ(x)`.
#[inline(always)]
pub fn gelu_grad_f32(x: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let cdf = 0.5 * (1.0 + erf_f32(x * std::f32::consts::FRAC_1_SQRT_2));
    cdf + x * INV_SQRT_2PI * exp_f32(-0.5 * x * x)
}

avx2_when_available! {
    /// `y = gelu(x)` over one chunk.
    fn forward_chunk(y: &mut [f32], x: &[f32]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = gelu_f32(x);
        }
    }
}

avx2_when_available! {
    /// `dx = dy gelu'(x)` over one chunk.
    fn backward_chunk(dx: &mut [f32], x: &[f32], dy: &[f32]) {
        for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
            *dx = dy * gelu_grad_f32(x);
        }
    }
}

fn forward_values(x: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0f32; x.len()];
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(y, x)| forward_chunk(y, x));
    y
}

fn backward_values(x: &[f32], dy: &[f32]) -> Vec<f32> {
    let mut dx = vec![0.0f32; x.len()];
    dx.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)))
        .for_each(|(dx, (x, dy))| backward_chunk(dx, x, dy));
    dx
}

fn shape_of(t: &FlexTensor) -> Vec<usize> {
    t.layout().shape().to_vec()
}

fn forward_flex(x: &FlexTensor) -> FlexTensor {
    tensor(forward_values(&values(x)), &shape_of(x))
}

/// The exact GELU with its own CPU kernels.
#[backend_extension(Flex, Autodiff)]
pub trait GeluExact: Backend {
    /// `x Φ(x)`, elementwise.
    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl GeluExact for Flex {
    fn gelu_exact(x: FlexTensor) -> FlexTensor {
        forward_flex(&x)
    }
}

/// The backward step: the saved input.
#[derive(Debug)]
struct GeluBackward;

impl Backward<Flex, 1> for GeluBackward {
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        if let Some(node) = node {
            let x = ops.state;
            let dx = backward_values(&values(&x), &values(&dy));
            grads.register::<Flex>(node.id, tensor(dx, &shape_of(&x)));
        }
    }
}

impl<C: CheckpointStrategy> GeluExact for Autodiff<Flex, C> {
    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match GeluBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let xp = x.primitive().clone();
                let y = forward_flex(&xp);
                prep.finish(xp, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward_flex(x.primitive())),
        }
    }
}

/// The exact GELU of `x`: selfsup's kernels on the CPU backend, burn's `gelu` elsewhere.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if crate::nn::flex::own_kernels_apply(&x.device(), x.dtype()) {
        Tensor::from_dispatch(<Dispatch as GeluExact>::gelu_exact(x.into_dispatch()))
    } else {
        burn::tensor::activation::gelu(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf in f64 by its Maclaurin series (|x| < 3) and continued fraction for erfc beyond:
    /// an independent reference.
    fn erf_f64(x: f64) -> f64 {
        if x.abs() < 3.0 {
            let (mut term, mut sum, x2) = (x, x, x * x);
            for n in 1..200 {
                term *= -x2 / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc(z) = exp(-z²)/√π · 1/(z + 1/2/(z + 1/(z + 3/2/(z + ...)))) (Lentz-free,
            // evaluated from the tail).
            let z = x.abs();
            let mut f = z;
            for k in (1..60).rev() {
                f = z + (k as f64 / 2.0) / f;
            }
            let erfc = (-z * z).exp() / std::f64::consts::PI.sqrt() / f;
            (1.0 - erfc).copysign(x)
        }
    }

    #[test]
    fn erf_matches_an_f64_reference() {
        let mut worst = 0.0f64;
        for i in -8000..=8000 {
            let x = i as f64 / 1000.0;
            worst = worst.max((erf_f32(x as f32) as f64 - erf_f64(x)).abs());
        }
        assert!(worst < 1e-6, "max |erf error| {worst}");
        // Hand-checked values: erf(0.5) = 0.5204998778, erf(1) = 0.8427007929.
        assert!((erf_f64(0.5) - 0.520_499_877_8).abs() < 1e-9);
        assert!((erf_f64(1.0) - 0.842_700_792_9).abs() < 1e-9);
        assert!((erf_f64(3.5) - 0.999_999_256_9).abs() < 1e-9);
    }

    #[test]
    fn gelu_derivative_matches_finite_differences() {
        for i in -60..=60 {
            let x = i as f64 / 10.0;
            let g = |x: f64| 0.5 * x * (1.0 + erf_f64(x / std::f64::consts::SQRT_2));
            let h = 1e-5;
            let fd = (g(x + h) - g(x - h)) / (2.0 * h);
            let ours = gelu_grad_f32(x as f32) as f64;
            assert!((ours - fd).abs() < 2e-6, "x {x}: {ours} vs {fd}");
            assert!((gelu_f32(x as f32) as f64 - g(x)).abs() < 4e-6, "x {x}");
        }
    }
}
