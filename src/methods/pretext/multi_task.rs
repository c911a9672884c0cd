//! Pretext tasks that make their own labels (rotation, jigsaw, relative position,
//! colorization, inpainting), alone or several at once on one shared backbone ("Multi-task
//! self-supervised visual learning", Doersch & Zisserman 2017).
//!
//! Each task lives in its own file with its settings, its head and its loss; this file holds
//! what they share: the model (backbone + one head per task), the method that sums the
//! weighted task losses, and the registry entry of `multi`, whose table nests each task's
//! settings (`[multi.jigsaw]`). A single-task method (`rotation`, ...) is this method with
//! one task, configured by its own table (`[rotation]`).
//!
//! Length: about 570 lines; it is the shared pretext-task runner of five tasks (model, task
//! dispatch, settings, resumable state), which would otherwise be repeated in each task file.

use crate::augment::ViewConfig;
use crate::config::RunConfig;
use crate::data::Dataset;
use crate::data::loader::{HostBatch, HostTensor, ViewSpec, mix_seed};
use crate::error::{Error, Result};
use crate::methods::pretext::colorization::{
    ColorizationConfig, ColorizationHead, ColorizationTask,
};
use crate::methods::pretext::inpainting::{InpaintingConfig, InpaintingHead, InpaintingTask};
use crate::methods::pretext::jigsaw::{JigsawConfig, JigsawHead, JigsawTask};
use crate::methods::pretext::relative_position::{
    RelativePositionConfig, RelativePositionHead, RelativePositionTask,
};
use crate::methods::pretext::rotation::{RotationConfig, RotationHead, RotationTask};
use crate::methods::{Method, MethodInfo, StepOutput};
use crate::nn::Backbone;
use crate::train::checkpoint::{self, HostParam};
use crate::train::optim::Optimizer;
use crate::train::step::{finite_scalar, update};
use burn::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Registry entry of the multi-task method.
pub const INFO: MethodInfo = MethodInfo {
    name: "multi",
    paper: "Doersch & Zisserman 2017, Multi-task Self-Supervised Visual Learning",
    summary: "several pretext tasks (multi.tasks, multi.weights) train one shared backbone",
    settings: crate::methods::complete_settings::<MultiConfig>,
    trained_readout: |run| {
        let m = crate::methods::settings::<MultiConfig>(run)?;
        if m.tasks != [TaskKind::Jigsaw] {
            return Ok(crate::eval::Readout::Global(run.features));
        }
        Ok(m.jigsaw
            .grid(run.views.size)
            .map_or(crate::eval::Readout::Global(run.features), |g| {
                tile_readout(g.tile, run.views.size)
            }))
    },
    build,
};

/// The pretext tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum TaskKind {
    /// Which of 4 rotations was applied (Gidaris et al. 2018).
    Rotation,
    /// Which permutation shuffled 9 tiles (Noroozi & Favaro 2016).
    Jigsaw,
    /// Where a patch sits relative to the centre patch (Doersch et al. 2015).
    RelativePosition,
    /// The colours of a grey image, as ab bins (Zhang et al. 2016).
    Colorization,
    /// The pixels of a hidden region (Pathak et al. 2016).
    Inpainting,
}

impl TaskKind {
    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Rotation => "rotation",
            TaskKind::Jigsaw => "jigsaw",
            TaskKind::RelativePosition => "relative_position",
            TaskKind::Colorization => "colorization",
            TaskKind::Inpainting => "inpainting",
        }
    }
}

/// Settings of the multi-task method.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MultiConfig {
    /// The tasks trained together.
    pub tasks: Vec<TaskKind>,
    /// Weight of each task's loss (one per task; empty = all 1).
    pub weights: Vec<f32>,
    /// Rotation settings (`[multi.rotation]`).
    pub rotation: RotationConfig,
    /// Jigsaw settings (`[multi.jigsaw]`).
    pub jigsaw: JigsawConfig,
    /// Relative-position settings (`[multi.relative_position]`).
    pub relative_position: RelativePositionConfig,
    /// Colorization settings (`[multi.colorization]`).
    pub colorization: ColorizationConfig,
    /// Inpainting settings (`[multi.inpainting]`).
    pub inpainting: InpaintingConfig,
}

