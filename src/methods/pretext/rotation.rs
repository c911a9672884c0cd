//! Rotation prediction: "Unsupervised Representation Learning by Predicting Image Rotations"
//! (Gidaris, Singh & Komodakis, ICLR 2018).
//!
//! Each image is turned by 0, 90, 180 or 270 degrees and the network classifies which. The
//! paper feeds all four rotations of every image in the same batch (`all_four`, the default);
//! the cheaper mode draws one rotation per image.

use crate::augment::ViewConfig;
use crate::config::RunConfig;
use crate::data::loader::HostTensor;
use crate::error::Result;
use crate::eval::batch_accuracy;
use crate::losses::cross_entropy;
use crate::methods::MethodInfo;
use crate::methods::pretext::multi_task::{TaskKind, TaskOutput, build_single};
use crate::methods::pretext_view;
use crate::nn::Backbone;
use crate::nn::heads::Mlp;
use crate::pretext::rotation::rotate_batch;
use burn::prelude::*;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Registry entry.
pub const INFO: MethodInfo = MethodInfo {
    name: "rotation",
    paper: "Gidaris et al. 2018, Unsupervised Representation Learning by Predicting Image Rotations",
    summary: "which of 0/90/180/270 degrees the image was turned by (4-way classification)",
    settings: crate::methods::complete_settings::<RotationConfig>,
    trained_readout: crate::methods::global_readout,
    build: |run, c, d| build_single(TaskKind::Rotation, run, c, d),
};

/// Rotation settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RotationConfig {
    /// Classify all four rotations of every image (the paper) instead of one random rotation.
    pub all_four: bool,
    /// Hidden width of the classifier MLP.
    pub hidden: usize,
}

impl crate::methods::Settings for RotationConfig {}

impl Default for RotationConfig {
    fn default() -> Self {
        RotationConfig {
            all_four: true,
            hidden: 256,
        }
    }
}

/// The classifier: backbone features to 4 rotation scores.
#[derive(Module, Debug)]
pub struct RotationHead {
    /// MLP `features -> hidden -> 4`.
    pub classifier: Mlp,
}

/// The rotation task.
pub struct RotationTask {
    cfg: RotationConfig,
    view: ViewConfig,
}

impl RotationTask {
    /// The task and its head for a backbone with `features` output dimensions.
    pub fn new(
        cfg: &RotationConfig,
        run: &RunConfig,
        features: usize,
        device: &Device,
    ) -> Result<(Self, RotationHead)> {
        let cfg = cfg.clone();
        let head = RotationHead {
            classifier: Mlp::new(features, cfg.hidden.max(1), 4, device),
        };
        Ok((
            RotationTask {
                cfg,
                view: pretext_view(run),
            },
            head,
        ))
    }

    /// One view per image.
    pub fn views(&self) -> Vec<ViewConfig> {
        vec![self.view.clone()]
    }

    /// Rotations of the batch and their labels: all four of each image, or one random one.
    pub fn rotated<R: Rng>(&self, view: &HostTensor, rng: &mut R) -> (HostTensor, Vec<u32>) {
        let b = view.shape[0];
        if self.cfg.all_four {
            let mut data = Vec::with_capacity(view.data.len() * 4);
            let mut labels = Vec::with_capacity(4 * b);
            for turn in 0..4u8 {
                data.extend(rotate_batch(view, &vec![turn; b]).data);
                labels.extend(std::iter::repeat_n(turn as u32, b));
            }
            let [_, c, h, w] = view.shape;
            (
                HostTensor {
                    data,
                    shape: [4 * b, c, h, w],
                },
                labels,
            )
        } else {
            let turns: Vec<u8> = (0..b).map(|_| rng.random_range(0..4)).collect();
            let labels = turns.iter().map(|&t| t as u32).collect();
            (rotate_batch(view, &turns), labels)
        }
    }

    /// Cross-entropy of the rotation classifier.
    pub fn loss<R: Rng>(
        &self,
        head: &RotationHead,
        backbone: &Backbone,
        views: &[HostTensor],
        rng: &mut R,
        device: &Device,
    ) -> TaskOutput {
        let (x, labels) = self.rotated(&views[0], rng);
        let logits = head
            .classifier
            .forward(backbone.forward(x.to_tensor(device)));
        TaskOutput {
            accuracy: Some(batch_accuracy(&logits, &labels)),
            loss: cross_entropy(logits, &labels),
        }
    }
}
