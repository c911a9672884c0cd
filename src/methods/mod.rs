//! Self-supervised methods, one file each, grouped by family. A method says which views it
//! needs, computes its loss on a batch, updates its parameters, and exposes the backbone that
//! evaluation freezes. It owns its settings (the `[<name>]` table of the run config): their
//! defaults, their checks and how evaluation reads its backbone.
//!
//! Adding a method (see `docs/adding-a-method.md`): write `methods/<family>/NAME.rs` with a
//! struct implementing [`Method`], a settings struct implementing [`Settings`] and a
//! `pub const INFO: MethodInfo`, then add that `INFO` to [`METHODS`].
//!
//! Data-parallel runs need nothing more from a method whose loss is a mean over its own
//! batch: [`Optimizer::step`] averages the gradients over the ranks. A method that compares
//! samples across the batch gathers them through [`crate::dist`] (SimCLR's negatives, MoCo's
//! keys, SwAV's Sinkhorn, the memory banks), and every rank must make the same collective
//! calls in the same order.

/// Writes [`Method::tensors`] and [`Method::load_tensors`] for a method whose whole
/// checkpointed state is the burn module in field `$model` (its tensors under their module
/// paths): `crate::methods::model_checkpoint!(model);` inside `impl Method for ...`.
macro_rules! model_checkpoint {
    ($model:ident) => {
        fn tensors(
            &self,
        ) -> std::collections::BTreeMap<String, $crate::train::checkpoint::HostParam> {
            $crate::train::checkpoint::collect(&self.$model)
        }

        fn load_tensors(
            &mut self,
            tensors: &std::collections::HashMap<String, $crate::train::checkpoint::HostParam>,
            path: &std::path::Path,
        ) -> $crate::Result<()> {
            self.$model = $crate::train::checkpoint::apply(self.$model.clone(), tensors, path)?;
            Ok(())
        }
    };
}
pub(crate) use model_checkpoint;

pub mod audiovisual;
pub mod clustering;
pub mod contrastive;
pub mod generative;
pub mod masked;
pub mod pretext;
pub mod siamese;
pub mod supervised;
pub mod two_view;
pub mod video;

use crate::augment::ViewConfig;
use crate::config::RunConfig;
use crate::data::Dataset;
use crate::data::loader::{HostBatch, ViewSpec};
use crate::error::{Error, Result};
use crate::eval::Readout;
use crate::nn::Backbone;
use crate::train::checkpoint::HostParam;
use crate::train::optim::Optimizer;
use burn::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

pub use crate::train::step::StepOutput;
/// Where training stands, for [`Method::after_step`].
#[derive(Clone, Copy, Debug)]
pub struct StepInfo {
    /// Steps done, this one included.
    pub step: u64,
    /// Steps in the whole schedule.
    pub total_steps: u64,
    /// Current epoch (0-based).
    pub epoch: usize,
    /// Steps in one epoch.
    pub steps_per_epoch: u64,
}

/// A self-supervised method: its model (backbone + heads + any state) and its loss.
pub trait Method {
    /// The registry name (`simclr`, ...).
    fn name(&self) -> &'static str;
    /// The views the loader must produce for each image.
    fn views(&self) -> ViewSpec;
    /// Binds the method to its training set before the first step (memory banks are sized
    /// here); `fresh_run` is false when a checkpoint will be loaded next. Default: nothing.
    fn prepare(&mut self, _data: &Dataset, _fresh_run: bool) -> Result<()> {
        Ok(())
    }
    /// Forward, loss, backward and one optimizer update with learning rate `lr`. Random
    /// draws and schedules derive from the seed and `batch.step` / `batch.epoch`, and any
    /// other state that shapes later steps is in [`Method::tensors`]: a method keeps no
    /// counter of its own, so a resumed run continues exactly.
    fn train_step(&mut self, batch: &HostBatch, opt: &mut Optimizer, lr: f64)
    -> Result<StepOutput>;
    /// Work after an optimizer step (EMA encoders, queues, memory banks). Default: nothing.
    fn after_step(&mut self, _info: &StepInfo) {}
    /// Class scores `[B, classes]` of images `x` in inference mode, for methods trained with
    /// labels (the supervised baseline, fine-tuning). Default: `None`.
    fn classify(&self, _x: Tensor<4>) -> Option<Tensor<2>> {
        None
    }
    /// Pretext-task scores of the trained model on the first `limit` images of `data` (held
    /// out), each with the chance level it must beat: e.g. `rotation_accuracy` and
    /// `rotation_chance`. Default: none.
    fn pretext_metrics(&self, _data: &Dataset, _limit: usize) -> Vec<(String, f64)> {
        Vec::new()
    }
    /// Writes pictures of what the model produces (inpainting fills, colorized images) for
    /// a few images of `data` into `dir`, returning their paths. Default: none.
    fn write_previews(&self, _data: &Dataset, _dir: &Path) -> Result<Vec<PathBuf>> {
        Ok(Vec::new())
    }
    /// The backbone, for evaluation (a cheap handle: burn tensors are reference-counted).
    fn backbone(&self) -> Backbone;
    /// Name prefix of the backbone's tensors in [`Method::tensors`] (recorded in checkpoints,
    /// so evaluation finds the backbone of any method).
    fn backbone_prefix(&self) -> &'static str {
        "backbone."
    }
    /// Every tensor of the model by name, for checkpoints.
    fn tensors(&self) -> BTreeMap<String, HostParam>;
    /// Loads tensors saved by [`Method::tensors`]; `path` names the checkpoint in errors.
    fn load_tensors(&mut self, tensors: &HashMap<String, HostParam>, path: &Path) -> Result<()>;
}