impl crate::methods::Settings for MultiConfig {
    fn validate(&self, run: &RunConfig) -> Result<()> {
        MultiConfig::validate(self)?;
        if self.tasks.contains(&TaskKind::Jigsaw) {
            self.jigsaw.grid(run.views.size)?;
        }
        if self.tasks.contains(&TaskKind::RelativePosition) {
            self.relative_position.grid(run.views.size)?;
        }
        Ok(())
    }
}

impl Default for MultiConfig {
    fn default() -> Self {
        MultiConfig {
            tasks: vec![TaskKind::RelativePosition, TaskKind::Rotation],
            weights: Vec::new(),
            rotation: RotationConfig::default(),
            jigsaw: JigsawConfig::default(),
            relative_position: RelativePositionConfig::default(),
            colorization: ColorizationConfig::default(),
            inpainting: InpaintingConfig::default(),
        }
    }
}

impl MultiConfig {
    /// Checks the task list and weights.
    pub fn validate(&self) -> Result<()> {
        let mut seen = self.tasks.clone();
        seen.sort_by_key(|t| t.name());
        seen.dedup();
        if self.tasks.is_empty() || seen.len() != self.tasks.len() {
            return Err(Error::Config(
                "multi.tasks must name at least one task, each once".into(),
            ));
        }
        if !self.weights.is_empty()
            && (self.weights.len() != self.tasks.len()
                || self.weights.iter().any(|w| !(*w >= 0.0 && w.is_finite())))
        {
            return Err(Error::Config(format!(
                "multi.weights {:?} must give one non-negative weight per task ({} tasks)",
                self.weights,
                self.tasks.len()
            )));
        }
        Ok(())
    }

    /// The settings of each task, as the tasks read them.
    pub fn task_settings(&self) -> TaskSettings {
        TaskSettings {
            rotation: self.rotation.clone(),
            jigsaw: self.jigsaw.clone(),
            relative_position: self.relative_position.clone(),
            colorization: self.colorization.clone(),
            inpainting: self.inpainting.clone(),
        }
    }

    /// The weight of task `i`.
    pub fn weight(&self, i: usize) -> f32 {
        self.weights.get(i).copied().unwrap_or(1.0)
    }
}

/// The settings of every pretext task: a single-task method's table fills one of them, the
/// multi-task method's nested tables all.
#[derive(Clone, Debug, Default)]
pub struct TaskSettings {
    /// Rotation.
    pub rotation: RotationConfig,
    /// Jigsaw.
    pub jigsaw: JigsawConfig,
    /// Relative position.
    pub relative_position: RelativePositionConfig,
    /// Colorization.
    pub colorization: ColorizationConfig,
    /// Inpainting.
    pub inpainting: InpaintingConfig,
}

/// The readout of a backbone trained on tiles of side `tile` cut from views of side `size`:
/// the mean of its features over the 3x3 grid of such tiles.
pub fn tile_readout(tile: usize, size: usize) -> crate::eval::Readout {
    crate::eval::Readout::PatchGrid(crate::pretext::tiles::PatchGrid {
        patch: tile,
        stride: size / 3,
    })
}

/// What one task's loss reports.
pub struct TaskOutput {
    /// The loss to minimize.
    pub loss: Tensor<1>,
    /// Accuracy of the pretext prediction on the batch (for classification tasks), in `[0, 1]`.
    pub accuracy: Option<f32>,
}

/// A task's settings and state (everything but its trainable head).
pub enum Task {
    /// Rotation prediction.
    Rotation(RotationTask),
    /// Jigsaw puzzles.
    Jigsaw(JigsawTask),
    /// Relative position of patches.
    RelativePosition(RelativePositionTask),
    /// Colorization.
    Colorization(ColorizationTask),
    /// Inpainting.
    Inpainting(InpaintingTask),
}

