//! `selfsup compare`: every method trained on the same data with the same backbone, optimizer
//! and wall-clock budget, then scored on frozen features (k-NN and linear probe), with k-NN
//! accuracy against training time for each method (table, JSON and a PNG plot).

use crate::config::RunConfig;
use crate::data::Splits;
use crate::demo::{Scores, evaluate};
use crate::error::{Error, Result};
use crate::eval::{self, knn};
use crate::train::{self, TrainOptions, checkpoint};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One method's run in a comparison.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MethodResult {
    /// Label (the method, plus its variant).
    pub label: String,
    /// The run's seed.
    pub seed: u64,
    /// Epochs the budget allowed.
    pub epochs: usize,
    /// Optimizer steps.
    pub steps: u64,
    /// Training wall time, seconds.
    pub wall_s: f64,
    /// Training throughput (images/s, each image counted once).
    pub images_per_s: f64,
    /// Final scores.
    pub scores: Scores,
    /// `(training seconds, k-NN top-1 %)` after each epoch.
    pub curve: Vec<(f64, f64)>,
    /// Label of the random-init row read out the same way (what the gain column subtracts).
    pub random_init_row: String,
}

/// Standard error, in points, of the difference of two mean accuracies (percent) measured
/// on the same `n` test images: the seed-to-seed variance of each mean (`sd^2 / runs`; 0 for
/// one run) plus the test set's sampling variance of each, taken as two independent
/// binomials (`p (1 - p) / n`). Treating the two binomials as independent overstates the
/// sampling part, since both are read on the same images: the SE errs on the large side.
pub fn gain_se(a: &[f64], b: &[f64], n: usize) -> f64 {
    let part = |v: &[f64]| {
        let (mean, sd) = eval::mean_sd(v);
        let seeds = if v.len() > 1 {
            sd * sd / v.len() as f64
        } else {
            0.0
        };
        let p = mean / 100.0;
        seeds + 1e4 * p * (1.0 - p) / n.max(1) as f64
    };
    (part(a) + part(b)).sqrt()
}

/// `method`'s run: its shipped recipe for the kind of data `base` has (`small-grey` for one
/// channel at 32 px or less) with `base`'s data, split, device, seed and view geometry; else
/// `base` itself (backbone, optimizer and views) with the method swapped in.
pub fn recipe_or_base(base: &RunConfig, method: &str) -> RunConfig {
    let small_grey = base.views.mean.len() == 1 && base.views.size <= 32;
    match crate::recipes::for_method("small-grey", method).filter(|_| small_grey) {
        Some(mut r) => {
            r.data = base.data.clone();
            r.validation = base.validation;
            r.train_limit = base.train_limit;
            r.device = base.device.clone();
            r.seed = base.seed;
            r.loader_workers = base.loader_workers;
            r.views.size = base.views.size;
            r.views.mean = base.views.mean.clone();
            r.views.std = base.views.std.clone();
            r
        }
        None => base.for_method(method),
    }
}

/// The method whose own settings the assignment `KEY=VALUE` changes (`byol` for
/// `byol.momentum=0.9`), or `None` for a run-wide field (`schedule.lr=0.5`).
pub fn method_of_setting(assignment: &str) -> Option<&'static str> {
    let first = assignment.split(['=', '.']).next()?.trim();
    crate::methods::METHODS
        .iter()
        .find(|m| m.name == first)
        .map(|m| m.name)
}