/// A method's own settings: the `[<name>]` table of the run config, with `serde` defaults
/// for every field and unknown fields refused (`#[serde(deny_unknown_fields, default)]`).
pub trait Settings: Serialize + DeserializeOwned + Default {
    /// Checks the settings, against the rest of the run where they depend on it (a patch
    /// grid on the view size). Default: nothing to check.
    fn validate(&self, _run: &RunConfig) -> Result<()> {
        Ok(())
    }
}

/// The settings of a method that has none.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}

impl Settings for NoSettings {}

/// The run's method settings, read as `T` and checked.
pub fn settings<T: Settings>(run: &RunConfig) -> Result<T> {
    let s: T = run.method_settings()?;
    s.validate(run)?;
    Ok(s)
}

/// Reads, checks and completes `T` from the run's settings table (every default filled in).
pub fn complete_settings<T: Settings>(run: &RunConfig) -> Result<toml::Table> {
    let s: T = settings(run)?;
    Ok(toml::Table::try_from(&s).expect("settings serialize to a table"))
}

/// The readout of a method whose backbone sees whole images: the run's `[features]` of the
/// whole view.
pub fn global_readout(run: &RunConfig) -> Result<Readout> {
    Ok(Readout::Global(run.features))
}

/// A registry entry: name, paper, settings and constructor of a method.
pub struct MethodInfo {
    /// Name used by `--method`, and the name of its settings table.
    pub name: &'static str,
    /// The paper it implements.
    pub paper: &'static str,
    /// One line on what it learns from.
    pub summary: &'static str,
    /// Reads, checks and completes the run's settings table
    /// (`complete_settings::<TheSettings>`).
    pub settings: fn(&RunConfig) -> Result<toml::Table>,
    /// The features the method's loss sees: the grid of patches for an encoder trained on
    /// patches only (CPC, jigsaw, relative position), else [`global_readout`]. Evaluation
    /// reads these only with `features.patches` set ([`readout`]).
    pub trained_readout: fn(&RunConfig) -> Result<Readout>,
    /// Builds the method for images with `in_channels` channels on a training device.
    pub build: fn(&RunConfig, usize, &Device) -> Result<Box<dyn Method>>,
}

/// Every available method.
pub const METHODS: &[MethodInfo] = &[
    contrastive::simclr::INFO,
    contrastive::moco::INFO,
    contrastive::mocov3::INFO,
    contrastive::nnclr::INFO,
    clustering::swav::INFO,
    siamese::byol::INFO,
    siamese::simsiam::INFO,
    siamese::barlow_twins::INFO,
    siamese::vicreg::INFO,
    siamese::dino::INFO,
    contrastive::npid::INFO,
    contrastive::pirl::INFO,
    contrastive::cpc::INFO,
    pretext::rotation::INFO,
    pretext::jigsaw::INFO,
    pretext::relative_position::INFO,
    pretext::colorization::INFO,
    pretext::inpainting::INFO,
    pretext::multi_task::INFO,
    generative::autoencoder::AE_INFO,
    generative::autoencoder::VAE_INFO,
    generative::bigan::INFO,
    masked::mae::INFO,
    video::shuffle_learn::INFO,
    video::odd_one_out::INFO,
    video::tracking::INFO,
    video::time_contrastive::INFO,
    audiovisual::avc::INFO,
    audiovisual::avid_cma::INFO,
    supervised::INFO,
];

/// Looks up a method by name.
pub fn find(name: &str) -> Result<&'static MethodInfo> {
    METHODS.iter().find(|m| m.name == name).ok_or_else(|| {
        let names: Vec<&str> = METHODS.iter().map(|m| m.name).collect();
        Error::Config(format!(
            "unknown method '{name}': available: {}",
            names.join(", ")
        ))
    })
}

