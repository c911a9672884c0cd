//! The run configuration: every field that decides a run, saved as `config.toml` in the run
//! folder so the run can be repeated. A TOML file and command-line flags set the same fields;
//! flags win. Unknown keys and out-of-range values are errors that name the field.

use crate::augment::ViewConfig;
use crate::data::DataSource;
use crate::data::video::VideoConfig;
use crate::error::{Error, Result};
use crate::methods::autoencoder::AutoencoderConfig;
use crate::methods::avc::AvcConfig;
use crate::methods::avid_cma::AvidCmaConfig;
use crate::methods::bigan::BiganConfig;
use crate::methods::colorization::ColorizationConfig;
use crate::methods::cpc::CpcConfig;
use crate::methods::inpainting::InpaintingConfig;
use crate::methods::jigsaw::JigsawConfig;
use crate::methods::moco::MocoConfig;
use crate::methods::multi_task::MultiConfig;
use crate::methods::npid::NpidConfig;
use crate::methods::odd_one_out::OddOneOutConfig;
use crate::methods::pirl::PirlConfig;
use crate::methods::relative_position::RelativePositionConfig;
use crate::methods::rotation::RotationConfig;
use crate::methods::shuffle_learn::ShuffleLearnConfig;
use crate::methods::simclr::SimClrConfig;
use crate::methods::swav::SwavConfig;
use crate::methods::time_contrastive::TimeContrastiveConfig;
use crate::methods::tracking::TrackingConfig;
use crate::nets::BackboneConfig;
use crate::pretext::mel::MelConfig;
use crate::train::optim::OptimizerConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Learning-rate schedule: linear warm-up, then cosine decay to `final_lr`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// Peak learning rate, reached at the end of warm-up.
    pub lr: f64,
    /// Learning rate at the last step.
    pub final_lr: f64,
    /// Warm-up length in epochs (may be fractional).
    pub warmup_epochs: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            lr: 1.0,
            final_lr: 0.0,
            warmup_epochs: 1.0,
        }
    }
}

/// What the trainer does when a step's loss is NaN or infinite.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NonFinitePolicy {
    /// Stop with an error naming the step and the quantity (the checkpoints stay as they were).
    #[default]
    Stop,
    /// Skip the batch: no update, a warning, training goes on.
    Skip,
    /// Reload the last checkpoint (model, optimizer, step) and go on with the next batches.
    Rollback,
}

