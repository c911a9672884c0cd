//! The pre-norm transformer block of the ViT and of MAE's decoder (Vaswani et al. 2017, with
//! the LayerNorm before each branch as in ViT): `x + attention(norm(x))`, then
//! `x + mlp(norm(x))`, the MLP `linear -> GELU -> linear`.
//!
//! It computes what burn's `TransformerEncoderLayer` with `norm_first` computes (no dropout,
//! no masks), with the same parameters under the same names (`mha.query`, `pwff.linear_inner`,
//! `norm_2` before the attention and `norm_1` before the MLP, as burn has them), so checkpoints
//! of either load into the other, and is built from burn's layer so that a seed draws the same
//! weights. What differs is how: every linear layer runs on the tokens flattened to a matrix
//! `[B * L, D]` (burn's layer multiplies `[B, L, D]` by a weight broadcast over the batch, and
//! its backward then computes one weight gradient per image and sums them: 8x the forward's time here), the
//! query, key and value projections are one GEMM against their concatenated weights, the
//! attention runs on that fused projection ([`crate::nn::attention`]) and the GELU is
//! [`crate::nn::gelu`] (both with kernels and backwards of their own on the CPU).

use burn::nn::transformer::{TransformerEncoderConfig, TransformerEncoderLayer};
use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;

/// Multi-head self-attention (softmax of `q k^T / sqrt(d_head)`, per head).
#[derive(Module, Debug)]
pub struct Attention {
    /// Query projection.
    pub query: Linear,
    /// Key projection.
    pub key: Linear,
    /// Value projection.
    pub value: Linear,
    /// Output projection.
    pub output: Linear,
    heads: usize,
}

/// The block's MLP: `linear_outer(gelu(linear_inner(x)))`.
#[derive(Module, Debug)]
pub struct FeedForward {
    /// `D -> hidden`.
    pub linear_inner: Linear,
    /// `hidden -> D`.
    pub linear_outer: Linear,
}

/// One pre-norm transformer block.
#[derive(Module, Debug)]
pub struct Block {
    /// Self-attention.
    pub mha: Attention,
    /// The MLP.
    pub pwff: FeedForward,
    /// LayerNorm before the MLP (burn's name).
    pub norm_1: LayerNorm,
    /// LayerNorm before the attention (burn's name).
    pub norm_2: LayerNorm,
}

/// `x` `[N, in]` through `linear`: `x W + b`, one GEMM and a broadcast add (what the figures
/// in docs/performance.md were measured with; burn's `Linear::forward` on a matrix gives the
/// same values, and a comparison of the two was within this machine's noise).
fn linear_2d(linear: &Linear, x: Tensor<2>) -> Tensor<2> {
    let y = x.matmul(linear.weight.val());
    match &linear.bias {
        Some(b) => y + b.val().unsqueeze::<2>(),
        None => y,
    }
}

impl Attention {
    /// Self-attention over `x` `[B * L, D]` (the tokens of `b` sequences of `l`), `[B * L, D]`.
    pub fn forward(&self, x: Tensor<2>, (b, l): (usize, usize)) -> Tensor<2> {
        let [_, d] = x.dims();
        let h = self.heads;
        let bias = |lin: &Linear| {
            lin.bias
                .as_ref()
                .map(|b| b.val())
                .unwrap_or_else(|| Tensor::zeros([d], &x.device()))
        };
        let w = Tensor::cat(
            vec![
                self.query.weight.val(),
                self.key.weight.val(),
                self.value.weight.val(),
            ],
            1,
        );
        let bias = Tensor::cat(
            vec![bias(&self.query), bias(&self.key), bias(&self.value)],
            0,
        );
        let qkv = x.matmul(w) + bias.unsqueeze::<2>();
        let context = crate::nn::attention::attention(qkv, (b, l, h));
        linear_2d(&self.output, context)
    }
}

impl FeedForward {
    /// The MLP on `x` `[N, D]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let hidden = crate::nn::gelu::gelu(linear_2d(&self.linear_inner, x));
        linear_2d(&self.linear_outer, hidden)
    }
}

impl Block {
    /// A block of `dim`-wide tokens, `heads` heads and an MLP `hidden` wide, initialized as
    /// burn's `TransformerEncoderLayer` of that size would be.
    pub fn new(dim: usize, hidden: usize, heads: usize, device: &Device) -> Self {
        let config = TransformerEncoderConfig::new(dim, hidden, heads, 1)
            .with_norm_first(true)
            .with_dropout(0.0);
        Block::from_burn(TransformerEncoderLayer::new(&config, device))
    }

    /// The same block as burn's pre-norm `layer` (its weights moved over).
    pub fn from_burn(layer: TransformerEncoderLayer) -> Self {
        Block {
            mha: Attention {
                heads: layer.mha.n_heads,
                query: layer.mha.query,
                key: layer.mha.key,
                value: layer.mha.value,
                output: layer.mha.output,
            },
            pwff: FeedForward {
                linear_inner: layer.pwff.linear_inner,
                linear_outer: layer.pwff.linear_outer,
            },
            norm_1: layer.norm_1,
            norm_2: layer.norm_2,
        }
    }

    /// The block on `x` `[B, L, D]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, l, d] = x.dims();
        let x = x.reshape([b * l, d]);
        let x = x.clone() + self.mha.forward(self.norm_2.forward(x), (b, l));
        let x = x.clone() + self.pwff.forward(self.norm_1.forward(x));
        x.reshape([b, l, d])
    }
}