/// The comparison's entries: each method at its recipe ([`recipe_or_base`]). SwAV appears
/// twice, with and without multi-crop; the image pretext tasks follow (colorization needs
/// colour data and is left out), then the supervised ceiling.
pub fn default_entries(base: &RunConfig) -> Vec<(String, RunConfig)> {
    let with = |method: &str| recipe_or_base(base, method);
    // Tile tasks cut 3x3 grids: at 28 px a tile is 8 px, too small to carry an object part,
    // so they see views upsampled twice (tiles of 16 px).
    let upsampled = |method: &str| {
        let mut c = with(method);
        c.views.size = base.views.size * 2;
        c
    };
    use crate::methods::clustering::swav::SwavConfig;
    use crate::methods::pretext::multi_task::{MultiConfig, TaskKind};
    let mut multi = with("multi");
    multi.set_method_settings(&MultiConfig {
        tasks: vec![TaskKind::RelativePosition, TaskKind::Rotation],
        ..Default::default()
    });
    let mut plain_swav = with("swav");
    plain_swav.set_method_settings(&SwavConfig {
        local_crops: 0,
        ..Default::default()
    });
    // SwAV's default multi-crop: 6 local crops at 12/28 of the side (the paper's 96/224).
    let mut multicrop = with("swav");
    multicrop.set_method_settings(&SwavConfig {
        local_size: (base.views.size * 12 / 28).max(8),
        ..Default::default()
    });
    // MAE needs a ViT: ViT-Tiny with patches of a seventh of the side (16 patches at 28 px).
    let mut mae = with("mae");
    mae.backbone.kind = crate::nn::BackboneKind::VitTiny;
    mae.backbone.vit.image_size = base.views.size;
    mae.backbone.vit.patch = (base.views.size / 7).max(1);
    vec![
        ("simclr".into(), with("simclr")),
        ("moco".into(), with("moco")),
        ("mocov3".into(), with("mocov3")),
        ("nnclr".into(), with("nnclr")),
        ("npid".into(), with("npid")),
        ("pirl (jigsaw)".into(), with("pirl")),
        ("cpc".into(), with("cpc")),
        ("swav".into(), plain_swav),
        ("swav + multi-crop".into(), multicrop),
        ("byol".into(), with("byol")),
        ("simsiam".into(), with("simsiam")),
        ("barlow twins".into(), with("barlow_twins")),
        ("vicreg".into(), with("vicreg")),
        ("dino".into(), with("dino")),
        ("rotation".into(), with("rotation")),
        ("jigsaw (2x views)".into(), upsampled("jigsaw")),
        (
            "relative position (2x views)".into(),
            upsampled("relative_position"),
        ),
        ("inpainting".into(), with("inpainting")),
        ("multi: relative position + rotation".into(), multi),
        ("autoencoder".into(), with("autoencoder")),
        ("vae".into(), with("vae")),
        ("mae (vit-tiny)".into(), mae),
        // The ceiling: the same backbone trained with the labels for the same budget.
        (
            "supervised (labels: the ceiling)".into(),
            with("supervised"),
        ),
    ]
}

fn folder_name(label: &str) -> String {
    label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect::<String>()
        .split('_')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("_")
}

/// k-NN (k = 20) top-1 of a saved model.
fn knn_of(path: &Path, cfg: &RunConfig, splits: &Splits) -> Result<f64> {
    let device = crate::device::parse(&cfg.device)?;
    let bb = checkpoint::load_backbone(path, &cfg.backbone, splits.train.channels, &device)?;
    let f = eval::labeled_features(&bb, splits, &cfg.views, crate::methods::readout(cfg))?;
    let p = knn::predict_many(&f.train, &f.train_labels, &f.test, &[20], 0.07);
    Ok(eval::accuracy(&p[0], &f.test_labels))
}

/// Trains each entry for about `budget_s` seconds of training (whole epochs, sized from a
/// timed probe of a few steps on its first seed, the same for all its seeds) into `out/LABEL/` (`out/LABEL/seed-S/` for each of `seeds`
/// seeds when there are several: the entry's seed, plus 1, plus 2...), and scores it.
pub fn run(
    entries: &[(String, RunConfig)],
    splits: &Splits,
    budget_s: f64,
    seeds: usize,
    out: &Path,
    progress: bool,
) -> Result<Vec<MethodResult>> {
    let data = Arc::new(splits.train.clone());
    let mut results = Vec::new();
    let runs = entries.iter().flat_map(|(label, cfg)| {
        (0..seeds.max(1) as u64).map(move |s| {
            let mut c = cfg.clone();
            c.seed += s;
            let dir = if seeds > 1 {
                out.join(folder_name(label))
                    .join(format!("seed-{}", c.seed))
            } else {
                out.join(folder_name(label))
            };
            (label, c, dir)
        })
    });
    // Epochs per label, timed on its first seed: every seed of a method then trains for the
    // same number of epochs (timed again per seed, a budget near a whole number of epochs gave
    // one seed an epoch more than another, and the spread over seeds measured the timer).
    let mut epochs_of: Vec<(&String, usize)> = Vec::new();
    for (label, cfg, dir) in runs {
        let cfg = &cfg;
        let _ = std::fs::remove_dir_all(&dir);
        if let Some(&(_, epochs)) = epochs_of.iter().find(|(l, _)| *l == label) {
            results.push(train_and_score(
                label, cfg, epochs, &dir, splits, &data, progress,
            )?);
            continue;
        }
        // Time a few steps (the first one, with its allocations, is excluded).
        let mut probe = cfg.clone();
        probe.stop_after_steps = 6;
        let probe_dir = dir.join("probe");
        let opts = |d: PathBuf, progress| TrainOptions {
            out_dir: d,
            resume: false,
            progress,
        };
        let one = {
            let mut p = probe.clone();
            p.stop_after_steps = 1;
            train::pretrain(&p, data.clone(), &opts(probe_dir.join("1"), false))?.wall_s
        };
        let six = train::pretrain(&probe, data.clone(), &opts(probe_dir.join("6"), false))?;
        let step_s = ((six.wall_s - one) / 5.0).max(1e-3);
        std::fs::remove_dir_all(&probe_dir).map_err(|e| Error::io(&probe_dir, e))?;
        let steps_per_epoch =
            crate::data::loader::Loader::batches_per_epoch(data.len(), cfg.batch_size) as f64;
        let epochs = ((budget_s / step_s / steps_per_epoch).floor() as usize).max(1);
        tracing::info!("{label}: {step_s:.2} s/step, {epochs} epochs for {budget_s:.0} s");
        epochs_of.push((label, epochs));
        results.push(train_and_score(
            label, cfg, epochs, &dir, splits, &data, progress,
        )?);
    }
    Ok(results)
}

