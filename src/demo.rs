//! `selfsup demo`: pretrain SimCLR on the embedded Fashion-MNIST subset, then score the
//! pretrained backbone and the same backbone at random initialization with k-NN and a linear
//! probe on the held-out test images.

use crate::config::RunConfig;
use crate::data::{Dataset, Splits};
use crate::error::Result;
use crate::eval::{self, knn, linear};
use crate::nn::Backbone;
use crate::train::{self, TrainOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Scores of one backbone on a labeled test split.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Scores {
    /// Weighted k-NN top-1 (%) with k = 20.
    pub knn20: f64,
    /// Weighted k-NN top-1 (%) with k = 200.
    pub knn200: f64,
    /// Linear-probe top-1 (%).
    pub linear: f64,
    /// Images scored.
    pub n: usize,
}

/// Half the width of the 95 % interval of an accuracy of `percent` % on `n` images (normal
/// approximation of the binomial), in points.
pub fn interval95(percent: f64, n: usize) -> f64 {
    let p = percent / 100.0;
    100.0 * 1.96 * (p * (1.0 - p) / n.max(1) as f64).sqrt()
}

/// Evaluates a frozen backbone: features of train and test, k-NN (k = 20, 200, T = 0.07) and
/// a linear probe fit on train, scored on test.
pub fn evaluate(backbone: &Backbone, splits: &Splits, run: &RunConfig) -> Result<Scores> {
    evaluate_readout(backbone, splits, run, crate::methods::readout(run))
}

/// [`evaluate`] with features read as `readout` ([`eval::Readout::Pixels`]: raw pixels).
pub fn evaluate_readout(
    backbone: &Backbone,
    splits: &Splits,
    run: &RunConfig,
    readout: eval::Readout,
) -> Result<Scores> {
    let f = eval::labeled_features(backbone, splits, &run.views, readout)?;
    let knn = knn::predict_many(&f.train, &f.train_labels, &f.test, &[20, 200], 0.07);
    let probe = linear::LinearProbeConfig {
        seed: run.seed,
        weight_decays: run.probe.weight_decays.clone(),
        ..Default::default()
    };
    let lin = linear::fit_predict(&f.train, &f.train_labels, &f.test, &probe);
    Ok(Scores {
        knn20: eval::accuracy(&knn[0], &f.test_labels),
        knn200: eval::accuracy(&knn[1], &f.test_labels),
        linear: eval::accuracy(&lin.predictions, &f.test_labels),
        n: f.test_labels.len(),
    })
}

/// The demo's recipe, `recipes/small-grey/simclr.toml`: LARS, batch 256, lr 1.0, NT-Xent at
/// temperature 0.2, 12 epochs (the file says how each value was chosen).
pub fn demo_config() -> RunConfig {
    crate::recipes::load("small-grey/simclr").expect("the shipped SimCLR recipe parses (tested)")
}

/// Side of the demo's views for one-channel images of side `side`: up to 32 px they are
/// upsampled 1.5x (28 -> 42 px), so the ConvNet's last blocks keep maps of 5x5 and 2x2
/// where 28 px leaves 3x3 and 1x1; larger images keep their side. Chosen on the validation
/// split (docs/results-contrastive.md, "The demo's view size"): the SimCLR recipe's 12 epochs
/// at 42 px scored 89.8 and 90.0 % on seeds 0 and 1 against 88.2 and 88.8 % at 28 px.
pub fn view_size(side: usize) -> usize {
    if side <= 32 { side * 3 / 2 } else { side }
}

/// Fits `cfg`'s views to `data` ([`RunConfig::fit_views_to`]), then, unless the user set the
/// view size (`size_set`: `--set views.size=N`, which may equal the default 28), views
/// one-channel images at [`view_size`].
pub fn fit_views(cfg: &mut RunConfig, data: &Dataset, size_set: bool) {
    cfg.fit_views_to(data);
    if !size_set && data.channels == 1 {
        cfg.views.size = view_size(data.height.min(data.width));
    }
}

/// What the demo measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DemoReport {
    /// Scores of the pretrained backbone.
    pub pretrained: Scores,
    /// Scores of the same backbone at random initialization.
    pub random_init: Scores,
    /// Scores of the raw pixels.
    pub raw_pixels: Scores,
    /// Pretraining wall time in seconds.
    pub train_seconds: f64,
    /// Pretraining throughput (images per second).
    pub images_per_s: f64,
    /// Loss of the first training step.
    pub first_loss: f32,
    /// Loss of the last step.
    pub last_loss: f32,
    /// Test accuracy after each epoch (empty unless the demo was asked for the curve).
    pub curve: Vec<CurvePoint>,
}

/// The scores of the backbone saved after one epoch of pretraining.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CurvePoint {
    /// Epochs done (0: the initialization).
    pub epoch: f64,
    /// Pretraining wall time when the backbone was saved, in seconds.
    pub seconds: f64,
    /// Its scores.
    pub scores: Scores,
}

