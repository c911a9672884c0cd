//! Jigsaw puzzles: "Unsupervised Learning of Visual Representations by Solving Jigsaw
//! Puzzles" (Noroozi & Favaro, ECCV 2016).
//!
//! A view is cut into a 3x3 grid of tiles (with a gap and random jitter, each tile normalized
//! on its own), the tiles are shuffled by one of `N` permutations chosen for maximal Hamming
//! distance ([`crate::pretext::permutations`]), each tile goes through the shared backbone
//! (the siamese "context-free network") and a linear layer, and the 9 concatenated tile
//! features are classified among the `N` permutations. The permutation set is drawn from the
//! run's seed and saved in every checkpoint.

use crate::augment::ViewConfig;
use crate::config::RunConfig;
use crate::data::loader::{HostTensor, mix_seed};
use crate::error::{Error, Result};
use crate::eval::batch_accuracy;
use crate::losses::cross_entropy;
use crate::methods::MethodInfo;
use crate::methods::pretext::multi_task::{TaskKind, TaskOutput, build_single};
use crate::methods::pretext_view;
use crate::nn::Backbone;
use crate::nn::heads::Mlp;
use crate::pretext::permutations::{Selection, distance_stats, max_hamming_set};
use crate::pretext::tiles::TileGrid;
use crate::train::checkpoint::HostParam;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::prelude::*;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Registry entry.
pub const INFO: MethodInfo = MethodInfo {
    name: "jigsaw",
    paper: "Noroozi & Favaro 2016, Unsupervised Learning of Visual Representations by Solving Jigsaw Puzzles",
    summary: "which of N maximal-Hamming permutations shuffled the 3x3 tiles",
    settings: crate::methods::complete_settings::<JigsawConfig>,
    trained_readout: |run| {
        let grid = crate::methods::settings::<JigsawConfig>(run)?.grid(run.views.size);
        Ok(
            grid.map_or(crate::eval::Readout::Global(run.features), |g| {
                super::multi_task::tile_readout(g.tile, run.views.size)
            }),
        )
    },
    build: |run, c, d| build_single(TaskKind::Jigsaw, run, c, d),
};

/// Name of the permutation set in checkpoints.
pub const PERMUTATIONS_TENSOR: &str = "state.jigsaw.permutations";

/// Jigsaw settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JigsawConfig {
    /// Number of permutations `N` (classes); the paper's best is 1,000.
    pub permutations: usize,
    /// How the permutation set is chosen (`max_mean` is the paper's Algorithm 1).
    pub selection: Selection,
    /// Tile side in pixels (0: the cell side less one eighth, at least one pixel, the gap
    /// that stops tiles from being matched by their edges).
    pub tile: usize,
    /// Normalize each tile to zero mean and unit variance (the paper's guard against matching
    /// tiles by their low-level statistics).
    pub normalize_tiles: bool,
    /// Width of the per-tile linear layer (the paper's fc6, shared by the 9 tiles).
    pub tile_dim: usize,
    /// Hidden width of the permutation classifier.
    pub hidden: usize,
}

impl crate::methods::Settings for JigsawConfig {
    fn validate(&self, run: &RunConfig) -> Result<()> {
        self.grid(run.views.size).map(drop)
    }
}

impl Default for JigsawConfig {
    fn default() -> Self {
        JigsawConfig {
            permutations: 100,
            selection: Selection::MaxMean,
            tile: 0,
            normalize_tiles: true,
            tile_dim: 64,
            hidden: 256,
        }
    }
}

impl JigsawConfig {
    /// The tile grid for views of side `size`.
    pub fn grid(&self, size: usize) -> Result<TileGrid> {
        let grid = TileGrid::fitted(size, self.tile, self.normalize_tiles, "jigsaw: tile")?;
        if !(2..=362_880).contains(&self.permutations) {
            return Err(Error::Config(format!(
                "jigsaw.permutations = {} must be between 2 and 9! = 362880",
                self.permutations
            )));
        }
        Ok(grid)
    }
}

/// The tile embedding and the permutation classifier.
#[derive(Module, Debug)]
pub struct JigsawHead {
    /// Per-tile linear layer (shared by the tiles).
    pub tile_fc: Linear,
    /// MLP from the 9 concatenated tile features to `N` permutation scores.
    pub classifier: Mlp,
    act: Relu,
}

/// The jigsaw task.
pub struct JigsawTask {
    grid: TileGrid,
    view: ViewConfig,
    /// The permutation set: permutation `k` puts cell `p[j]` at tile position `j`.
    pub permutations: Vec<Vec<u8>>,
}

