//! The training loop: data loader, method step, learning-rate schedule, metrics, checkpoints
//! and exact resumption.
//!
//! A run folder holds `config.toml` (the resolved config), `metrics.jsonl` (one JSON object
//! per logged step), `last.safetensors` (the model, PyTorch-readable) and
//! `last.ckpt.safetensors` (model + optimizer + step, what `--resume` reads).
//!
//! In a data-parallel run ([`crate::dist`]) every rank runs this loop on its shard of each
//! batch; rank 0 alone writes the run folder and shows progress.

pub mod checkpoint;
pub mod optim;
pub mod schedule;
pub mod step;

use crate::config::{NonFinitePolicy, RunConfig};
use crate::data::Dataset;
use crate::data::loader::{Loader, LoaderConfig};
use crate::error::{Error, Result};
use crate::methods::{self, Method};
use checkpoint::HostParam;
use optim::Optimizer;
use schedule::WarmupCosine;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// How to run [`pretrain`].
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// The run folder.
    pub out_dir: PathBuf,
    /// Continue from `out_dir/last.ckpt.safetensors` if it exists.
    pub resume: bool,
    /// Show a progress bar.
    pub progress: bool,
}

/// What a finished (or stopped) run reports.
pub struct TrainOutcome {
    /// The trained method (its backbone is what evaluation freezes).
    pub method: Box<dyn Method>,
    /// Optimizer steps done in total (including before a resume).
    pub steps: u64,
    /// Loss of every step run in this process, in order.
    pub losses: Vec<f32>,
    /// Wall time of this process's training, in seconds.
    pub wall_s: f64,
    /// Training throughput, images per second (each image counted once, whatever its views).
    pub images_per_s: f64,
    /// Batches skipped or rolled back over because their loss was not finite.
    pub skipped_batches: u64,
    /// Seconds this process spent in collective operations (0 in a single process).
    pub comm_s: f64,
}

/// Non-finite steps between two checkpoints that the `skip` and `rollback` policies tolerate.
const MAX_BAD_STEPS: usize = 5;

/// File name of the resumable checkpoint.
pub const TRAIN_CKPT: &str = "last.ckpt.safetensors";
/// File name of the model-only checkpoint.
pub const MODEL_CKPT: &str = "last.safetensors";