impl DemoReport {
    /// A Markdown table of the three rows, each accuracy with its 95 % interval.
    pub fn table(&self) -> String {
        let cell = |a: f64, n: usize| format!("{a:.1} ± {:.1}", interval95(a, n));
        let row = |name: &str, s: &Scores| {
            format!(
                "| {name:<18} | {:>10} | {:>10} | {:>10} |\n",
                cell(s.knn20, s.n),
                cell(s.knn200, s.n),
                cell(s.linear, s.n)
            )
        };
        let mut t = String::from(
            "| features           |    k-NN 20 |   k-NN 200 |     linear |\n|--------------------|-----------:|-----------:|-----------:|\n",
        );
        t += &row("SimCLR pretrained", &self.pretrained);
        t += &row("random init", &self.random_init);
        t += &row("raw pixels", &self.raw_pixels);
        t
    }
}

/// Runs the demo into `out_dir` with `cfg` on `splits`. With `curve`, the backbone is also
/// saved after every epoch and scored (k-NN and linear probe), into `curve.json` and
/// `accuracy_vs_time.png`.
pub fn run(
    cfg: &RunConfig,
    splits: &Splits,
    out_dir: PathBuf,
    progress: bool,
    curve: bool,
) -> Result<DemoReport> {
    let train: Arc<Dataset> = Arc::new(splits.train.clone());
    let mut cfg = cfg.clone();
    cfg.keep_epoch_snapshots |= curve;
    let cfg = &cfg;
    let outcome = train::pretrain(
        cfg,
        train,
        &TrainOptions {
            out_dir: out_dir.clone(),
            resume: false,
            progress,
        },
    )?;
    let pretrained = evaluate(&outcome.method.backbone(), splits, cfg)?;
    let base = crate::device::parse(&cfg.device)?;
    let random = Backbone::random_init(&cfg.backbone, splits.train.channels, cfg.seed, &base);
    let random_init = evaluate(&random, splits, cfg)?;
    let raw_pixels = evaluate_readout(&random, splits, cfg, eval::Readout::Pixels)?;
    let curve = if curve {
        score_snapshots(&out_dir, splits, cfg)?
    } else {
        Vec::new()
    };
    let report = DemoReport {
        pretrained,
        random_init,
        raw_pixels,
        train_seconds: outcome.wall_s,
        images_per_s: outcome.images_per_s,
        first_loss: outcome.losses.first().copied().unwrap_or(f32::NAN),
        last_loss: outcome.losses.last().copied().unwrap_or(f32::NAN),
        curve,
    };
    let json = serde_json::to_string_pretty(&report).expect("serializable report");
    train::checkpoint::write_atomic(&out_dir.join("report.json"), json.as_bytes())?;
    train::checkpoint::write_atomic(&out_dir.join("report.md"), report.table().as_bytes())?;
    crate::report::write_html(&out_dir, None)?;
    Ok(report)
}

/// Scores every model listed in `dir/snapshots.jsonl`, writes `curve.json` and plots
/// `accuracy_vs_time.png`.
fn score_snapshots(dir: &Path, splits: &Splits, cfg: &RunConfig) -> Result<Vec<CurvePoint>> {
    let device = crate::device::parse(&cfg.device)?;
    let mut points = Vec::new();
    for s in train::read_snapshots(dir)? {
        let bb = train::checkpoint::load_backbone(
            &dir.join(&s.file),
            &cfg.backbone,
            splits.train.channels,
            &device,
        )?;
        let scores = evaluate(&bb, splits, cfg)?;
        tracing::info!(
            "epoch {:.0} ({:.0} s): k-NN {:.1} %, linear {:.1} %",
            s.epoch,
            s.elapsed_s,
            scores.knn20,
            scores.linear
        );
        points.push(CurvePoint {
            epoch: s.epoch,
            seconds: s.elapsed_s,
            scores,
        });
    }
    let json = serde_json::to_string_pretty(&points).expect("serializable curve");
    train::checkpoint::write_atomic(&dir.join("curve.json"), json.as_bytes())?;
    let series = |name: &str, f: fn(&Scores) -> f64| -> crate::plot::Series {
        (
            name.to_string(),
            points.iter().map(|p| (p.seconds, f(&p.scores))).collect(),
        )
    };
    crate::plot::line_chart(
        &dir.join("accuracy_vs_time.png"),
        "SimCLR demo: frozen features against pretraining time",
        ("pretraining time (s)", "top-1 on the scored split (%)"),
        &[
            series("linear probe", |s| s.linear),
            series("k-NN 20", |s| s.knn20),
        ],
        None,
    )?;
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(channels: usize, side: usize) -> Dataset {
        Dataset {
            pixels: vec![0; channels * side * side],
            labels: None,
            class_names: Vec::new(),
            channels,
            height: side,
            width: side,
            clips: Vec::new(),
            sounds: None,
            paths: Vec::new(),
        }
    }

    #[test]
    fn small_images_are_viewed_upsampled_and_larger_ones_at_their_side() {
        assert_eq!(view_size(28), 42);
        assert_eq!(view_size(32), 48);
        assert_eq!(view_size(64), 64);
        let fitted = |channels, side, set: Option<usize>| {
            let mut cfg = demo_config();
            if let Some(n) = set {
                cfg.views.size = n;
            }
            fit_views(&mut cfg, &images(channels, side), set.is_some());
            cfg.views.size
        };
        assert_eq!(fitted(1, 28, None), 42);
        assert_eq!(fitted(1, 64, None), 64);
        // Colour images keep their side; a size the user set is kept, even the default 28.
        assert_eq!(fitted(3, 28, None), 28);
        assert_eq!(fitted(1, 28, Some(28)), 28);
        assert_eq!(fitted(1, 28, Some(56)), 56);
    }
}
