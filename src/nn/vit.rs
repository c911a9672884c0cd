//! Vision Transformer (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words"): the image is
//! cut into `patch` x `patch` patches, each linearly embedded (a strided convolution), a
//! learned position embedding is added, and pre-norm transformer blocks (multi-head
//! self-attention and a GELU MLP, [`crate::nn::transformer::Block`]) follow;
//! a final LayerNorm ends it. No class token: the vector the methods' heads see is the mean
//! of the patch tokens (the global pooling MAE and solo-learn's linear probes use);
//! evaluation reads the last blocks' tokens pooled to a 3x3 grid instead
//! ([`crate::nn::Backbone::default_features`]).
//!
//! So that every readout and layer probe works as for the CNNs, each stage (the patch
//! embedding, then every block) is returned as a feature map `[B, D, h, w]` of its tokens on
//! the patch grid. The position embedding is learned for `image_size` and interpolated
//! (bilinear) for other sizes, such as the local crops of DINO.

use crate::nn::transformer::Block;
use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// ViT size: the preset's width and heads unless set (0 = the preset's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VitConfig {
    /// Patch side in pixels (4 for 28-32 px images, 16 for 224 px).
    pub patch: usize,
    /// Image side the position embedding is learned for.
    pub image_size: usize,
    /// Token width (0: the preset's, 192 tiny, 384 small).
    pub dim: usize,
    /// Transformer blocks (0: the preset's, 12).
    pub depth: usize,
    /// Attention heads (0: the preset's, 3 tiny, 6 small).
    pub heads: usize,
    /// Hidden width of each block's MLP, in multiples of `dim`.
    pub mlp_ratio: usize,
}

impl Default for VitConfig {
    fn default() -> Self {
        VitConfig {
            patch: 4,
            image_size: 32,
            dim: 0,
            depth: 0,
            heads: 0,
            mlp_ratio: 4,
        }
    }
}

/// A Vision Transformer backbone.
#[derive(Module, Debug)]
pub struct Vit {
    /// Patch embedding: a `patch` x `patch` convolution with stride `patch`.
    pub patch_embed: Conv2d,
    /// Learned position embedding `[1, D, g, g]` on the patch grid of `image_size`.
    pub pos_embed: Param<Tensor<4>>,
    /// Pre-norm transformer blocks.
    pub blocks: Vec<Block>,
    /// Final LayerNorm.
    pub norm: LayerNorm,
    patch: usize,
    dim: usize,
}

impl Vit {
    /// A ViT for `in_channels`-channel images with `dim`-wide tokens, `depth` blocks of
    /// `heads` heads (`cfg` gives the patch, the grid and the MLP ratio).
    pub fn new(
        cfg: &VitConfig,
        (dim, depth, heads): (usize, usize, usize),
        in_channels: usize,
        device: &Device,
    ) -> Self {
        let p = cfg.patch.max(1);
        let grid = (cfg.image_size / p).max(1);
        let blocks = (0..depth)
            .map(|_| Block::new(dim, dim * cfg.mlp_ratio, heads, device))
            .collect();
        let pos = Tensor::<4>::random(
            [1, dim, grid, grid],
            burn::tensor::Distribution::Normal(0.0, 0.02),
            device,
        );
        Vit {
            patch_embed: Conv2dConfig::new([in_channels, dim], [p, p])
                .with_stride([p, p])
                .init(device),
            pos_embed: Param::from_tensor(pos),
            blocks,
            norm: LayerNormConfig::new(dim).init(device),
            patch: p,
            dim,
        }
    }

    /// Token width, the features' dimension.
    pub fn feature_dim(&self) -> usize {
        self.dim
    }

    /// Patch side in pixels.
    pub fn patch(&self) -> usize {
        self.patch
    }

    /// Number of blocks.
    pub fn depth(&self) -> usize {
        self.blocks.len()
    }

    /// The embedded patches with their position embedding, `[B, h * w, D]`, and the grid
    /// `(h, w)`.
    pub fn embed(&self, x: Tensor<4>) -> (Tensor<3>, (usize, usize)) {
        let e = super::conv::conv2d(&self.patch_embed, x);
        let [b, d, h, w] = e.dims();
        let pos = resize_grid(self.pos_embed.val(), (h, w));
        let tokens = (e + pos).reshape([b, d, h * w]).swap_dims(1, 2);
        (tokens, (h, w))
    }

    /// Runs `tokens` (`[B, L, D]`, any subset of embedded patches) through the blocks and the
    /// final norm; with `every`, the output of each block too (the last one normed).
    pub fn encode(&self, tokens: Tensor<3>, every: bool) -> Vec<Tensor<3>> {
        let mut x = tokens;
        let mut out = Vec::new();
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(x);
            if every && i + 1 < self.blocks.len() {
                out.push(x.clone());
            }
        }
        out.push(self.norm.forward(x));
        out
    }

    /// The patch embedding, then every block's output (the last normed), as `[B, D, h, w]`.
    pub fn forward_stages(&self, x: Tensor<4>) -> Vec<Tensor<4>> {
        let (tokens, (h, w)) = self.embed(x);
        let as_map = |t: Tensor<3>| {
            let [b, _, d] = t.dims();
            t.swap_dims(1, 2).reshape([b, d, h, w])
        };
        let mut maps = vec![as_map(tokens.clone())];
        maps.extend(self.encode(tokens, true).into_iter().map(as_map));
        maps
    }
}

/// A position embedding `[1, D, gh, gw]` on the patch grid `(h, w)`: itself when the grid is
/// the same, else bilinearly interpolated (the ViT's, and MAE's decoder's).
pub fn resize_grid(pos: Tensor<4>, (h, w): (usize, usize)) -> Tensor<4> {
    if pos.dims()[2..] == [h, w] {
        return pos;
    }
    use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
    let options = InterpolateOptions::new(InterpolateMode::Bilinear).with_output_size([h, w]);
    burn::tensor::module::interpolate(pos, options)
}