impl JigsawTask {
    /// The task (with its permutation set) and head for `features`-dimensional backbones.
    pub fn new(
        cfg: &JigsawConfig,
        run: &RunConfig,
        features: usize,
        device: &Device,
    ) -> Result<(Self, JigsawHead)> {
        let grid = cfg.grid(run.views.size)?;
        let permutations = max_hamming_set(
            9,
            cfg.permutations,
            cfg.selection,
            mix_seed(&[run.seed, 0x1165]),
        );
        let (min, mean) = distance_stats(&permutations);
        tracing::info!(
            "jigsaw: {} permutations, Hamming distance min {min}, mean {mean:.2}",
            permutations.len()
        );
        let head = JigsawHead {
            tile_fc: LinearConfig::new(features, cfg.tile_dim).init(device),
            classifier: Mlp::new(9 * cfg.tile_dim, cfg.hidden, cfg.permutations, device),
            act: Relu::new(),
        };
        Ok((
            JigsawTask {
                grid,
                view: pretext_view(run),
                permutations,
            },
            head,
        ))
    }

    /// One view per image, cut into tiles.
    pub fn views(&self) -> Vec<ViewConfig> {
        vec![self.view.clone()]
    }

    /// Shuffled tiles of every image (`[9b, c, t, t]`) and the permutation index of each.
    pub fn puzzles<R: Rng>(&self, view: &HostTensor, rng: &mut R) -> (HostTensor, Vec<u32>) {
        let b = view.shape[0];
        let labels: Vec<u32> = (0..b)
            .map(|_| rng.random_range(0..self.permutations.len()) as u32)
            .collect();
        let order: Vec<Vec<usize>> = labels
            .iter()
            .map(|&k| {
                self.permutations[k as usize]
                    .iter()
                    .map(|&c| c as usize)
                    .collect()
            })
            .collect();
        (self.grid.cut(view, &order, rng), labels)
    }

    /// Cross-entropy of the permutation classifier.
    pub fn loss<R: Rng>(
        &self,
        head: &JigsawHead,
        backbone: &Backbone,
        views: &[HostTensor],
        rng: &mut R,
        device: &Device,
    ) -> TaskOutput {
        let b = views[0].shape[0];
        let (tiles, labels) = self.puzzles(&views[0], rng);
        let per_tile = head.act.forward(
            head.tile_fc
                .forward(backbone.forward(tiles.to_tensor(device))),
        );
        let d = per_tile.dims()[1];
        let logits = head.classifier.forward(per_tile.reshape([b, 9 * d]));
        TaskOutput {
            accuracy: Some(batch_accuracy(&logits, &labels)),
            loss: cross_entropy(logits, &labels),
        }
    }

    /// Saves the permutation set (as `[N, 9]` floats).
    pub fn save_into(&self, tensors: &mut BTreeMap<String, HostParam>) {
        tensors.insert(
            PERMUTATIONS_TENSOR.into(),
            HostParam {
                shape: vec![self.permutations.len(), 9],
                data: self
                    .permutations
                    .iter()
                    .flatten()
                    .map(|&v| v as f32)
                    .collect(),
            },
        );
    }

    /// Restores the permutation set of a checkpoint (removing it from `tensors`); it must
    /// hold as many permutations as this run's classifier, each a permutation of 0..9.
    pub fn load_from(
        &mut self,
        tensors: &mut HashMap<String, HostParam>,
        path: &Path,
    ) -> Result<()> {
        let bad = |m: String| Error::Checkpoint {
            path: path.to_path_buf(),
            message: m,
        };
        let t = tensors
            .remove(PERMUTATIONS_TENSOR)
            .ok_or_else(|| bad(format!("has no {PERMUTATIONS_TENSOR}")))?;
        if t.shape != [self.permutations.len(), 9] {
            return Err(bad(format!(
                "{PERMUTATIONS_TENSOR} is {:?}, this run needs [{}, 9]",
                t.shape,
                self.permutations.len()
            )));
        }
        let perms: Vec<Vec<u8>> = t
            .data
            .chunks(9)
            .map(|r| r.iter().map(|&v| v as u8).collect())
            .collect();
        if perms.iter().any(|p| {
            let mut s = p.clone();
            s.sort_unstable();
            s != (0..9).collect::<Vec<u8>>()
        }) {
            return Err(bad(format!(
                "{PERMUTATIONS_TENSOR} holds a row that is not a permutation of 0..9"
            )));
        }
        self.permutations = perms;
        Ok(())
    }
}
