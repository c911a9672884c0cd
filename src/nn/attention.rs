//! Multi-head scaled dot-product attention, `softmax(q k^T / sqrt(d_head)) v` per head
//! (Vaswani et al. 2017), on the rows of a fused projection `[B * L, 3D]` (each token's
//! query, key and value side by side, head `j` at columns `j d_head ..`), giving the context
//! `[B * L, D]` in the same token-major layout.
//!
//! On the CPU backend it runs as a burn extension: one pass per image over its heads (rayon
//! over images), reading q, k and v where the projection wrote them and keeping the attention
//! weights for a backward of its own (`dV = P^T dO`, `dS = P (dO v^T - rowsum(P dO v^T))`,
//! `dQ = dS k / sqrt(d)`, `dK = dS^T q / sqrt(d)`). burn's path, which runs elsewhere and is
//! the reference in the tests, permutes q, k and v to `[B, H, L, d_head]`, multiplies
//! `B * H` small matrices one GEMM call each, and copies back; for ViT token counts (12-64)
//! that overhead outweighs the arithmetic.

use crate::nn::flex::{tensor, values};
use crate::simd::{avx2_when_available, axpy, dot, exp_f32};
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

/// `[batch, tokens, heads]` of a fused projection.
type Dims = [usize; 3];

avx2_when_available! {
    /// One image: `qkv` `[l, 3d]` to the context `ctx` `[l, d]` and the attention weights `p`
    /// `[h, l, l]`.
    fn forward_image(qkv: &[f32], ctx: &mut [f32], p: &mut [f32], l: usize, h: usize) {
        let row = qkv.len() / l;
        let d = row / 3;
        let dh = d / h;
        let scale = 1.0 / (dh as f32).sqrt();
        for head in 0..h {
            for i in 0..l {
                let q = &qkv[i * row + head * dh..][..dh];
                let weights = &mut p[(head * l + i) * l..][..l];
                let mut max = f32::NEG_INFINITY;
                for (j, w) in weights.iter_mut().enumerate() {
                    *w = scale * dot(q, &qkv[j * row + d + head * dh..][..dh]);
                    max = max.max(*w);
                }
                let mut sum = 0.0f32;
                for w in weights.iter_mut() {
                    *w = exp_f32(*w - max);
                    sum += *w;
                }
                let inv = 1.0 / sum;
                let out = &mut ctx[i * d + head * dh..][..dh];
                out.fill(0.0);
                for (j, w) in weights.iter_mut().enumerate() {
                    *w *= inv;
                    axpy(out, *w, &qkv[j * row + 2 * d + head * dh..][..dh]);
                }
            }
        }
    }
}

avx2_when_available! {
    /// One image's gradient `dqkv` `[l, 3d]` (zeroed on entry) from the context's `dctx`
    /// `[l, d]`, the projection `qkv` and the weights `p` of the forward.
    fn backward_image(qkv: &[f32], p: &[f32], dctx: &[f32], dqkv: &mut [f32], l: usize, h: usize) {
        let row = qkv.len() / l;
        let d = row / 3;
        let dh = d / h;
        let scale = 1.0 / (dh as f32).sqrt();
        let mut dp = vec![0.0f32; l];
        let mut dq = vec![0.0f32; dh];
        for head in 0..h {
            for i in 0..l {
                let d_out = &dctx[i * d + head * dh..][..dh];
                let weights = &p[(head * l + i) * l..][..l];
                let mut row_dot = 0.0f32;
                for j in 0..l {
                    dp[j] = dot(d_out, &qkv[j * row + 2 * d + head * dh..][..dh]);
                    row_dot += weights[j] * dp[j];
                    axpy(&mut dqkv[j * row + 2 * d + head * dh..][..dh], weights[j], d_out);
                }
                let q = &qkv[i * row + head * dh..][..dh];
                dq.fill(0.0);
                for j in 0..l {
                    let ds = scale * weights[j] * (dp[j] - row_dot);
                    axpy(&mut dq, ds, &qkv[j * row + d + head * dh..][..dh]);
                    axpy(&mut dqkv[j * row + d + head * dh..][..dh], ds, q);
                }
                axpy(&mut dqkv[i * row + head * dh..][..dh], 1.0, &dq);
            }
        }
    }
}

