//! Relative position of patches: "Unsupervised Visual Representation Learning by Context
//! Prediction" (Doersch, Gupta & Efros, ICCV 2015).
//!
//! From a 3x3 grid over the view, the centre patch and one of its 8 neighbours are cut (with
//! a gap and random jitter, so edges and textures do not simply continue), both go through
//! the shared backbone, and the pair of features is classified among the 8 positions. On
//! colour images each patch may have two of its channels replaced by noise (colour dropping),
//! the paper's guard against locating a patch by chromatic aberration.

use crate::augment::ViewConfig;
use crate::config::RunConfig;
use crate::data::loader::HostTensor;
use crate::error::{Error, Result};
use crate::eval::batch_accuracy;
use crate::losses::cross_entropy;
use crate::methods::MethodInfo;
use crate::methods::pretext::multi_task::{TaskKind, TaskOutput, build_single};
use crate::methods::pretext_view;
use crate::nn::Backbone;
use crate::nn::heads::Mlp;
use crate::pretext::tiles::{TileGrid, drop_colors};
use burn::prelude::*;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Registry entry.
pub const INFO: MethodInfo = MethodInfo {
    name: "relative_position",
    paper: "Doersch et al. 2015, Unsupervised Visual Representation Learning by Context Prediction",
    summary: "where a patch sits among the 8 neighbours of the centre patch",
    settings: crate::methods::complete_settings::<RelativePositionConfig>,
    trained_readout: |run| {
        let grid = crate::methods::settings::<RelativePositionConfig>(run)?.grid(run.views.size);
        Ok(
            grid.map_or(crate::eval::Readout::Global(run.features), |g| {
                super::multi_task::tile_readout(g.tile, run.views.size)
            }),
        )
    },
    build: |run, c, d| build_single(TaskKind::RelativePosition, run, c, d),
};

/// The 8 neighbours of the centre cell (4) of a 3x3 grid, in label order (row by row).
pub const NEIGHBOURS: [usize; 8] = [0, 1, 2, 3, 5, 6, 7, 8];

/// Relative-position settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelativePositionConfig {
    /// Patch side in pixels (0: the cell side less one eighth, at least one pixel: the gap).
    pub patch: usize,
    /// Probability of colour dropping per patch (RGB only).
    pub color_drop_prob: f32,
    /// Standard deviation of the noise that replaces dropped channels (normalized units).
    pub color_drop_noise: f32,
    /// Hidden width of the pair classifier.
    pub hidden: usize,
}

impl crate::methods::Settings for RelativePositionConfig {
    fn validate(&self, run: &RunConfig) -> Result<()> {
        self.grid(run.views.size).map(drop)
    }
}

impl Default for RelativePositionConfig {
    fn default() -> Self {
        RelativePositionConfig {
            patch: 0,
            color_drop_prob: 0.5,
            color_drop_noise: 0.1,
            hidden: 256,
        }
    }
}

impl RelativePositionConfig {
    /// The patch grid for views of side `size`.
    pub fn grid(&self, size: usize) -> Result<TileGrid> {
        if !(0.0..=1.0).contains(&self.color_drop_prob) {
            return Err(Error::Config(format!(
                "relative_position.color_drop_prob = {} must be in [0, 1]",
                self.color_drop_prob
            )));
        }
        TileGrid::fitted(size, self.patch, false, "relative_position: patch")
    }
}

/// The pair classifier.
#[derive(Module, Debug)]
pub struct RelativePositionHead {
    /// MLP from the two concatenated patch features to 8 position scores.
    pub classifier: Mlp,
}

/// The relative-position task.
pub struct RelativePositionTask {
    cfg: RelativePositionConfig,
    grid: TileGrid,
    view: ViewConfig,
}

impl RelativePositionTask {
    /// The task and its head for `features`-dimensional backbones.
    pub fn new(
        cfg: &RelativePositionConfig,
        run: &RunConfig,
        features: usize,
        device: &Device,
    ) -> Result<(Self, RelativePositionHead)> {
        let cfg = cfg.clone();
        let grid = cfg.grid(run.views.size)?;
        let head = RelativePositionHead {
            classifier: Mlp::new(2 * features, cfg.hidden, 8, device),
        };
        Ok((
            RelativePositionTask {
                cfg,
                grid,
                view: pretext_view(run),
            },
            head,
        ))
    }

    /// One view per image.
    pub fn views(&self) -> Vec<ViewConfig> {
        vec![self.view.clone()]
    }

    /// The centre patch and a random neighbour of every image (`[2b, c, p, p]`, the pair of
    /// image `i` at rows `2i` and `2i + 1`) and the neighbour's label (index in
    /// [`NEIGHBOURS`]).
    pub fn pairs<R: Rng>(&self, view: &HostTensor, rng: &mut R) -> (HostTensor, Vec<u32>) {
        let b = view.shape[0];
        let labels: Vec<u32> = (0..b).map(|_| rng.random_range(0..8)).collect();
        let order: Vec<Vec<usize>> = labels
            .iter()
            .map(|&l| vec![4, NEIGHBOURS[l as usize]])
            .collect();
        let mut patches = self.grid.cut(view, &order, rng);
        drop_colors(
            &mut patches,
            self.cfg.color_drop_prob,
            self.cfg.color_drop_noise,
            rng,
        );
        (patches, labels)
    }

    /// Cross-entropy of the position classifier.
    pub fn loss<R: Rng>(
        &self,
        head: &RelativePositionHead,
        backbone: &Backbone,
        views: &[HostTensor],
        rng: &mut R,
        device: &Device,
    ) -> TaskOutput {
        let b = views[0].shape[0];
        let (patches, labels) = self.pairs(&views[0], rng);
        let f = backbone.forward(patches.to_tensor(device));
        let d = f.dims()[1];
        let logits = head.classifier.forward(f.reshape([b, 2 * d]));
        TaskOutput {
            accuracy: Some(batch_accuracy(&logits, &labels)),
            loss: cross_entropy(logits, &labels),
        }
    }
}
