//! The GEMM convolution as a burn backend extension: a forward on the Flex (CPU) backend, and
//! an autodiff operation whose backward computes both gradients with [`kernels::backward`].

use super::kernels::{self, Geometry};
use crate::nn::flex::{tensor, values};
use burn::backend::autodiff::{
    Autodiff,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, backend_extension};
use burn::tensor::Shape;
use burn_flex::FlexTensor;

/// Convolution by im2col + GEMM over chunks of images (see [`kernels`]).
#[backend_extension(Flex, Autodiff)]
pub trait GemmConv: Backend {
    /// `x` `[B, Cin, H, W]` convolved with `weight` `[Cout, Cin, kh, kw]`; `geometry` holds
    /// `[stride_h, stride_w, pad_top, pad_left]` (the bottom and right padding follow from
    /// `ho`, `wo`: `[.., .., ho, wo]` is the last pair).
    fn conv2d_gemm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        geometry: [usize; 6],
    ) -> FloatTensor<Self>;
}

/// The geometry of `x` and `weight` (f32 Flex tensors) under the packed `[sh, sw, pt, pl, ho, wo]`.
fn geometry_of(x: &FlexTensor, weight: &FlexTensor, packed: [usize; 6]) -> Geometry {
    let [b, cin, h, w] = dims4(x.layout().shape());
    let [cout, _, kh, kw] = dims4(weight.layout().shape());
    let [sh, sw, pt, pl, ho, wo] = packed;
    Geometry {
        batch: b,
        cin,
        h,
        w,
        cout,
        kh,
        kw,
        stride: [sh, sw],
        pad: [pt, pl],
        ho,
        wo,
    }
}

fn dims4(s: &Shape) -> [usize; 4] {
    [s[0], s[1], s[2], s[3]]
}

fn forward_flex(x: &FlexTensor, weight: &FlexTensor, packed: [usize; 6]) -> FlexTensor {
    let g = geometry_of(x, weight, packed);
    let y = kernels::forward(&g, &values(x), &values(weight));
    tensor(y, &[g.batch, g.cout, g.ho, g.wo])
}

impl GemmConv for Flex {
    fn conv2d_gemm(x: FlexTensor, weight: FlexTensor, geometry: [usize; 6]) -> FlexTensor {
        forward_flex(&x, &weight, geometry)
    }
}

/// The backward step: the saved input, weight and geometry.
#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 2> for ConvBackward {
    type State = (FlexTensor, FlexTensor, [usize; 6]);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x, weight, packed) = ops.state;
        let g = geometry_of(&x, &weight, packed);
        let (dx, dw) = kernels::backward(
            &g,
            &values(&x),
            &values(&weight),
            &values(&dy),
            node_x.is_some(),
        );
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<Flex>(node.id, tensor(dx, &[g.batch, g.cin, g.h, g.w]));
        }
        if let Some(node) = node_w {
            grads.register::<Flex>(node.id, tensor(dw, &[g.cout, g.cin, g.kh, g.kw]));
        }
    }
}

impl<C: CheckpointStrategy> GemmConv for Autodiff<Flex, C> {
    fn conv2d_gemm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        geometry: [usize; 6],
    ) -> FloatTensor<Self> {
        match ConvBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (xp, wp) = (x.primitive().clone(), weight.primitive().clone());
                let y = forward_flex(&xp, &wp, geometry);
                prep.finish((xp, wp, geometry), y)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(forward_flex(x.primitive(), weight.primitive(), geometry))
            }
        }
    }
}

/// Runs the extension through burn's dispatch.
pub(super) fn conv2d_gemm(
    x: burn::tensor::Tensor<4>,
    weight: burn::tensor::Tensor<4>,
    geometry: [usize; 6],
) -> burn::tensor::Tensor<4> {
    burn::tensor::Tensor::from_dispatch(<Dispatch as GemmConv>::conv2d_gemm(
        x.into_dispatch(),
        weight.into_dispatch(),
        geometry,
    ))
}