/// Pretrains `cfg.method` on `data`, writing the run folder described in the module docs.
pub fn pretrain(cfg: &RunConfig, data: Arc<Dataset>, opts: &TrainOptions) -> Result<TrainOutcome> {
    // The method checks its settings and fills in their defaults, for config.toml.
    let mut resolved = cfg.clone();
    crate::methods::resolve(&mut resolved)?;
    let cfg = &resolved;
    let (rank, world) = (crate::dist::rank(), crate::dist::world_size());
    let primary = rank == 0;
    if cfg.batch_size % world != 0 {
        return Err(Error::Config(format!(
            "batch_size = {} must be a multiple of the number of ranks ({world}): it is the \
             global batch, cut into one equal shard per rank",
            cfg.batch_size
        )));
    }
    if data.len() < cfg.batch_size {
        return Err(Error::Config(format!(
            "batch_size = {} is larger than the data set ({} images)",
            cfg.batch_size,
            data.len()
        )));
    }
    let base = crate::device::parse(&cfg.device)?;
    base.seed(cfg.seed);
    let device = crate::device::training(&base);
    let info = methods::find(&cfg.method)?;
    let mut method = (info.build)(cfg, data.channels, &device)?;
    let mut opt = Optimizer::new(cfg.optim.clone());

    let per_epoch = Loader::batches_per_epoch(data.len(), cfg.batch_size) as u64;
    let total = per_epoch * cfg.epochs as u64;
    let sched = WarmupCosine {
        lr: cfg.schedule.lr,
        final_lr: cfg.schedule.final_lr,
        warmup_steps: (cfg.schedule.warmup_epochs * per_epoch as f64).round() as u64,
        total_steps: total,
    };

    if primary {
        std::fs::create_dir_all(&opts.out_dir).map_err(|e| Error::io(&opts.out_dir, e))?;
        checkpoint::remove_stale_temporaries(&opts.out_dir);
    }
    let ckpt_path = opts.out_dir.join(TRAIN_CKPT);
    let mut step = 0u64;
    let resuming = opts.resume && ckpt_path.exists();
    if let (Some(init), false) = (&cfg.init_from, resuming) {
        init_backbone(method.as_mut(), init)?;
    }
    method.prepare(&data, !resuming)?;
    if resuming {
        step = restore(&ckpt_path, method.as_mut(), &mut opt, &base)?;
        tracing::info!("resumed from {} at step {step}", ckpt_path.display());
    }
    if world > 1 {
        // Every rank starts from rank 0's weights (and banks, queues).
        let same = crate::dist::broadcast_tensors(method.tensors())?;
        method.load_tensors(&same.into_iter().collect(), &opts.out_dir)?;
        tracing::info!(
            "data-parallel over {}: rank {rank}, {} images per rank and step",
            crate::dist::world().describe(),
            cfg.batch_size / world
        );
    }
    let metrics_path = opts.out_dir.join("metrics.jsonl");
    let mut metrics = if primary {
        checkpoint::write_atomic(&opts.out_dir.join("config.toml"), cfg.to_toml().as_bytes())?;
        Some(open_metrics(&metrics_path, step)?)
    } else {
        None
    };

    let end = if cfg.stop_after_steps > 0 {
        total.min(cfg.stop_after_steps)
    } else {
        total
    };
    let loader = Loader::spawn(
        data.clone(),
        method.views(),
        LoaderConfig {
            batch_size: cfg.batch_size,
            seed: cfg.seed,
            start_epoch: (step / per_epoch) as usize,
            start_batch: (step % per_epoch) as usize,
            prefetch: 3,
            workers: cfg.loader_workers,
            shard: (rank, world),
        },
    );
    let bar = progress_bar(opts.progress && primary, end.saturating_sub(step));
    if cfg.keep_epoch_snapshots && step == 0 && primary {
        // The untrained model, so curves start from the random-init score.
        save(&opts.out_dir, cfg, method.as_ref(), &opt, 0)?;
        snapshot(&opts.out_dir, 0, per_epoch, 0.0)?;
    }
    let start = Instant::now();
    let first_step = step;
    let mut losses = Vec::new();
    let mut saved_at = step;
    let mut last_save = Instant::now();
    let (mut bad_since_save, mut skipped) = (0usize, 0u64);
    let mut comm_total = 0.0;
    crate::dist::take_comm_seconds();
    for batch in loader {
        if step >= end {
            break;
        }
        let lr = sched.at(step);
        let out = match method.train_step(&batch, &mut opt, lr) {
            Ok(out) => out,
            Err(Error::NonFinite { step: at, what })
                if cfg.on_nonfinite != NonFinitePolicy::Stop =>
            {
                bad_since_save += 1;
                if bad_since_save > MAX_BAD_STEPS {
                    return Err(Error::NonFinite {
                        step: at,
                        what: format!(
                            "{what} ({bad_since_save} bad steps since the last checkpoint, giving up)"
                        ),
                    });
                }
                if cfg.on_nonfinite == NonFinitePolicy::Rollback && ckpt_path.exists() {
                    step = restore(&ckpt_path, method.as_mut(), &mut opt, &base)?;
                    tracing::warn!(
                        "step {at}: {what}; rolled back to the checkpoint at step {step}"
                    );
                } else {
                    tracing::warn!("step {at}: {what}; batch skipped");
                }
                skipped += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        step += 1;
        method.after_step(&methods::StepInfo {
            step,
            total_steps: total,
            epoch: batch.epoch,
            steps_per_epoch: per_epoch,
        });
        losses.push(out.loss);
        let comm_s = crate::dist::take_comm_seconds();
        comm_total += comm_s;
        let elapsed = start.elapsed().as_secs_f64();
        let rate = ((step - first_step) * cfg.batch_size as u64) as f64 / elapsed.max(1e-9);
        bar.set_message(format!("loss {:.4}  lr {lr:.4}  {rate:.0} img/s", out.loss));
        bar.inc(1);
        // Per-epoch summaries (`epoch_*` terms) are always written.
        let summary = out.terms.iter().any(|(k, _)| k.starts_with("epoch_"));
        if let Some(metrics) = metrics.as_mut()
            && (step % cfg.log_every == 0 || step == end || summary)
        {
            let mut line = serde_json::json!({
                "step": step, "epoch": batch.epoch, "loss": out.loss, "lr": lr,
                "images_per_s": rate, "elapsed_s": elapsed,
            });
            if world > 1 {
                line["ranks"] = serde_json::json!(world);
                line["comm_s"] = serde_json::json!(comm_s);
            }
            for (k, v) in &out.terms {
                line[k] = serde_json::json!(v);
            }
            // One write per record, so that a kill leaves whole lines or a torn last one,
            // which `open_metrics` drops on resume.
            metrics
                .write_all(format!("{line}\n").as_bytes())
                .map_err(|e| Error::io(&metrics_path, e))?;
        }
        let epoch_done =
            step % per_epoch == 0 && (step / per_epoch) % cfg.checkpoint_every_epochs as u64 == 0;
        let steps_due = cfg.checkpoint_every_steps > 0 && step % cfg.checkpoint_every_steps == 0;
        let mut minutes_due = cfg.checkpoint_every_minutes > 0.0
            && last_save.elapsed().as_secs_f64() >= 60.0 * cfg.checkpoint_every_minutes;
        if world > 1 && cfg.checkpoint_every_minutes > 0.0 {
            // The ranks decide alike: due when any rank's clock says so.
            let mut flag = [minutes_due as u8 as f32];
            crate::dist::all_reduce_sum(&mut flag);
            minutes_due = flag[0] > 0.0;
        }
        if epoch_done || step == end || steps_due || minutes_due {
            if primary {
                save(&opts.out_dir, cfg, method.as_ref(), &opt, step)?;
            }
            saved_at = step;
            last_save = Instant::now();
            bad_since_save = 0;
            if cfg.keep_epoch_snapshots && primary && (epoch_done || step == end) {
                snapshot(
                    &opts.out_dir,
                    step,
                    per_epoch,
                    start.elapsed().as_secs_f64(),
                )?;
            }
        }
    }
    if saved_at != step && primary {
        save(&opts.out_dir, cfg, method.as_ref(), &opt, step)?;
    }
    bar.finish_and_clear();
    let wall_s = start.elapsed().as_secs_f64();
    if primary {
        for p in method.write_previews(&data, &opts.out_dir)? {
            tracing::info!("wrote {}", p.display());
        }
    }
    let images_per_s = ((step - first_step) * cfg.batch_size as u64) as f64 / wall_s.max(1e-9);
    Ok(TrainOutcome {
        method,
        steps: step,
        losses,
        wall_s,
        images_per_s,
        skipped_batches: skipped,
        comm_s: comm_total,
    })
}

/// Replaces the method's backbone tensors with those of the checkpoint at `path`.
fn init_backbone(method: &mut dyn Method, path: &Path) -> Result<()> {
    let to = method.backbone_prefix();
    let mut all: HashMap<String, HostParam> = method.tensors().into_iter().collect();
    let mut found = 0;
    let mut mismatched = Vec::new();
    for (rest, v) in checkpoint::load_backbone_tensors(path)? {
        let name = format!("{to}{rest}");
        match all.get(&name) {
            Some(cur) if cur.shape == v.shape => {
                all.insert(name, v);
                found += 1;
            }
            Some(cur) => mismatched.push(format!("{rest} is {:?}, not {:?}", v.shape, cur.shape)),
            None => {}
        }
    }
    let want = all.keys().filter(|k| k.starts_with(to)).count();
    if found != want {
        mismatched.sort();
        mismatched.truncate(3);
        return Err(Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!(
                "holds {found} of the {want} backbone tensors this run needs (another backbone or width?){}{}",
                if mismatched.is_empty() { "" } else { "; " },
                mismatched.join("; ")
            ),
        });
    }
    method.load_tensors(&all, path)
}

/// One line of `snapshots.jsonl`: a kept model and when training reached it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// Optimizer steps done.
    pub step: u64,
    /// Epochs done (fractional for a run stopped mid-epoch).
    pub epoch: f64,
    /// Training wall time of this process when it was saved, in seconds.
    pub elapsed_s: f64,
    /// File name of the model, beside `snapshots.jsonl`.
    pub file: String,
}