/// Checks a run config and completes it: the common fields, the method's name, and its
/// settings (which then list every default, so `config.toml` repeats the run).
pub fn resolve(run: &mut RunConfig) -> Result<()> {
    let info = find(&run.method)?;
    run.validate()?;
    run.settings = (info.settings)(run)?;
    Ok(())
}

/// [`resolve`] on a copy: whether the config is valid.
pub fn validate(run: &RunConfig) -> Result<()> {
    resolve(&mut run.clone())
}

/// How evaluation, `embed` and `compare` read features from the backbone of a run: the
/// run's `[features]` on the whole view; with `features.patches`, what the method trained
/// ([`trained_readout`]: an encoder trained on patches only is then read over its grid of
/// patches). The whole view is the default because it scored better on the validation split
/// for all three patch methods (docs/evaluation.md, "Which features are scored").
pub fn readout(run: &RunConfig) -> Readout {
    if run.features.patches {
        trained_readout(run)
    } else {
        Readout::Global(run.features)
    }
}

/// The features `run.method`'s loss sees ([`MethodInfo::trained_readout`]).
pub fn trained_readout(run: &RunConfig) -> Readout {
    find(&run.method)
        .and_then(|info| (info.trained_readout)(run))
        .unwrap_or(Readout::Global(run.features))
}

/// The view most pretext tasks start from: the run's crop, flip and normalization, without
/// the colour distortions of contrastive methods (the task itself is the signal) and with
/// crops of at least 60 % of the image.
pub fn pretext_view(run: &RunConfig) -> ViewConfig {
    ViewConfig {
        crop_scale: (run.views.crop_scale.1.min(0.6), run.views.crop_scale.1),
        jitter_prob: 0.0,
        grayscale_prob: 0.0,
        blur_prob: 0.0,
        solarize_prob: 0.0,
        ..run.views.clone()
    }
}

/// One seed per item of `batch` (the run's `seed`, the epoch, the item's index and a
/// method's `salt`), for methods that draw their own samples in `train_step`: a resumed run
/// draws the same ones.
pub fn item_seeds(seed: u64, batch: &HostBatch, salt: u64) -> Vec<u64> {
    batch
        .indices
        .iter()
        .map(|&i| crate::data::loader::mix_seed(&[seed, batch.epoch as u64, i as u64, salt]))
        .collect()
}

/// What `prepare` kept, or an error naming `method` when it was not called.
pub fn prepared<'a, T>(kept: &'a Option<T>, method: &str) -> Result<&'a T> {
    kept.as_ref()
        .ok_or_else(|| Error::Config(format!("{method}: prepare() was not called")))
}

/// Held-out metrics from a fallible evaluation: the metrics, or none and a warning naming
/// `what`.
pub fn metrics_or_warn(result: Result<Vec<(String, f64)>>, what: &str) -> Vec<(String, f64)> {
    result.unwrap_or_else(|e| {
        tracing::warn!("no held-out {what}: {e}");
        Vec::new()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_resolves_its_defaults_and_refuses_unknown_settings() {
        for info in METHODS {
            let mut run = RunConfig::default().for_method(info.name);
            if matches!(info.name, "jigsaw" | "relative_position") {
                run.views.size = 64;
            }
            if info.name == "mae" {
                // MAE refuses CNNs (its test below).
                run.backbone.kind = crate::nn::BackboneKind::VitTiny;
            }
            resolve(&mut run).unwrap_or_else(|e| panic!("{}: {e}", info.name));
            // The completed table reads back to itself.
            let again = (info.settings)(&run).unwrap();
            assert_eq!(again, run.settings, "{}", info.name);
            run.set(&format!("{}.no_such_setting=1", info.name))
                .unwrap();
            let e = validate(&run).unwrap_err().to_string();
            assert!(e.contains("no_such_setting"), "{}: {e}", info.name);
        }
        assert!(find("nope").is_err());
        let mut cnn = RunConfig::default().for_method("mae");
        let e = resolve(&mut cnn).unwrap_err().to_string();
        assert!(e.contains("needs a ViT backbone"), "{e}");
    }

    #[test]
    fn patch_encoders_are_read_on_the_whole_view_unless_patches_is_set() {
        let mut run = RunConfig::default().for_method("jigsaw");
        run.views.size = 64;
        assert!(matches!(trained_readout(&run), Readout::PatchGrid(_)));
        assert_eq!(readout(&run), Readout::Global(run.features));
        assert_eq!(
            trained_readout(&run.for_method("simclr")),
            Readout::Global(run.features)
        );
        run.set("features.patches=true").unwrap();
        assert!(matches!(readout(&run), Readout::PatchGrid(_)));
        assert_eq!(
            readout(&run.for_method("simclr")),
            Readout::Global(run.features)
        );
        let mut bad = RunConfig::default().for_method("cpc");
        bad.views.size = 4;
        assert!(validate(&bad).is_err());
    }
}
