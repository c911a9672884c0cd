//! The 2x2 max pooling as a burn backend extension: a forward on the Flex (CPU) backend and
//! an autodiff operation whose backward routes the gradient with [`kernels::backward`].

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
use std::sync::Arc;

/// 2x2 max pooling with stride 2 (see [`kernels`]).
#[backend_extension(Flex, Autodiff)]
pub trait MaxPool2x2: Backend {
    /// `x` `[B, C, H, W]` pooled to `[B, C, H / 2, W / 2]`.
    fn max_pool_2x2(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// The input shape `[B, C, H, W]` and the kernel's view of it.
fn dims_of(x: &FlexTensor) -> ([usize; 4], Dims) {
    let s = x.layout().shape();
    let shape = [s[0], s[1], s[2], s[3]];
    let d = Dims {
        planes: shape[0] * shape[1],
        h: shape[2],
        w: shape[3],
    };
    (shape, d)
}

/// The pooled tensor and the winners.
fn forward_flex(x: &FlexTensor) -> (FlexTensor, Vec<u8>, [usize; 4]) {
    let (shape, d) = dims_of(x);
    let (y, args) = kernels::forward(&d, &values(x));
    let out = tensor(y, &[shape[0], shape[1], d.ho(), d.wo()]);
    (out, args, shape)
}

impl MaxPool2x2 for Flex {
    fn max_pool_2x2(x: FlexTensor) -> FlexTensor {
        forward_flex(&x).0
    }
}

/// The backward step: the winners and the input shape.
#[derive(Debug)]
struct PoolBackward;

impl Backward<Flex, 1> for PoolBackward {
    type State = (Arc<Vec<u8>>, [usize; 4]);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (args, shape) = ops.state;
        if let Some(node) = node {
            let d = Dims {
                planes: shape[0] * shape[1],
                h: shape[2],
                w: shape[3],
            };
            let dx = kernels::backward(&d, &args, &values(&dy));
            grads.register::<Flex>(node.id, tensor(dx, &shape));
        }
    }
}

impl<C: CheckpointStrategy> MaxPool2x2 for Autodiff<Flex, C> {
    fn max_pool_2x2(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match PoolBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (y, args, shape) = forward_flex(x.primitive());
                prep.finish((Arc::new(args), shape), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward_flex(x.primitive()).0),
        }
    }
}

/// Runs the extension through burn's dispatch.
pub(super) fn max_pool_2x2(x: burn::tensor::Tensor<4>) -> burn::tensor::Tensor<4> {
    burn::tensor::Tensor::from_dispatch(<Dispatch as MaxPool2x2>::max_pool_2x2(x.into_dispatch()))
}