/// The models listed in `dir/snapshots.jsonl` (written when `keep_epoch_snapshots` is on), in
/// the order they were saved; an error names the file when it is missing or a line is bad.
pub fn read_snapshots(dir: &Path) -> Result<Vec<Snapshot>> {
    let path = dir.join("snapshots.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| Error::format(&path, e.to_string())))
        .collect()
}

fn snapshot(dir: &Path, step: u64, per_epoch: u64, elapsed_s: f64) -> Result<()> {
    let file = format!("step-{step}.safetensors");
    let bytes =
        std::fs::read(dir.join(MODEL_CKPT)).map_err(|e| Error::io(dir.join(MODEL_CKPT), e))?;
    checkpoint::write_atomic(&dir.join(&file), &bytes)?;
    let line = Snapshot {
        step,
        epoch: step as f64 / per_epoch as f64,
        elapsed_s,
        file,
    };
    let path = dir.join("snapshots.jsonl");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    writeln!(f, "{}", serde_json::to_string(&line).expect("serializable"))
        .map_err(|e| Error::io(&path, e))
}

fn progress_bar(show: bool, len: u64) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]",
        )
        .expect("valid template"),
    );
    bar
}

fn save(
    dir: &Path,
    cfg: &RunConfig,
    method: &dyn Method,
    opt: &Optimizer,
    step: u64,
) -> Result<()> {
    let model = method.tensors();
    // Never write a checkpoint that holds NaN or infinity: it would poison every resume.
    if let Some((name, _)) = model
        .iter()
        .find(|(_, t)| t.data.iter().any(|v| !v.is_finite()))
    {
        return Err(Error::NonFinite {
            step,
            what: format!("tensor '{name}' holds NaN or infinity; checkpoint not written"),
        });
    }
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "selfsup".to_string());
    meta.insert("method".to_string(), cfg.method.clone());
    meta.insert(
        "backbone".to_string(),
        format!("{:?}", cfg.backbone.kind).to_lowercase(),
    );
    meta.insert("step".to_string(), step.to_string());
    meta.insert(
        "backbone_prefix".to_string(),
        method.backbone_prefix().to_string(),
    );
    let mut full = model.clone();
    for (path, slots) in &opt.state {
        for (i, t) in slots.iter().enumerate() {
            let data: Vec<f32> = t
                .to_data()
                .convert::<f32>()
                .try_to_vec()
                .expect("f32 state");
            full.insert(
                format!("optim.{path}.{i}"),
                HostParam {
                    shape: vec![data.len()],
                    data,
                },
            );
        }
    }
    let mut full_meta = meta.clone();
    full_meta.insert("optimizer_steps".to_string(), opt.steps.to_string());
    checkpoint::save(&dir.join(TRAIN_CKPT), &full, full_meta)?;
    checkpoint::save(&dir.join(MODEL_CKPT), &model, meta)
}