/// Trains `label`'s run `cfg` for `epochs` into `dir` (an epoch snapshot each, scored by k-NN
/// for the curve) and scores its final backbone.
fn train_and_score(
    label: &str,
    cfg: &RunConfig,
    epochs: usize,
    dir: &Path,
    splits: &Splits,
    data: &Arc<crate::data::Dataset>,
    progress: bool,
) -> Result<MethodResult> {
    let mut run_cfg = cfg.clone();
    run_cfg.epochs = epochs;
    run_cfg.keep_epoch_snapshots = true;
    let opts = TrainOptions {
        out_dir: dir.to_path_buf(),
        resume: false,
        progress,
    };
    let outcome = train::pretrain(&run_cfg, data.clone(), &opts)?;
    let mut curve = Vec::new();
    for s in train::read_snapshots(dir)? {
        curve.push((s.elapsed_s, knn_of(&dir.join(&s.file), &run_cfg, splits)?));
    }
    let scores = evaluate(&outcome.method.backbone(), splits, &run_cfg)?;
    println!(
        "{label}: {epochs} epochs, {:.0} s, {:.0} img/s: k-NN {:.1} %, linear {:.1} %",
        outcome.wall_s, outcome.images_per_s, scores.knn20, scores.linear
    );
    Ok(MethodResult {
        label: label.to_string(),
        seed: cfg.seed,
        epochs,
        steps: outcome.steps,
        wall_s: outcome.wall_s,
        images_per_s: outcome.images_per_s,
        scores,
        curve,
        random_init_row: String::new(),
    })
}

/// An accuracy cell: with one value, the value and its 95 % binomial interval on `n`
/// images; with several (seeds), their mean and sample standard deviation.
fn cell(values: &[f64], n: usize) -> String {
    let (mean, sd) = eval::mean_sd(values);
    if values.len() < 2 {
        format!("{mean:.1} ± {:.1}", crate::demo::interval95(mean, n))
    } else {
        format!("{mean:.1} ± {sd:.1} sd")
    }
}

/// One row per label of `rows` (several seeds of a label make one row).
fn grouped<'a, T>(rows: &'a [(String, T)]) -> Vec<(&'a str, Vec<&'a T>)> {
    let mut out: Vec<(&str, Vec<&T>)> = Vec::new();
    for (label, r) in rows {
        match out.iter_mut().find(|(l, _)| *l == label.as_str()) {
            Some((_, v)) => v.push(r),
            None => out.push((label.as_str(), vec![r])),
        }
    }
    out
}

fn score_cells(scores: &[&Scores]) -> String {
    let n = scores.first().map_or(0, |s| s.n);
    let col = |f: fn(&Scores) -> f64| cell(&scores.iter().map(|s| f(s)).collect::<Vec<_>>(), n);
    format!(
        "{} | {} | {}",
        col(|s| s.knn20),
        col(|s| s.knn200),
        col(|s| s.linear)
    )
}