/// A task's trainable head.
#[derive(Module, Debug)]
pub enum TaskHead {
    /// Rotation classifier.
    Rotation(RotationHead),
    /// Tile embedding and permutation classifier.
    Jigsaw(JigsawHead),
    /// Pair classifier.
    RelativePosition(RelativePositionHead),
    /// ab-bin decoder.
    Colorization(ColorizationHead),
    /// Pixel decoder.
    Inpainting(InpaintingHead),
}

/// The shared backbone and one head per task.
#[derive(Module, Debug)]
pub struct PretextModel {
    /// The representation.
    pub backbone: Backbone,
    /// Heads, in the order of the tasks.
    pub heads: Vec<TaskHead>,
}

impl Task {
    fn kind(&self) -> TaskKind {
        match self {
            Task::Rotation(_) => TaskKind::Rotation,
            Task::Jigsaw(_) => TaskKind::Jigsaw,
            Task::RelativePosition(_) => TaskKind::RelativePosition,
            Task::Colorization(_) => TaskKind::Colorization,
            Task::Inpainting(_) => TaskKind::Inpainting,
        }
    }

    fn views(&self) -> Vec<ViewConfig> {
        match self {
            Task::Rotation(t) => t.views(),
            Task::Jigsaw(t) => t.views(),
            Task::RelativePosition(t) => t.views(),
            Task::Colorization(t) => t.views(),
            Task::Inpainting(t) => t.views(),
        }
    }

