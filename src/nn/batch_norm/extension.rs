//! The fused BatchNorm as a burn backend extension on Flex, with an autodiff backward.

use super::kernels::{self, Dims};
use crate::nn::flex::{tensor, values};
use burn::backend::autodiff::{
    Autodiff,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, backend_extension};
use burn_flex::FlexTensor;

/// Training-mode batch normalization over `[B, C, ...]` in two passes each way.
#[backend_extension(Flex, Autodiff)]
pub trait FusedBatchNorm: Backend {
    /// Per-channel `[mean, biased variance]` of `x`, `[2, C]` (not differentiated).
    fn batch_norm_stats(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `gamma * (x - mean) / sqrt(var + eps) + beta` with the batch's statistics `stats`
    /// (`batch_norm_stats(x)`, not differentiated: the backward is the full batch-statistics
    /// gradient), rectified when `relu`.
    fn batch_norm_train_fused(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        eps: f64,
        relu: bool,
    ) -> FloatTensor<Self>;
}

fn dims(x: &FlexTensor) -> Dims {
    let s = x.layout().shape();
    Dims {
        batch: s[0],
        channels: s[1],
        plane: (2..s.num_dims()).map(|i| s[i]).product(),
    }
}

fn stats_flex(x: &FlexTensor) -> FlexTensor {
    let d = dims(x);
    let (mut mean, var) = kernels::stats(&d, &values(x));
    mean.extend(var);
    tensor(mean, &[2, d.channels])
}

/// `(mean, var)` from a `[2, C]` statistics tensor.
fn split_stats(stats: &FlexTensor) -> (Vec<f32>, Vec<f32>) {
    let v = values(stats);
    let c = v.len() / 2;
    (v[..c].to_vec(), v[c..].to_vec())
}

fn forward_flex(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    stats: &FlexTensor,
    eps: f64,
    relu: bool,
) -> FlexTensor {
    let d = dims(x);
    let (mean, var) = split_stats(stats);
    let y = kernels::forward(
        &d,
        &values(x),
        &mean,
        &kernels::inv_std(&var, eps),
        &values(gamma),
        &values(beta),
        relu,
    );
    tensor(y, &x.layout().shape().to_vec())
}

impl FusedBatchNorm for Flex {
    fn batch_norm_stats(x: FlexTensor) -> FlexTensor {
        stats_flex(&x)
    }
    fn batch_norm_train_fused(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        stats: FlexTensor,
        eps: f64,
        relu: bool,
    ) -> FlexTensor {
        forward_flex(&x, &gamma, &beta, &stats, eps, relu)
    }
}

/// The backward step: the saved input, gamma, beta, statistics, epsilon and whether a ReLU
/// follows.
#[derive(Debug)]
struct BatchNormBackward;

impl Backward<Flex, 3> for BatchNormBackward {
    type State = (FlexTensor, FlexTensor, FlexTensor, FlexTensor, f64, bool);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x, gamma, beta, stats, eps, relu) = ops.state;
        let d = dims(&x);
        let xs = values(&x);
        let (mean, var) = split_stats(&stats);
        let (dx, dgamma, dbeta) = kernels::backward(
            &d,
            &xs,
            &mean,
            &kernels::inv_std(&var, eps),
            &values(&gamma),
            &values(&beta),
            relu,
            &values(&dy),
        );
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, tensor(dx, &x.layout().shape().to_vec()));
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, tensor(dgamma, &[d.channels]));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, tensor(dbeta, &[d.channels]));
        }
    }
}

impl<C: CheckpointStrategy> FusedBatchNorm for Autodiff<Flex, C> {
    fn batch_norm_stats(x: FloatTensor<Self>) -> FloatTensor<Self> {
        <FloatTensor<Self>>::new(stats_flex(x.primitive()))
    }

    fn batch_norm_train_fused(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        eps: f64,
        relu: bool,
    ) -> FloatTensor<Self> {
        let stats = stats.primitive().clone();
        match BatchNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (xp, gp, bp) = (
                    x.primitive().clone(),
                    gamma.primitive().clone(),
                    beta.primitive().clone(),
                );
                let y = forward_flex(&xp, &gp, &bp, &stats, eps, relu);
                prep.finish((xp, gp, bp, stats, eps, relu), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward_flex(
                x.primitive(),
                gamma.primitive(),
                beta.primitive(),
                &stats,
                eps,
                relu,
            )),
        }
    }
}

/// `[2, C]` statistics through burn's dispatch.
pub(super) fn stats<const D: usize>(x: burn::tensor::Tensor<D>) -> burn::tensor::Tensor<2> {
    burn::tensor::Tensor::from_dispatch(<Dispatch as FusedBatchNorm>::batch_norm_stats(
        x.into_dispatch(),
    ))
}

/// The normalized output through burn's dispatch.
pub(super) fn train<const D: usize>(
    x: burn::tensor::Tensor<D>,
    gamma: burn::tensor::Tensor<1>,
    beta: burn::tensor::Tensor<1>,
    stats: burn::tensor::Tensor<2>,
    eps: f64,
    relu: bool,
) -> burn::tensor::Tensor<D> {
    burn::tensor::Tensor::from_dispatch(<Dispatch as FusedBatchNorm>::batch_norm_train_fused(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        stats.into_dispatch(),
        eps,
        relu,
    ))
}
