//! Supervised training with labels: the backbone plus a linear classifier, cross-entropy on
//! augmented views. It is the baseline self-supervised features are compared with
//! (`selfsup train-supervised`), and, started from a pretrained backbone (`init_from`), the
//! fine-tuning evaluation (`selfsup eval finetune`).

use crate::config::RunConfig;
use crate::data::Dataset;
use crate::data::loader::{HostBatch, ViewSpec};
use crate::error::{Error, Result};
use crate::losses::cross_entropy;
use crate::methods::{Method, MethodInfo, StepOutput};
use crate::nn::Backbone;
use crate::train::optim::Optimizer;
use crate::train::step::update;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

/// Registry entry.
pub const INFO: MethodInfo = MethodInfo {
    name: "supervised",
    paper: "the supervised baseline (and fine-tuning): backbone + linear classifier, cross-entropy",
    summary: "labels, not self-supervision: the reference for transfer comparisons",
    settings: crate::methods::complete_settings::<crate::methods::NoSettings>,
    trained_readout: crate::methods::global_readout,
    build,
};

/// Backbone plus classifier.
#[derive(Module, Debug)]
pub struct SupervisedModel {
    /// The representation.
    pub backbone: Backbone,
    /// Linear classifier over the pooled features.
    pub classifier: Linear,
}

/// The supervised method.
pub struct Supervised {
    model: SupervisedModel,
    views: ViewSpec,
    device: Device,
    labels: Vec<u32>,
    in_features: usize,
}

fn build(run: &RunConfig, in_channels: usize, device: &Device) -> Result<Box<dyn Method>> {
    let backbone = Backbone::new(&run.backbone, in_channels, device);
    let f = backbone.feature_dim();
    Ok(Box::new(Supervised {
        // The classifier is sized to the data's classes in `prepare`.
        model: SupervisedModel {
            classifier: LinearConfig::new(f, 1).init(device),
            backbone,
        },
        views: ViewSpec {
            views: vec![run.views.clone()],
        },
        device: device.clone(),
        labels: Vec::new(),
        in_features: f,
    }))
}

impl Method for Supervised {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn views(&self) -> ViewSpec {
        self.views.clone()
    }

    fn prepare(&mut self, data: &Dataset, _fresh_run: bool) -> Result<()> {
        let labels = data.labels.clone().ok_or_else(|| {
            Error::Config("the supervised method needs labelled training data".into())
        })?;
        let classes = labels.iter().copied().max().map_or(1, |m| m as usize + 1);
        self.model.classifier = LinearConfig::new(self.in_features, classes).init(&self.device);
        self.labels = labels;
        Ok(())
    }

    fn train_step(
        &mut self,
        batch: &HostBatch,
        opt: &mut Optimizer,
        lr: f64,
    ) -> Result<StepOutput> {
        // Steps done, this one included: keyed to the batch, so a resume draws the same.
        let step = batch.step + 1;
        let targets: Vec<u32> = batch.indices.iter().map(|&i| self.labels[i]).collect();
        let x = batch.views[0].to_tensor(&self.device);
        let logits = self
            .model
            .classifier
            .forward(self.model.backbone.forward(x));
        let hits = logits
            .clone()
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .expect("class indices")
            .iter()
            .zip(&targets)
            .filter(|(p, t)| **p == **t as i64)
            .count();
        let loss = cross_entropy(logits, &targets);
        let (model, value) = update(self.model.clone(), loss, opt, lr, step, "cross-entropy")?;
        self.model = model;
        Ok(StepOutput {
            loss: value,
            terms: vec![(
                "train_top1".into(),
                100.0 * hits as f32 / targets.len() as f32,
            )],
        })
    }

    fn classify(&self, x: Tensor<4>) -> Option<Tensor<2>> {
        let m = self.model.valid();
        let device = m.backbone.devices().into_iter().next()?;
        Some(
            m.classifier
                .forward(m.backbone.forward(x.to_device(&device))),
        )
    }

    fn backbone(&self) -> Backbone {
        self.model.backbone.clone()
    }

    crate::methods::model_checkpoint!(model);
}
