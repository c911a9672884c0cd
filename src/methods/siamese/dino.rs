//! DINO: "Emerging Properties in Self-Supervised Vision Transformers" (Caron et al., ICCV
//! 2021): self-distillation with no labels.
//!
//! A student network (backbone + DINO head) is trained to match, on every crop, the output
//! distribution of a teacher on the *other* crops of the same image; the teacher sees the two
//! global crops only, the student those and the small local crops too (multi-crop, section
//! 3.1). The teacher is an exponential moving average of the student (momentum ramped to 1 by
//! a half cosine). What keeps the outputs from collapsing is centring and sharpening of the
//! teacher's outputs: a moving-average centre `c` of the teacher's outputs is subtracted
//! before a softmax at the low `teacher_temp` (Algorithm 1). The head is an MLP to a
//! bottleneck, L2-normalized, then a weight-normalized linear layer to `out_dim` scores
//! (the paper's `norm_last_layer`). `teacher_entropy` in the metrics watches for collapse
//! (0: one-hot, `ln(out_dim)`: uniform).
//!
//! Data-parallel: the loss is a mean over the rank's own images and gradients are averaged;
//! the centre is updated with the teacher's batch mean over all ranks (all-reduced), so every
//! rank holds the same centre and teacher.

use crate::augment::ViewConfig;
use crate::config::RunConfig;
use crate::data::loader::{HostBatch, ViewSpec};
use crate::error::{Error, Result};
use crate::losses::{l2_normalize, siamese::dino};
use crate::memory::ema::{cosine_momentum, ema_update};
use crate::methods::{Method, MethodInfo, StepInfo, StepOutput};
use crate::nn::{Backbone, heads::Mlp};
use crate::train::checkpoint::{self, HostParam};
use crate::train::optim::Optimizer;
use crate::train::step::update;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Registry entry.
pub const INFO: MethodInfo = MethodInfo {
    name: "dino",
    paper: "Caron et al. 2021, Emerging Properties in Self-Supervised Vision Transformers (DINO)",
    summary: "student matches a centred, sharpened momentum teacher across crops (multi-crop)",
    settings: crate::methods::complete_settings::<DinoConfig>,
    trained_readout: crate::methods::global_readout,
    build,
};

/// DINO's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DinoConfig {
    /// Hidden width of the head's MLP.
    pub hidden: usize,
    /// Width of the head's bottleneck (L2-normalized).
    pub bottleneck: usize,
    /// Scores the head outputs (the paper: 65,536).
    pub out_dim: usize,
    /// Teacher temperature after the warm-up (the paper: 0.04 to 0.07).
    pub teacher_temp: f32,
    /// Teacher temperature at epoch 0, raised linearly to `teacher_temp` over
    /// `warmup_teacher_temp_epochs`.
    pub warmup_teacher_temp: f32,
    /// Epochs of the teacher-temperature warm-up (0: `teacher_temp` from the start).
    pub warmup_teacher_temp_epochs: usize,
    /// Student temperature (the paper: 0.1).
    pub student_temp: f32,
    /// Momentum of the centre's moving average (the paper: 0.9).
    pub center_momentum: f32,
    /// Teacher momentum at the start, ramped to 1 by a half cosine (the paper: 0.996).
    pub momentum: f64,
    /// Small local crops per image (the paper: 8 to 10; 0 disables multi-crop).
    pub local_crops: usize,
    /// Side of the local crops in pixels.
    pub local_size: usize,
    /// Area range of the local crops (the paper: 0.05 to 0.4).
    pub local_scale: (f32, f32),
    /// Area range of the two global crops (the paper: 0.4 to 1).
    pub global_scale: (f32, f32),
}

impl Default for DinoConfig {
    fn default() -> Self {
        DinoConfig {
            hidden: 512,
            bottleneck: 128,
            out_dim: 1024,
            teacher_temp: 0.04,
            warmup_teacher_temp: 0.04,
            warmup_teacher_temp_epochs: 0,
            student_temp: 0.1,
            center_momentum: 0.9,
            momentum: 0.996,
            local_crops: 6,
            local_size: 12,
            local_scale: (0.05, 0.4),
            global_scale: (0.4, 1.0),
        }
    }
}