    fn loss(
        &self,
        head: &TaskHead,
        backbone: &Backbone,
        views: &[HostTensor],
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> TaskOutput {
        match (self, head) {
            (Task::Rotation(t), TaskHead::Rotation(h)) => t.loss(h, backbone, views, rng, device),
            (Task::Jigsaw(t), TaskHead::Jigsaw(h)) => t.loss(h, backbone, views, rng, device),
            (Task::RelativePosition(t), TaskHead::RelativePosition(h)) => {
                t.loss(h, backbone, views, rng, device)
            }
            (Task::Colorization(t), TaskHead::Colorization(h)) => {
                t.loss(h, backbone, views, device)
            }
            (Task::Inpainting(t), TaskHead::Inpainting(h)) => {
                t.loss(h, backbone, views, rng, device)
            }
            _ => unreachable!("tasks and heads are built in pairs"),
        }
    }
}

/// The method: a backbone trained on the weighted sum of its tasks' losses.
pub struct PretextMethod {
    name: &'static str,
    model: PretextModel,
    tasks: Vec<Task>,
    weights: Vec<f32>,
    device: Device,
    seed: u64,
}

/// The backbone's input channels for data with `data_channels` channels: colorization sees
/// only the lightness, so a run that includes it trains a one-channel backbone.
pub fn input_channels(run: &RunConfig, data_channels: usize) -> usize {
    let tasks: Vec<TaskKind> = match run.method.as_str() {
        "multi" => crate::methods::settings::<MultiConfig>(run)
            .map(|m| m.tasks)
            .unwrap_or_default(),
        "colorization" => vec![TaskKind::Colorization],
        _ => Vec::new(),
    };
    if tasks.contains(&TaskKind::Colorization) {
        1
    } else {
        data_channels
    }
}

fn build_tasks(
    name: &'static str,
    kinds: &[TaskKind],
    weights: Vec<f32>,
    settings: &TaskSettings,
    run: &RunConfig,
    data_channels: usize,
    device: &Device,
) -> Result<Box<dyn Method>> {
    if kinds.contains(&TaskKind::Colorization) && kinds.len() > 1 {
        return Err(Error::Config(
            "colorization trains a one-channel (lightness) backbone and cannot share it with other tasks in this version".into(),
        ));
    }
    let channels = input_channels(run, data_channels);
    let backbone = Backbone::new(&run.backbone, channels, device);
    let f = backbone.feature_dim();
    let mut tasks = Vec::new();
    let mut heads = Vec::new();
    for &k in kinds {
        let (t, h) = match k {
            TaskKind::Rotation => {
                let (t, h) = RotationTask::new(&settings.rotation, run, f, device)?;
                (Task::Rotation(t), TaskHead::Rotation(h))
            }
            TaskKind::Jigsaw => {
                let (t, h) = JigsawTask::new(&settings.jigsaw, run, f, device)?;
                (Task::Jigsaw(t), TaskHead::Jigsaw(h))
            }
            TaskKind::RelativePosition => {
                let (t, h) =
                    RelativePositionTask::new(&settings.relative_position, run, f, device)?;
                (Task::RelativePosition(t), TaskHead::RelativePosition(h))
            }
            TaskKind::Colorization => {
                let (t, h) =
                    ColorizationTask::new(&settings.colorization, run, data_channels, f, device)?;
                (Task::Colorization(t), TaskHead::Colorization(h))
            }
            TaskKind::Inpainting => {
                let (t, h) = InpaintingTask::new(&settings.inpainting, run, channels, f, device)?;
                (Task::Inpainting(t), TaskHead::Inpainting(h))
            }
        };
        tasks.push(t);
        heads.push(h);
    }
    Ok(Box::new(PretextMethod {
        name,
        model: PretextModel { backbone, heads },
        tasks,
        weights,
        device: device.clone(),
        seed: run.seed,
    }))
}

fn build(run: &RunConfig, in_channels: usize, device: &Device) -> Result<Box<dyn Method>> {
    let multi: MultiConfig = crate::methods::settings(run)?;
    let weights = (0..multi.tasks.len()).map(|i| multi.weight(i)).collect();
    build_tasks(
        INFO.name,
        &multi.tasks,
        weights,
        &multi.task_settings(),
        run,
        in_channels,
        device,
    )
}

/// Builds the single-task method `kind` (registered under the task's name).
pub fn build_single(
    kind: TaskKind,
    run: &RunConfig,
    in_channels: usize,
    device: &Device,
) -> Result<Box<dyn Method>> {
    use crate::methods::settings;
    let mut s = TaskSettings::default();
    match kind {
        TaskKind::Rotation => s.rotation = settings(run)?,
        TaskKind::Jigsaw => s.jigsaw = settings(run)?,
        TaskKind::RelativePosition => s.relative_position = settings(run)?,
        TaskKind::Colorization => s.colorization = settings(run)?,
        TaskKind::Inpainting => s.inpainting = settings(run)?,
    }
    build_tasks(
        kind.name(),
        &[kind],
        vec![1.0],
        &s,
        run,
        in_channels,
        device,
    )
}

impl Method for PretextMethod {
    fn name(&self) -> &'static str {
        self.name
    }

    fn views(&self) -> ViewSpec {
        ViewSpec {
            views: self.tasks.iter().flat_map(Task::views).collect(),
        }
    }