/// The context and the attention weights `[B, H, L, L]` of `qkv` `[B * L, 3D]`.
fn forward_values(qkv: &[f32], [b, l, h]: Dims) -> (Vec<f32>, Vec<f32>) {
    let d = qkv.len() / (b * l * 3);
    let mut ctx = vec![0.0f32; b * l * d];
    let mut p = vec![0.0f32; b * h * l * l];
    ctx.par_chunks_mut(l * d)
        .zip(p.par_chunks_mut(h * l * l))
        .zip(qkv.par_chunks(l * 3 * d))
        .for_each(|((ctx, p), qkv)| forward_image(qkv, ctx, p, l, h));
    (ctx, p)
}

fn forward_flex(qkv: &FlexTensor, dims: Dims) -> (FlexTensor, FlexTensor) {
    let [b, l, h] = dims;
    let (ctx, p) = forward_values(&values(qkv), dims);
    let d = ctx.len() / (b * l);
    (tensor(ctx, &[b * l, d]), tensor(p, &[b, h, l, l]))
}

/// Attention on a fused projection with its own CPU kernels.
#[backend_extension(Flex, Autodiff)]
pub trait FusedAttention: Backend {
    /// The context `[B * L, D]` of `qkv` `[B * L, 3D]`, `dims` = `[B, L, heads]`.
    fn fused_attention(qkv: FloatTensor<Self>, dims: [usize; 3]) -> FloatTensor<Self>;
}

impl FusedAttention for Flex {
    fn fused_attention(qkv: FlexTensor, dims: [usize; 3]) -> FlexTensor {
        forward_flex(&qkv, dims).0
    }
}

/// The backward step: the projection, the weights and the dimensions.
#[derive(Debug)]
struct AttentionBackward;

impl Backward<Flex, 1> for AttentionBackward {
    type State = (FlexTensor, FlexTensor, Dims);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node] = ops.parents;
        let dctx = grads.consume::<Flex>(&ops.node);
        let Some(node) = node else { return };
        let (qkv, p, [b, l, h]) = ops.state;
        let (qkv, p, dctx) = (values(&qkv), values(&p), values(&dctx));
        let row = qkv.len() / (b * l);
        let mut dqkv = vec![0.0f32; qkv.len()];
        dqkv.par_chunks_mut(l * row)
            .zip(qkv.par_chunks(l * row))
            .zip(p.par_chunks(h * l * l).zip(dctx.par_chunks(l * row / 3)))
            .for_each(|((dqkv, qkv), (p, dctx))| backward_image(qkv, p, dctx, dqkv, l, h));
        grads.register::<Flex>(node.id, tensor(dqkv, &[b * l, row]));
    }
}

impl<C: CheckpointStrategy> FusedAttention for Autodiff<Flex, C> {
    fn fused_attention(qkv: FloatTensor<Self>, dims: [usize; 3]) -> FloatTensor<Self> {
        match AttentionBackward
            .prepare::<C>([qkv.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let x = qkv.primitive().clone();
                let (ctx, p) = forward_flex(&x, dims);
                prep.finish((x, p, dims), ctx)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward_flex(qkv.primitive(), dims).0),
        }
    }
}

/// burn's attention on the fused projection (the reference, and the path off the CPU).
pub fn attention_reference(qkv: Tensor<2>, [b, l, h]: Dims) -> Tensor<2> {
    let [_, three_d] = qkv.dims();
    let d = three_d / 3;
    let dh = d / h;
    let qkv = qkv.reshape([b, l, 3, h, dh]).permute([2, 0, 3, 1, 4]);
    let part = |i: usize| qkv.clone().narrow(0, i, 1).reshape([b, h, l, dh]);
    let (q, k, v) = (part(0), part(1), part(2));
    let scores = q
        .matmul(k.swap_dims(2, 3))
        .mul_scalar(1.0 / (dh as f32).sqrt());
    let weights = burn::tensor::activation::softmax(scores, 3);
    weights.matmul(v).swap_dims(1, 2).reshape([b * l, d])
}

/// Self-attention of `b` sequences of `l` tokens with `heads` heads on their fused
/// projection `qkv` `[b * l, 3D]`: the context `[b * l, D]`.
pub fn attention(qkv: Tensor<2>, (b, l, heads): (usize, usize, usize)) -> Tensor<2> {
    if crate::nn::flex::own_kernels_apply(&qkv.device(), qkv.dtype()) {
        Tensor::from_dispatch(<Dispatch as FusedAttention>::fused_attention(
            qkv.into_dispatch(),
            [b, l, heads],
        ))
    } else {
        attention_reference(qkv, [b, l, heads])
    }
}