fn restore(
    path: &Path,
    method: &mut dyn Method,
    opt: &mut Optimizer,
    base: &burn::tensor::Device,
) -> Result<u64> {
    let (tensors, meta) = checkpoint::load(path)?;
    let get = |k: &str| -> Result<u64> {
        meta.get(k)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::Checkpoint {
                path: path.to_path_buf(),
                message: format!("metadata '{k}' missing"),
            })
    };
    let step = get("step")?;
    opt.steps = get("optimizer_steps")?;
    if let Some(m) = meta.get("method")
        && m != method.name()
    {
        return Err(Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!(
                "was written by method '{m}', this run is '{}'",
                method.name()
            ),
        });
    }
    let (model, optim): (HashMap<_, _>, HashMap<_, _>) = tensors
        .into_iter()
        .partition(|(k, _)| !k.starts_with("optim."));
    method.load_tensors(&model, path)?;
    let mut slots: BTreeMap<String, Vec<(usize, HostParam)>> = BTreeMap::new();
    for (k, v) in optim {
        let rest = &k["optim.".len()..];
        let (p, i) = rest.rsplit_once('.').unwrap_or((rest, "0"));
        slots
            .entry(p.to_string())
            .or_default()
            .push((i.parse().unwrap_or(0), v));
    }
    opt.state.clear();
    for (p, mut v) in slots {
        v.sort_by_key(|(i, _)| *i);
        let ts = v
            .into_iter()
            .map(|(_, h)| {
                let n = h.data.len();
                burn::tensor::Tensor::<1>::from_data(
                    burn::tensor::TensorData::new(h.data, [n]),
                    base,
                )
            })
            .collect();
        opt.state.insert(p, ts);
    }
    Ok(step)
}

/// Opens `metrics.jsonl` for appending from step `from_step` (the resumed checkpoint's, 0 for
/// a fresh start) after repairing what an earlier run in the folder left: a torn last line
/// (the process was killed mid-write) and the records past `from_step`, which this run logs
/// again, are dropped.
fn open_metrics(path: &Path, from_step: u64) -> Result<std::fs::File> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let kept = kept_metric_lines(&text, from_step);
        if kept.len() != text.len() {
            checkpoint::write_atomic(path, kept.as_bytes())?;
        }
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

/// The complete, parseable records of a metrics log up to step `from_step`.
fn kept_metric_lines(text: &str, from_step: u64) -> String {
    let mut kept = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if !line.ends_with('\n') {
            break; // torn by a kill
        }
        let Ok(record) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if record.get("step").and_then(|s| s.as_u64()) > Some(from_step) {
            continue;
        }
        kept.push_str(line);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::kept_metric_lines;

    #[test]
    fn a_killed_runs_metrics_lose_the_torn_line_and_the_steps_after_the_checkpoint() {
        let log = "{\"step\":1}\n{\"step\":2}\nnot json\n{\"step\":3}\n{\"step\":4,\"lo";
        assert_eq!(
            kept_metric_lines(log, 3),
            "{\"step\":1}\n{\"step\":2}\n{\"step\":3}\n"
        );
        assert_eq!(kept_metric_lines(log, 2), "{\"step\":1}\n{\"step\":2}\n");
        // A fresh start in a used folder begins a new log.
        assert_eq!(kept_metric_lines(log, 0), "");
        assert_eq!(kept_metric_lines("", 2), "");
    }
}
