//! The run configuration: every field that decides a run, saved as `config.toml` in the run
//! folder so the run can be repeated. A TOML file and command-line flags set the same fields;
//! flags win. Unknown keys and out-of-range values are errors that name the field.
//!
//! The config holds the fields every run has (data, backbone, views, optimizer, schedule,
//! checkpoints) and one table of the chosen method's own settings, `[<method>]`
//! ([`RunConfig::settings`]). This module knows no method: the method reads, checks and
//! completes its table (`crate::methods::resolve`), so a setting of another method is an
//! error, not a silently ignored field.
//!
//! Length: about 460 lines of code, then its unit tests.

use crate::augment::ViewConfig;
use crate::data::DataSource;
use crate::data::video::VideoConfig;
use crate::error::{Error, Result};
use crate::features::mel::MelConfig;
use crate::nn::BackboneConfig;
use crate::train::optim::OptimizerConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The linear probe of `demo` and `compare` (`eval linear` takes the same as flags).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeConfig {
    /// Candidate L2 penalties, chosen on a held-out tenth of the fit split (one value: no
    /// choice, one fit instead of one per value plus the refit).
    pub weight_decays: Vec<f64>,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            weight_decays: crate::eval::linear::LinearProbeConfig::default().weight_decays,
        }
    }
}

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
    /// Side in pixels at which the images of a `folder:` or `av:` source are loaded: each
    /// image is centre-cropped to a square and resized to this side (`--image-size`).
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
    /// Tune, do not report: hold out a fixed, class-balanced fifth of the train split and use
    /// it as the scored split; the test split is not read (`Splits::validation`).
    pub validation: bool,
    /// Backbone.
    pub backbone: BackboneConfig,
    /// Which of the backbone's activations evaluation and `embed` read.
    pub features: crate::nn::FeaturesConfig,
    /// View pipeline.
    pub views: ViewConfig,
    /// Optimizer.
    pub optim: OptimizerConfig,
    /// Learning-rate schedule.
    pub schedule: ScheduleConfig,
    /// The linear probe that `demo` and `compare` score with.
    pub probe: ProbeConfig,
    /// How video clips are read (`video:PATH` sources).
    pub video: VideoConfig,
    /// How sounds become log-mel spectrograms (`av:PATH` sources).
    pub audio: MelConfig,
    /// Image + sound pairs: every this many pairs of a category are held out for testing.
    pub holdout_every: usize,
    /// The chosen method's own settings: the table `[<method>]` of the config file. Empty
    /// means the method's defaults; `crate::methods::resolve` checks it and fills in every
    /// default, so a run folder's `config.toml` lists them all.
    #[serde(skip)]
    pub settings: toml::Table,
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
            validation: false,
            backbone: BackboneConfig::default(),
            features: crate::nn::FeaturesConfig::default(),
            views: ViewConfig::default(),
            optim: OptimizerConfig::default(),
            schedule: ScheduleConfig::default(),
            probe: ProbeConfig::default(),
            video: VideoConfig::default(),
            audio: MelConfig::default(),
            holdout_every: 5,
            settings: toml::Table::new(),
        }
    }
}