/// Everything that defines a pretraining run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Method name (see `selfsup methods`).
    pub method: String,
    /// Data source (`embedded`, `idx:PATH`, `cifar10:PATH`, `cifar100:PATH`, `folder:PATH`,
    /// `video:PATH`).
    pub data: DataSource,
    /// Use only the first N training images (0 = all).
    pub train_limit: usize,
    /// Side in pixels at which the images of a `folder:` source are loaded (centre square).
    pub folder_side: usize,
    /// Train on this many random square crops of side `random_crop_side`, cut from the
    /// training images at random places (0 = on the images themselves): many small training
    /// images out of a few large photographs.
    pub random_crops: usize,
    /// Side of those crops in pixels.
    pub random_crop_side: usize,
    /// Device: `cpu`, `tch` or `cuda:N`.
    pub device: String,
    /// Seed of every random choice in the run.
    pub seed: u64,
    /// Training epochs.
    pub epochs: usize,
    /// Images per batch (each contributes one sample of every view).
    pub batch_size: usize,
    /// Stop after this many optimizer steps even if the schedule is longer (0 = run to the end).
    pub stop_after_steps: u64,
    /// Threads that make views ahead of the training step.
    pub loader_workers: usize,
    /// Write a metrics line every this many steps.
    pub log_every: u64,
    /// Write a checkpoint every this many epochs (and always at the end).
    pub checkpoint_every_epochs: usize,
    /// Also write one every this many steps, inside epochs too (0 = off).
    pub checkpoint_every_steps: u64,
    /// Also write one when this many minutes passed since the last (0 = off): a kill loses
    /// at most this much training, however long the epochs.
    pub checkpoint_every_minutes: f64,
    /// Also keep the model of every checkpointed epoch as `step-N.safetensors`, listed with
    /// its training time in `snapshots.jsonl` (for accuracy-against-time curves).
    pub keep_epoch_snapshots: bool,
    /// Start the backbone from this checkpoint's backbone (any method's `last.safetensors`)
    /// instead of random init; heads start fresh. Ignored when resuming.
    pub init_from: Option<std::path::PathBuf>,
    /// What a NaN or infinite loss does: `stop` the run (the default), `skip` the batch
    /// (no update), or `rollback` to the last checkpoint and go on with the next batches.
    pub on_nonfinite: NonFinitePolicy,
    /// Stop on the first unreadable image of a folder instead of skipping it with a warning.
    pub strict_data: bool,
    /// Backbone.
    pub backbone: BackboneConfig,
    /// View pipeline.
    pub views: ViewConfig,
    /// Optimizer.
    pub optim: OptimizerConfig,
    /// Learning-rate schedule.
    pub schedule: ScheduleConfig,
    /// SimCLR settings.
    pub simclr: SimClrConfig,
    /// MoCo settings.
    pub moco: MocoConfig,
    /// SwAV settings.
    pub swav: SwavConfig,
    /// NPID settings.
    pub npid: NpidConfig,
    /// PIRL settings.
    pub pirl: PirlConfig,
    /// CPC settings.
    pub cpc: CpcConfig,
    /// Rotation-prediction settings.
    pub rotation: RotationConfig,
    /// Jigsaw settings.
    pub jigsaw: JigsawConfig,
    /// Relative-position settings.
    pub relative_position: RelativePositionConfig,
    /// Colorization settings.
    pub colorization: ColorizationConfig,
    /// Inpainting settings.
    pub inpainting: InpaintingConfig,
    /// Multi-task settings (which pretext tasks, with which weights).
    pub multi: MultiConfig,
    /// Autoencoder and VAE settings.
    pub autoencoder: AutoencoderConfig,
    /// BiGAN settings.
    pub bigan: BiganConfig,
    /// How video clips are read (`video:PATH` sources).
    pub video: VideoConfig,
    /// Shuffle & Learn settings.
    pub shuffle_learn: ShuffleLearnConfig,
    /// Odd-One-Out settings.
    pub odd_one_out: OddOneOutConfig,
    /// Tracking (triplet ranking) settings.
    pub tracking: TrackingConfig,
    /// Time-contrastive settings.
    pub time_contrastive: TimeContrastiveConfig,
    /// How sounds become log-mel spectrograms (`av:PATH` sources).
    pub audio: MelConfig,
    /// Image + sound pairs: every this many pairs of a category are held out for testing.
    pub holdout_every: usize,
    /// Audio-visual correspondence settings.
    pub avc: AvcConfig,
    /// AVID + CMA settings.
    pub avid_cma: AvidCmaConfig,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            method: "simclr".into(),
            data: DataSource::Embedded,
            train_limit: 0,
            folder_side: crate::data::folder::DEFAULT_SIDE,
            random_crops: 0,
            random_crop_side: 40,
            device: "cpu".into(),
            seed: 0,
            epochs: 10,
            batch_size: 256,
            stop_after_steps: 0,
            loader_workers: 1,
            log_every: 10,
            checkpoint_every_epochs: 1,
            checkpoint_every_steps: 0,
            checkpoint_every_minutes: 5.0,
            keep_epoch_snapshots: false,
            init_from: None,
            on_nonfinite: NonFinitePolicy::Stop,
            strict_data: false,
            backbone: BackboneConfig::default(),
            views: ViewConfig::default(),
            optim: OptimizerConfig::default(),
            schedule: ScheduleConfig::default(),
            simclr: SimClrConfig::default(),
            moco: MocoConfig::default(),
            swav: SwavConfig::default(),
            npid: NpidConfig::default(),
            pirl: PirlConfig::default(),
            cpc: CpcConfig::default(),
            rotation: RotationConfig::default(),
            jigsaw: JigsawConfig::default(),
            relative_position: RelativePositionConfig::default(),
            colorization: ColorizationConfig::default(),
            inpainting: InpaintingConfig::default(),
            multi: MultiConfig::default(),
            autoencoder: AutoencoderConfig::default(),
            bigan: BiganConfig::default(),
            video: VideoConfig::default(),
            shuffle_learn: ShuffleLearnConfig::default(),
            odd_one_out: OddOneOutConfig::default(),
            tracking: TrackingConfig::default(),
            time_contrastive: TimeContrastiveConfig::default(),
            audio: MelConfig::default(),
            holdout_every: 5,
            avc: AvcConfig::default(),
            avid_cma: AvidCmaConfig::default(),
        }
    }
}