impl crate::methods::Settings for DinoConfig {
    fn validate(&self, _run: &RunConfig) -> Result<()> {
        let positive = [
            self.teacher_temp,
            self.warmup_teacher_temp,
            self.student_temp,
        ];
        if self.out_dim < 2
            || self.local_size == 0
            || positive.iter().any(|t| !(*t > 0.0))
            || !(0.0..=1.0).contains(&self.center_momentum)
            || !(0.0..=1.0).contains(&self.momentum)
        {
            return Err(Error::Config(
                "dino: out_dim >= 2, positive temperatures and local_size, center_momentum and \
                 momentum in [0, 1]"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// DINO's projection head: MLP to the bottleneck, L2 normalization, and a weight-normalized
/// linear layer (each output's weight vector rescaled to unit norm in the forward pass).
#[derive(Module, Debug)]
pub struct DinoHead {
    /// Backbone features to the bottleneck.
    pub mlp: Mlp,
    /// Bottleneck to `out_dim` scores, no bias; `[bottleneck, out_dim]` in burn's layout.
    pub last_layer: Linear,
}

impl DinoHead {
    /// Scores `[B, out_dim]` of features `[B, d]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let h = l2_normalize(self.mlp.forward(x));
        let w = self.last_layer.weight.val();
        let norm = w.clone().powi_scalar(2).sum_dim(0).sqrt().clamp_min(1e-12);
        h.matmul(w / norm)
    }
}

/// A backbone and its DINO head: the student, and (as a moving average) the teacher.
#[derive(Module, Debug)]
pub struct DinoNet {
    /// The representation.
    pub backbone: Backbone,
    /// The head.
    pub head: DinoHead,
}

impl DinoNet {
    fn new(run: &RunConfig, c: &DinoConfig, channels: usize, device: &Device) -> Self {
        let backbone = Backbone::new(&run.backbone, channels, device);
        let mlp = Mlp::on_backbone(&backbone, &run.backbone, c.hidden, c.bottleneck, device);
        let last_layer = LinearConfig::new(c.bottleneck, c.out_dim)
            .with_bias(false)
            .init(device);
        DinoNet {
            backbone,
            head: DinoHead { mlp, last_layer },
        }
    }

    /// Scores of a batch of images.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.head.forward(self.backbone.forward(x))
    }
}

/// The student and its momentum teacher, one module so that one checkpoint holds both.
#[derive(Module, Debug)]
pub struct DinoModel {
    /// Trained by backpropagation.
    pub student: DinoNet,
    /// Moving average of `student`.
    pub teacher: DinoNet,
}

/// The DINO method.
pub struct Dino {
    model: DinoModel,
    /// Centre of the teacher's outputs, `[out_dim]`.
    center: Vec<f32>,
    cfg: DinoConfig,
    views: ViewSpec,
    device: Device,
}

fn build(run: &RunConfig, in_channels: usize, device: &Device) -> Result<Box<dyn Method>> {
    let c: DinoConfig = crate::methods::settings(run)?;
    let student = DinoNet::new(run, &c, in_channels, device);
    // A separately built teacher (own BatchNorm state), then set equal to the student.
    let teacher = ema_update(DinoNet::new(run, &c, in_channels, device), &student, 0.0);
    let global = ViewConfig {
        crop_scale: c.global_scale,
        ..run.views.clone()
    };
    let local = ViewConfig {
        size: c.local_size,
        crop_scale: c.local_scale,
        ..run.views.clone()
    };
    let mut views = vec![global.clone(), global];
    views.extend(std::iter::repeat_n(local, c.local_crops));
    Ok(Box::new(Dino {
        model: DinoModel { student, teacher },
        center: vec![0.0; c.out_dim],
        cfg: c,
        views: ViewSpec { views },
        device: device.clone(),
    }))
}

impl Dino {
    /// The teacher temperature in `epoch`: the paper's schedule, `warmup_teacher_temp` to
    /// `teacher_temp` evenly over the warm-up epochs (both ends included), then constant.
    fn teacher_temp(&self, epoch: usize) -> f32 {
        let c = &self.cfg;
        let w = c.warmup_teacher_temp_epochs;
        if epoch >= w {
            return c.teacher_temp;
        }
        if w == 1 {
            return c.warmup_teacher_temp;
        }
        let t = epoch as f32 / (w - 1) as f32;
        c.warmup_teacher_temp + t * (c.teacher_temp - c.warmup_teacher_temp)
    }

    /// Student scores of every crop (crops of one size go through the network together),
    /// in view order.
    fn student_scores(&self, batch: &HostBatch) -> Vec<Tensor<2>> {
        let b = batch.indices.len();
        let mut out = Vec::new();
        for g in &batch.views_by_shape() {
            let s = self.model.student.forward(batch.stacked(g, &self.device));
            out.extend((0..g.len()).map(|j| s.clone().narrow(0, j * b, b)));
        }
        out
    }
}

impl Method for Dino {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn views(&self) -> ViewSpec {
        self.views.clone()
    }

    fn train_step(
        &mut self,
        batch: &HostBatch,
        opt: &mut Optimizer,
        lr: f64,
    ) -> Result<StepOutput> {
        let step = batch.step + 1;
        let b = batch.indices.len();
        let k = self.cfg.out_dim;
        let t = self
            .model
            .teacher
            .forward(batch.stacked(&[0, 1], &self.device))
            .detach();
        let teacher = vec![t.clone().narrow(0, 0, b), t.clone().narrow(0, b, b)];
        let student = self.student_scores(batch);
        let center =
            Tensor::<1>::from_data(TensorData::new(self.center.clone(), [k]), &self.device);
        let temp = self.teacher_temp(batch.epoch);
        let loss = dino(
            &teacher,
            &student,
            center.clone(),
            temp,
            self.cfg.student_temp,
        );
        // Collapse monitor: mean entropy of the teacher's centred, sharpened distribution.
        let p = burn::tensor::activation::softmax((t.clone() - center.reshape([1, k])) / temp, 1);
        let entropy: f32 = (p.clone() * p.clamp_min(1e-12).log())
            .sum_dim(1)
            .mean()
            .neg()
            .into_scalar();
        let (student, value) =
            update(self.model.student.clone(), loss, opt, lr, step, "DINO loss")?;
        self.model.student = student;
        // c <- m c + (1 - m) mean of the teacher's outputs over both global crops, all ranks.
        let mut sums = crate::device::host_values(t.sum_dim(0));
        crate::dist::all_reduce_sum(&mut sums);
        let rows = (2 * b * crate::dist::world_size()) as f32;
        let m = self.cfg.center_momentum;
        for (c, s) in self.center.iter_mut().zip(&sums) {
            *c = m * *c + (1.0 - m) * s / rows;
        }
        Ok(StepOutput {
            loss: value,
            terms: vec![("teacher_entropy".into(), entropy)],
        })
    }

    fn after_step(&mut self, info: &StepInfo) {
        let m = cosine_momentum(self.cfg.momentum, info.step, info.total_steps);
        self.model.teacher = ema_update(self.model.teacher.clone(), &self.model.student, m);
    }

    fn backbone_prefix(&self) -> &'static str {
        "student.backbone."
    }

    fn backbone(&self) -> Backbone {
        self.model.student.backbone.clone()
    }

    fn tensors(&self) -> BTreeMap<String, HostParam> {
        let mut t = checkpoint::collect(&self.model);
        t.insert(
            "center".into(),
            HostParam {
                shape: vec![self.center.len()],
                data: self.center.clone(),
            },
        );
        t
    }

    fn load_tensors(&mut self, tensors: &HashMap<String, HostParam>, path: &Path) -> Result<()> {
        let mut model_tensors = tensors.clone();
        let center = model_tensors.remove("center");
        self.model = checkpoint::apply(self.model.clone(), &model_tensors, path)?;
        match center {
            Some(c) if c.data.len() == self.center.len() => {
                self.center = c.data;
                Ok(())
            }
            _ => Err(Error::Checkpoint {
                path: path.to_path_buf(),
                message: "DINO centre missing or of another size".into(),
            }),
        }
    }
}