impl RunConfig {
    /// Reads a TOML config file; unknown keys and bad values are errors naming the file.
    pub fn from_toml_file(path: &Path) -> Result<RunConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        RunConfig::from_toml_str(&text).map_err(|e| Error::format(path, e))
    }

    /// Reads a config from TOML text; the error gives the line where it can.
    pub fn from_toml_str(text: &str) -> std::result::Result<RunConfig, String> {
        let doc: toml::Table = toml::from_str(text).map_err(|e| {
            // One line: the position and the message, without the multi-line excerpt.
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let at = line.map_or(String::new(), |l| format!(" at line {l}"));
            format!("bad config{at}: {}", e.message())
        })?;
        RunConfig::from_table(doc).map_err(|e| {
            let key = e.split('`').nth(1).unwrap_or("");
            let line = text.lines().position(|l| {
                let l = l.trim_start();
                !key.is_empty()
                    && (l
                        .strip_prefix(key)
                        .is_some_and(|r| r.trim_start().starts_with('='))
                        || l.starts_with(&format!("[{key}]")))
            });
            let at = line.map_or(String::new(), |l| format!(" at line {}", l + 1));
            format!("bad config{at}: {e}")
        })
    }

    /// Reads a config from a TOML tree: the common fields, and the table named after the
    /// method as its [`RunConfig::settings`].
    fn from_table(mut doc: toml::Table) -> std::result::Result<RunConfig, String> {
        let method = match doc.get("method") {
            Some(toml::Value::String(m)) => m.clone(),
            Some(v) => return Err(format!("method = {v} must be a method name")),
            None => RunConfig::default().method,
        };
        let settings = match doc.remove(&method) {
            Some(toml::Value::Table(t)) => t,
            Some(v) => {
                return Err(format!(
                    "`{method}` = {v}: the method's settings must be a table ([{method}])"
                ));
            }
            None => toml::Table::new(),
        };
        // The common fields' sections, read off the struct itself (`[views]`, `[optim]`, ...):
        // any other table is some method's, and not this one's.
        let common = toml::Table::try_from(RunConfig::default()).expect("the defaults serialize");
        if let Some((key, _)) = doc
            .iter()
            .find(|(k, v)| v.is_table() && !common.contains_key(k.as_str()))
        {
            return Err(format!(
                "settings `{key}` do not apply: only the chosen method's own table is read, \
                 and the method is '{method}' (unknown field `{key}`)"
            ));
        }
        let mut cfg: RunConfig = toml::Value::Table(doc)
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_string())?;
        cfg.settings = settings;
        Ok(cfg)
    }

    /// The config as one TOML tree: the common fields and `[<method>]`.
    fn to_table(&self) -> toml::Table {
        let mut t = toml::Table::try_from(self).expect("a RunConfig always serializes");
        t.insert(
            self.method.clone(),
            toml::Value::Table(self.settings.clone()),
        );
        t
    }

    /// The config as TOML text: the common fields in their declared order, then the
    /// method's table.
    pub fn to_toml(&self) -> String {
        let common = toml::to_string_pretty(self).expect("a RunConfig always serializes");
        let mut own = toml::Table::new();
        own.insert(
            self.method.clone(),
            toml::Value::Table(self.settings.clone()),
        );
        let own = toml::to_string_pretty(&own).expect("a settings table serializes");
        format!("{common}\n{own}")
    }

    /// This config with `method` as its method: the settings are kept if the method stays
    /// the same, else they start from the new method's defaults.
    pub fn for_method(&self, method: &str) -> RunConfig {
        let mut c = self.clone();
        if c.method != method {
            c.method = method.to_string();
            c.settings = toml::Table::new();
        }
        c
    }

    /// The method's settings in their typed form `T` (absent keys take `T`'s defaults); an
    /// unknown or ill-typed key is an error naming `[<method>]`.
    pub fn method_settings<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        toml::Value::Table(self.settings.clone())
            .try_into()
            .map_err(|e: toml::de::Error| {
                Error::Config(format!("[{}] settings: {}", self.method, e.message()))
            })
    }

    /// Replaces the method's settings by `settings` (all of its fields).
    pub fn set_method_settings<T: Serialize>(&mut self, settings: &T) {
        self.settings = toml::Table::try_from(settings).expect("settings serialize to a table");
    }

    /// Changes the method's settings in their typed form: `f` gets them (with the method's
    /// defaults where unset) and what it leaves is kept.
    pub fn edit_method_settings<T: Serialize + serde::de::DeserializeOwned>(
        &mut self,
        f: impl FnOnce(&mut T),
    ) -> Result<()> {
        let mut s: T = self.method_settings()?;
        f(&mut s);
        self.set_method_settings(&s);
        Ok(())
    }

    /// Adapts the view size and normalization to `data` when the config left them at their
    /// defaults (made for 28 px grey images): views as large as the images, and RGB
    /// normalization for colour data. The augmentations are not looked at, so a recipe that
    /// changes them (the demo's random erasing) still fits other data.
    pub fn fit_views_to(&mut self, data: &crate::data::Dataset) {
        let d = ViewConfig::default();
        if (self.views.size, &self.views.mean, &self.views.std) == (d.size, &d.mean, &d.std) {
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

    /// Sets one field by its dotted TOML path (`epochs=3`, `views.size=24`, and the method's
    /// own settings under its name: `npid.loss=infonce`): the value is read as TOML (numbers,
    /// booleans, arrays) or else taken as a string. Setting `method` starts the settings of
    /// the new method from its defaults.
    pub fn set(&mut self, assignment: &str) -> Result<()> {
        let bad = |m: String| Error::Config(format!("--set {assignment}: {m}"));
        let (key, raw) = assignment
            .split_once('=')
            .ok_or_else(|| bad("expected KEY=VALUE".into()))?;
        let value = toml::from_str::<toml::Table>(&format!("v = {}", raw.trim()))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.trim().to_string()));
        self.set_value(key.trim(), value).map_err(bad)
    }

    /// Sets the field at the dotted path `key` to `value`; a number picks an element of an
    /// array (`views.crop_scale.0`). What [`RunConfig::set`] and the command-line flags use.
    pub fn set_value(&mut self, key: &str, value: toml::Value) -> std::result::Result<(), String> {
        if key == "method" {
            let name = value.as_str().ok_or("method must be a name")?;
            *self = self.for_method(name);
            return Ok(());
        }
        let mut root = toml::Value::Table(self.to_table());
        let mut node = &mut root;
        let parts: Vec<&str> = key.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let missing = || {
                let hint = if i == 0 {
                    format!(
                        " (a method's settings are set under its own name, and the method \
                         is '{}')",
                        self.method
                    )
                } else {
                    String::new()
                };
                format!("no setting '{}'{hint}", parts[..=i].join("."))
            };
            node = match node {
                toml::Value::Table(table) => {
                    if i + 1 == parts.len() && !table.contains_key(*part) {
                        // An unset optional field is absent from the tree; unknown names are
                        // refused when the tree is read back (a method's, when the method
                        // reads its table).
                        table.insert(part.to_string(), toml::Value::Boolean(false));
                    }
                    table.get_mut(*part).ok_or_else(missing)?
                }
                toml::Value::Array(items) => part
                    .parse::<usize>()
                    .ok()
                    .and_then(|j| items.get_mut(j))
                    .ok_or_else(missing)?,
                _ => return Err(format!("'{}' is not a section", parts[..i].join("."))),
            };
        }
        *node = value;
        let toml::Value::Table(doc) = root else {
            unreachable!("the root is a table")
        };
        *self = RunConfig::from_table(doc)?;
        Ok(())
    }

    /// How [`RunConfig::data`] is read.
    pub fn load_options(&self) -> crate::data::LoadOptions {
        crate::data::LoadOptions {
            strict: self.strict_data,
            folder_side: self.folder_side,
            video: self.video.clone(),
            mel: self.audio.clone(),
            holdout_every: self.holdout_every,
            validation: self.validation,
        }
    }

    /// Checks the range of every common field (the method's own settings are checked by
    /// `crate::methods::resolve`; data-dependent checks happen when the data is loaded).
    pub fn validate(&self) -> Result<()> {
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
        if self.backbone.norm != crate::nn::Norm::Batch
            && self.backbone.kind != crate::nn::BackboneKind::ConvNet
        {
            return bad(format!(
                "backbone.norm = {:?} is only available for the convnet backbone",
                self.backbone.norm
            ));
        }
        crate::device::parse(&self.device)?;
        self.video.validate()?;
        self.audio.validate()?;
        self.views.validate()?;
        self.optim.validate()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_method_table_round_trips_and_other_tables_are_refused() {
        let text = "method = \"moco\"\nepochs = 3\n[moco]\nqueue_size = 64\n";
        let c = RunConfig::from_toml_str(text).unwrap();
        assert_eq!((c.method.as_str(), c.epochs), ("moco", 3));
        assert_eq!(
            c.settings.get("queue_size"),
            Some(&toml::Value::Integer(64))
        );
        let back = RunConfig::from_toml_str(&c.to_toml()).unwrap();
        assert_eq!(back, c);
        // Another method's table: an error naming it, at its line.
        let e =
            RunConfig::from_toml_str("method = \"simclr\"\n[moco]\nqueue_size = 1\n").unwrap_err();
        assert!(e.contains("`moco`") && e.contains("line 2"), "{e}");
        let e = RunConfig::from_toml_str("epochs = 2\nlearning_rate = 3\n").unwrap_err();
        assert!(
            e.contains("unknown field `learning_rate`") && e.contains("line 2"),
            "{e}"
        );
    }

    #[test]
    fn set_reaches_common_fields_array_elements_and_the_method_table_only() {
        let mut c = RunConfig::default();
        c.set("epochs=7").unwrap();
        c.set("views.crop_scale.0=0.3").unwrap();
        c.set("simclr.temperature=0.5").unwrap();
        assert_eq!(c.epochs, 7);
        assert_eq!(c.views.crop_scale, (0.3, 1.0));
        assert_eq!(
            c.settings.get("temperature"),
            Some(&toml::Value::Float(0.5))
        );
        let e = c.set("moco.queue_size=3").unwrap_err().to_string();
        assert!(
            e.contains("no setting 'moco'") && e.contains("'simclr'"),
            "{e}"
        );
        assert!(c.set("views.crop_scale.5=1").is_err());
        assert!(c.set("epochs.x=1").is_err());
        // A new method starts from its own defaults.
        c.set("method=moco").unwrap();
        assert_eq!(c.method, "moco");
        assert!(c.settings.is_empty());
        c.set("moco.queue_size=3").unwrap();
        assert_eq!(c.for_method("moco").settings, c.settings);
        assert!(c.for_method("npid").settings.is_empty());
    }

    #[test]
    fn typed_settings_take_defaults_and_refuse_unknown_keys() {
        #[derive(Debug, Default, PartialEq, Serialize, serde::Deserialize)]
        #[serde(deny_unknown_fields, default)]
        struct S {
            a: u32,
            b: f64,
        }
        let mut c = RunConfig::default();
        c.set("simclr.a=4").unwrap();
        assert_eq!(c.method_settings::<S>().unwrap(), S { a: 4, b: 0.0 });
        c.edit_method_settings(|s: &mut S| s.b = 2.0).unwrap();
        assert_eq!(c.method_settings::<S>().unwrap(), S { a: 4, b: 2.0 });
        c.set("simclr.nope=1").unwrap();
        let e = c.method_settings::<S>().unwrap_err().to_string();
        assert!(e.contains("[simclr]") && e.contains("nope"), "{e}");
    }
}