impl RunConfig {
    /// Reads a TOML config file; unknown keys and bad values are errors naming the file.
    pub fn from_toml_file(path: &Path) -> Result<RunConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: RunConfig = toml::from_str(&text).map_err(|e| {
            // One line: the position and the message, without the multi-line excerpt.
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let at = line.map_or(String::new(), |l| format!(" at line {l}"));
            Error::format(path, format!("bad config{at}: {}", e.message()))
        })?;
        Ok(cfg)
    }

    /// The config as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a RunConfig always serializes")
    }

    /// Adapts the view size and normalization to `data` when the config left the views at
    /// their defaults (made for 28 px grey images): views as large as the images, and RGB
    /// normalization for colour data.
    pub fn fit_views_to(&mut self, data: &crate::data::Dataset) {
        if self.views == ViewConfig::default() {
            let side = data.height.min(data.width);
            // Video methods cut crops of `views.size` out of the frames: the default size
            // stays when the frames are larger.
            if data.clips.is_empty() || self.views.size > side {
                self.views.size = side;
            }
            if data.channels == 3 {
                self.views.mean = vec![0.5; 3];
                self.views.std = vec![0.25; 3];
            }
        }
    }

    /// Sets one field by its dotted TOML path (`npid.loss=infonce`, `views.size=24`): the
    /// value is read as TOML (numbers, booleans, arrays) or else taken as a string.
    pub fn set(&mut self, assignment: &str) -> Result<()> {
        let bad = |m: String| Error::Config(format!("--set {assignment}: {m}"));
        let (key, raw) = assignment
            .split_once('=')
            .ok_or_else(|| bad("expected KEY=VALUE".into()))?;
        let value = toml::from_str::<toml::Table>(&format!("v = {}", raw.trim()))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.trim().to_string()));
        let mut root = toml::Value::try_from(&*self).map_err(|e| bad(e.to_string()))?;
        let mut node = &mut root;
        let parts: Vec<&str> = key.trim().split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let table = node
                .as_table_mut()
                .ok_or_else(|| bad(format!("'{}' is not a section", parts[..i].join("."))))?;
            if i + 1 == parts.len() && !table.contains_key(*part) {
                // An unset optional field is absent from the tree; unknown names are refused
                // when the tree is read back.
                table.insert(part.to_string(), toml::Value::Boolean(false));
            }
            node = table
                .get_mut(*part)
                .ok_or_else(|| bad(format!("no setting '{}'", parts[..=i].join("."))))?;
        }
        *node = value;
        *self = root
            .try_into()
            .map_err(|e: toml::de::Error| bad(e.message().to_string()))?;
        Ok(())
    }

    /// How evaluation reads features from this run's backbone: an encoder that has only
    /// seen patches (CPC's, jigsaw's and relative position's, alone or in a multi-task run)
    /// is read as the mean of its features over the grid of patches it was trained on.
    pub fn readout(&self) -> crate::eval::Readout {
        use crate::eval::Readout;
        use crate::methods::multi_task::TaskKind;
        use crate::pretext::tiles::PatchGrid;
        let size = self.views.size;
        let tiles = |tile: usize| {
            Readout::PatchGrid(PatchGrid {
                patch: tile,
                stride: size / 3,
            })
        };
        let only = |kind: TaskKind| self.method == "multi" && self.multi.tasks == [kind];
        match self.method.as_str() {
            "cpc" => self
                .cpc
                .grid(size)
                .map_or(Readout::Global, Readout::PatchGrid),
            "jigsaw" => self
                .jigsaw
                .grid(size)
                .map_or(Readout::Global, |g| tiles(g.tile)),
            "relative_position" => self
                .relative_position
                .grid(size)
                .map_or(Readout::Global, |g| tiles(g.tile)),
            _ if only(TaskKind::Jigsaw) => self
                .jigsaw
                .grid(size)
                .map_or(Readout::Global, |g| tiles(g.tile)),
            _ => Readout::Global,
        }
    }

    /// How [`RunConfig::data`] is read.
    pub fn load_options(&self) -> crate::data::LoadOptions {
        crate::data::LoadOptions {
            strict: self.strict_data,
            folder_side: self.folder_side,
            video: self.video.clone(),
            mel: self.audio.clone(),
            holdout_every: self.holdout_every,
        }
    }

    /// Checks every field's range (data-dependent checks happen when the data is loaded).
    pub fn validate(&self) -> Result<()> {
        crate::methods::find(&self.method)?;
        let bad = |m: String| Err(Error::Config(m));
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if self.batch_size < 2 {
            return bad(format!(
                "batch_size = {} must be at least 2 (contrastive losses need negatives)",
                self.batch_size
            ));
        }
        if !(self.schedule.lr > 0.0 && self.schedule.lr.is_finite()) {
            return bad(format!(
                "schedule.lr = {} must be a positive number",
                self.schedule.lr
            ));
        }
        if self.schedule.final_lr < 0.0 || self.schedule.warmup_epochs < 0.0 {
            return bad("schedule.final_lr and schedule.warmup_epochs must be non-negative".into());
        }
        if self.simclr.temperature <= 0.0 || self.moco.temperature <= 0.0 {
            return bad("simclr.temperature and moco.temperature must be positive".into());
        }
        if self.log_every == 0 || self.checkpoint_every_epochs == 0 {
            return bad("log_every and checkpoint_every_epochs must be at least 1".into());
        }
        if !(self.checkpoint_every_minutes >= 0.0 && self.checkpoint_every_minutes.is_finite()) {
            return bad(format!(
                "checkpoint_every_minutes = {} must be a non-negative number (0 = off)",
                self.checkpoint_every_minutes
            ));
        }
        if self.folder_side == 0 || (self.random_crops > 0 && self.random_crop_side == 0) {
            return bad("folder_side and random_crop_side must be at least 1".into());
        }
        if self.backbone.width <= 0.0 {
            return bad("backbone.width must be positive".into());
        }
        if self.backbone.norm == crate::nets::Norm::None
            && self.backbone.kind != crate::nets::BackboneKind::ConvNet
        {
            return bad(
                "backbone.norm = \"none\" is only available for the convnet backbone".into(),
            );
        }
        crate::device::parse(&self.device)?;
        self.npid.validate()?;
        self.pirl.validate()?;
        match self.method.as_str() {
            "cpc" => drop(self.cpc.grid(self.views.size)?),
            "pirl" => drop(self.pirl.grid(self.views.size)?),
            "jigsaw" => drop(self.jigsaw.grid(self.views.size)?),
            "relative_position" => drop(self.relative_position.grid(self.views.size)?),
            "multi" => {
                use crate::methods::multi_task::TaskKind;
                self.multi.validate()?;
                if self.multi.tasks.contains(&TaskKind::Jigsaw) {
                    self.jigsaw.grid(self.views.size)?;
                }
                if self.multi.tasks.contains(&TaskKind::RelativePosition) {
                    self.relative_position.grid(self.views.size)?;
                }
            }
            _ => {}
        }
        self.video.validate()?;
        self.shuffle_learn.validate()?;
        self.odd_one_out.validate()?;
        self.tracking.validate()?;
        self.time_contrastive.validate()?;
        self.avid_cma.validate()?;
        self.audio.validate()?;
        self.views.validate()?;
        self.optim.validate()?;
        Ok(())
    }
}