/// The results as a Markdown table (top-1 %: one seed with its 95 % interval, several as
/// mean ± sd over seeds), with the baselines below: random init of the same backbone for
/// each readout in use (per seed), and raw pixels. The last column is each method's linear
/// probe minus its random-init row's, with that difference's SE ([`gain_se`]) and how many
/// SEs it is.
pub fn table(results: &[MethodResult], baselines: &[(String, Scores)]) -> String {
    let mut s = String::from(
        "| method | seeds | epochs | train time | images/s | k-NN 20 | k-NN 200 | linear probe | linear - random init (SE) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let baseline_rows = grouped(baselines);
    let gain = |row: &str, scores: &[&Scores]| {
        let Some((_, base)) = baseline_rows.iter().find(|(l, _)| *l == row) else {
            return "-".to_string();
        };
        let linear = |v: &[&Scores]| v.iter().map(|s| s.linear).collect::<Vec<_>>();
        let (a, b) = (linear(scores), linear(base));
        let n = scores.first().map_or(0, |s| s.n);
        let d = eval::mean_sd(&a).0 - eval::mean_sd(&b).0;
        let se = gain_se(&a, &b, n);
        format!("{d:+.1} ({se:.1}): {:.1} SE", d / se)
    };
    let labelled: Vec<(String, &MethodResult)> =
        results.iter().map(|r| (r.label.clone(), r)).collect();
    for (label, runs) in grouped(&labelled) {
        let k = runs.len() as f64;
        let scores: Vec<&Scores> = runs.iter().map(|r| &r.scores).collect();
        s += &format!(
            "| {label} | {} | {} | {:.0} s | {:.0} | {} | {} |\n",
            runs.len(),
            epoch_range(&runs),
            runs.iter().map(|r| r.wall_s).sum::<f64>() / k,
            runs.iter().map(|r| r.images_per_s).sum::<f64>() / k,
            score_cells(&scores),
            gain(&runs[0].random_init_row, &scores)
        );
    }
    for (label, runs) in &baseline_rows {
        s += &format!(
            "| {label} | {} | - | - | - | {} | - |\n",
            runs.len(),
            score_cells(runs)
        );
    }
    s
}

/// The point-by-point mean of the runs' curves, truncated to the shortest.
fn mean_curve(runs: &[&&MethodResult]) -> Vec<(f64, f64)> {
    let len = runs.iter().map(|r| r.curve.len()).min().unwrap_or(0);
    let k = runs.len().max(1) as f64;
    (0..len)
        .map(|i| {
            let t = runs.iter().map(|r| r.curve[i].0).sum::<f64>() / k;
            let a = runs.iter().map(|r| r.curve[i].1).sum::<f64>() / k;
            (t, a)
        })
        .collect()
}

/// The epochs of a label's runs: one number, or `min-max` when the budget gave seeds
/// different counts (each run sizes its epochs from its own timed probe).
fn epoch_range(runs: &[&&MethodResult]) -> String {
    let lo = runs.iter().map(|r| r.epochs).min().unwrap_or(0);
    let hi = runs.iter().map(|r| r.epochs).max().unwrap_or(0);
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}-{hi}")
    }
}

/// Plots k-NN accuracy against training time for every method to a PNG.
pub fn plot(results: &[MethodResult], path: &Path) -> Result<()> {
    // Several seeds of a label make one line: their curves averaged point by point (time and
    // accuracy), as far as the shortest of them reaches.
    let labelled: Vec<(String, &MethodResult)> =
        results.iter().map(|r| (r.label.clone(), r)).collect();
    let series: Vec<crate::plot::Series> = grouped(&labelled)
        .into_iter()
        .map(|(label, runs)| (label.to_string(), mean_curve(&runs)))
        .collect();
    crate::plot::line_chart(
        path,
        "k-NN top-1 (k = 20) against training time",
        ("training time (s)", "k-NN top-1 (%)"),
        &series,
        None,
    )
}