    fn prepare(&mut self, data: &Dataset, _fresh_run: bool) -> Result<()> {
        for t in &mut self.tasks {
            if let Task::Colorization(c) = t {
                c.prepare(data)?;
            }
        }
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
        let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[self.seed, 0x7A5C, step]));
        let mut at = 0;
        let mut total: Option<Tensor<1>> = None;
        let mut terms = Vec::new();
        for (i, (task, head)) in self.tasks.iter().zip(&self.model.heads).enumerate() {
            let n = task.views().len();
            let out = task.loss(
                head,
                &self.model.backbone,
                &batch.views[at..at + n],
                &mut rng,
                &self.device,
            );
            at += n;
            let name = task.kind().name();
            terms.push((
                format!("{name}_loss"),
                finite_scalar(&out.loss, step, name)?,
            ));
            if let Some(a) = out.accuracy {
                terms.push((format!("{name}_accuracy"), a));
            }
            let weighted = out.loss * self.weights[i];
            total = Some(match total {
                Some(t) => t + weighted,
                None => weighted,
            });
        }
        let loss = total.expect("at least one task");
        let (model, value) = update(self.model.clone(), loss, opt, lr, step, "pretext loss")?;
        self.model = model;
        Ok(StepOutput { loss: value, terms })
    }

    fn backbone(&self) -> Backbone {
        self.model.backbone.clone()
    }

    fn tensors(&self) -> BTreeMap<String, HostParam> {
        let mut t = checkpoint::collect(&self.model);
        for task in &self.tasks {
            match task {
                Task::Jigsaw(j) => j.save_into(&mut t),
                Task::Colorization(c) => c.save_into(&mut t),
                _ => {}
            }
        }
        t
    }

    fn load_tensors(&mut self, tensors: &HashMap<String, HostParam>, path: &Path) -> Result<()> {
        let mut rest = tensors.clone();
        for task in &mut self.tasks {
            match task {
                Task::Jigsaw(j) => j.load_from(&mut rest, path)?,
                Task::Colorization(c) => c.load_from(&mut rest, path)?,
                _ => {}
            }
        }
        self.model = checkpoint::apply(self.model.clone(), &rest, path)?;
        Ok(())
    }

    fn pretext_metrics(&self, data: &Dataset, limit: usize) -> Vec<(String, f64)> {
        let model = self.model.valid();
        let device = crate::device::of(&model);
        let end = limit.min(data.len());
        let mut out = Vec::new();
        for (task, head) in self.tasks.iter().zip(&model.heads) {
            let name = task.kind().name();
            match (task, head) {
                (Task::Colorization(t), TaskHead::Colorization(h)) => {
                    let (ce, chance, acc) = t.held_out(h, &model.backbone, data, end, &device);
                    out.push((format!("{name}_cross_entropy"), ce));
                    out.push((format!("{name}_chance_cross_entropy"), chance));
                    out.push((format!("{name}_bin_top1"), acc));
                }
                (Task::Inpainting(t), TaskHead::Inpainting(h)) => {
                    let (mse, mean_fill) = t.held_out_error(h, &model.backbone, data, end, &device);
                    out.push((format!("{name}_mse"), mse));
                    out.push((format!("{name}_mean_fill_mse"), mean_fill));
                }
                _ => {
                    let mut rng = ChaCha8Rng::seed_from_u64(0xE7A1);
                    let (mut hits, mut n) = (0.0f64, 0usize);
                    for start in (0..end).step_by(256) {
                        let range = start..(start + 256).min(end);
                        let views: Vec<HostTensor> = task
                            .views()
                            .iter()
                            .map(|v| crate::eval::plain_batch(data, &v.eval_only(), range.clone()))
                            .collect();
                        let o = task.loss(head, &model.backbone, &views, &mut rng, &device);
                        hits += o.accuracy.unwrap_or(0.0) as f64 * range.len() as f64;
                        n += range.len();
                    }
                    let classes = match task {
                        Task::Rotation(_) => 4.0,
                        Task::Jigsaw(j) => j.permutations.len() as f64,
                        _ => 8.0,
                    };
                    out.push((format!("{name}_accuracy"), hits / n.max(1) as f64));
                    out.push((format!("{name}_chance"), 1.0 / classes));
                }
            }
        }
        out
    }

    fn write_previews(&self, data: &Dataset, dir: &Path) -> Result<Vec<PathBuf>> {
        let model = self.model.valid();
        let device = crate::device::of(&model);
        let mut written = Vec::new();
        for (task, head) in self.tasks.iter().zip(&model.heads) {
            match (task, head) {
                (Task::Colorization(t), TaskHead::Colorization(h)) => {
                    written.push(t.preview(h, &model.backbone, data, dir, &device)?)
                }
                (Task::Inpainting(t), TaskHead::Inpainting(h)) => {
                    written.push(t.preview(h, &model.backbone, data, dir, &device)?)
                }
                _ => {}
            }
        }
        Ok(written)
    }
}