/// The whole comparison: the [`default_entries`] of `base` (only those whose label starts
/// with one of `only`, when given), each with the `overrides` (`key=value`, as `--set`)
/// applied on top of its recipe, trained for `budget_s` each with `seeds` seeds; the
/// random-init backbone scored with each readout in use (for each seed), and raw pixels;
/// `results.json`, `table.md` and `knn_vs_time.png` written to `out`. Returns the Markdown
/// table.
#[allow(clippy::too_many_arguments)]
pub fn compare(
    base: &RunConfig,
    splits: &Splits,
    only: &[String],
    overrides: &[String],
    budget_s: f64,
    seeds: usize,
    out: &Path,
    progress: bool,
) -> Result<String> {
    let mut entries: Vec<_> = default_entries(base)
        .into_iter()
        .filter(|(label, _)| only.is_empty() || only.iter().any(|o| label.starts_with(o.as_str())))
        .collect();
    // A recipe replaces the base config, so `--set` values are applied again on top of it;
    // a method's own settings go to that method's runs only.
    for o in overrides {
        let only_method = method_of_setting(o);
        if let Some(m) = only_method
            && !entries.iter().any(|(_, cfg)| cfg.method == m)
        {
            return Err(Error::Config(format!(
                "compare: --set {o}: no run of method '{m}' is compared"
            )));
        }
        for (label, cfg) in &mut entries {
            if only_method.is_none_or(|m| cfg.method == m) {
                cfg.set(o)
                    .map_err(|e| Error::Config(format!("compare: {label}: {e}")))?;
            }
        }
    }
    if entries.is_empty() {
        return Err(Error::Config(format!(
            "compare: no method matches {only:?}; labels: {}",
            default_entries(base)
                .iter()
                .map(|(l, _)| l.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    for (label, cfg) in &entries {
        crate::methods::validate(cfg)
            .map_err(|e| Error::Config(format!("compare: {label}: {e}")))?;
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let results = run(&entries, splits, budget_s, seeds, out, progress)?;
    let device = crate::device::parse(&base.device)?;
    let mut baselines = Vec::new();
    // One random-init row per readout and backbone in use (each seed); every result names
    // its row.
    type Key = (eval::Readout, crate::nn::BackboneConfig, usize);
    let mut readouts: Vec<(Key, String)> = Vec::new();
    let mut results = results;
    for (label, cfg) in &entries {
        let key = (
            crate::methods::readout(cfg),
            cfg.backbone.clone(),
            cfg.views.size,
        );
        let name = match readouts.iter().find(|(x, _)| *x == key) {
            Some((_, name)) => name.clone(),
            None => {
                let mut name = match key.0 {
                    eval::Readout::Global(_) | eval::Readout::Pixels => "random init".to_string(),
                    eval::Readout::PatchGrid(g) => format!(
                        "random init, patch readout ({} px patches every {} px, as {label})",
                        g.patch, g.stride
                    ),
                };
                if cfg.views.size != base.views.size
                    && !matches!(key.0, eval::Readout::PatchGrid(_))
                {
                    name = format!("{name}, {} px views", cfg.views.size);
                }
                if cfg.backbone != base.backbone {
                    name = format!("{name}, {label}'s backbone");
                }
                for s in 0..seeds.max(1) as u64 {
                    let channels = splits.train.channels;
                    let bb = crate::nn::Backbone::random_init(
                        &cfg.backbone,
                        channels,
                        cfg.seed + s,
                        &device,
                    );
                    baselines.push((name.clone(), evaluate(&bb, splits, cfg)?));
                }
                readouts.push((key, name.clone()));
                name
            }
        };
        for res in results.iter_mut().filter(|res| &res.label == label) {
            res.random_init_row = name.clone();
        }
    }
    let any = crate::nn::Backbone::new(&base.backbone, splits.train.channels, &device);
    let pixels = crate::demo::evaluate_readout(&any, splits, base, eval::Readout::Pixels)?;
    baselines.push(("raw pixels".to_string(), pixels));
    let md = table(&results, &baselines);
    let json = serde_json::json!({
        "budget_s": budget_s,
        "seeds": seeds,
        "validation": base.validation,
        "results": results,
        "baselines": baselines,
    });
    checkpoint::write_atomic(
        &out.join("results.json"),
        serde_json::to_string_pretty(&json)
            .expect("serializable")
            .as_bytes(),
    )?;
    checkpoint::write_atomic(&out.join("table.md"), md.as_bytes())?;
    plot(&results, &out.join("knn_vs_time.png"))?;
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::{gain_se, method_of_setting};

    #[test]
    fn a_methods_own_settings_are_told_from_run_wide_fields() {
        assert_eq!(method_of_setting("byol.momentum=0.9"), Some("byol"));
        assert_eq!(method_of_setting("swav.queue_length = 1024"), Some("swav"));
        assert_eq!(method_of_setting("schedule.lr=0.5"), None);
        assert_eq!(method_of_setting("method=byol"), None);
        // No run-wide field is named like a method, so none is mistaken for one.
        let fields = toml::Table::try_from(crate::config::RunConfig::default()).unwrap();
        for key in fields.keys() {
            assert_eq!(method_of_setting(&format!("{key}=1")), None, "{key}");
        }
    }

    #[test]
    fn gain_se_adds_seed_and_sampling_variances() {
        // One run each on 10,000 images: sqrt(0.88 * 0.12 + 0.85 * 0.15) points = 0.4828.
        let one = gain_se(&[88.0], &[85.0], 10_000);
        assert!((one - 0.23310f64.sqrt()).abs() < 1e-9, "{one}");
        // Three seeds at 87, 88, 89 (sd 1): the mean's variance 1/3 joins its part.
        let three = gain_se(&[87.0, 88.0, 89.0], &[85.0], 10_000);
        assert!(
            (three - (1.0 / 3.0 + 0.23310f64).sqrt()).abs() < 1e-9,
            "{three}"
        );
    }
}
