//! Integration tests, in one crate so burn is linked once.

mod audio;
mod audiovisual;
mod augment;
mod cli;
mod cpc;
mod data;
#[cfg(feature = "mpi")]
mod dist;
mod eval;
mod generative;
mod losses;
mod memory;
mod nets;
mod pretext;
mod pretext_tasks;
mod reliability;
mod swav;
mod train;
mod video;
mod video_tracking;

use std::path::PathBuf;

/// The shared real-data folder (`../shared/data` from the project root).
pub fn shared_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
}

/// k-NN top-1 (k = 20) on `test` with `train` as the labeled set: the pretrained backbone and
/// the same architecture at random init (seeded like the run).
pub fn knn_pretrained_vs_random(
    pretrained: &selfsup::nets::Backbone,
    cfg: &selfsup::config::RunConfig,
    train: &selfsup::data::Dataset,
    test: &selfsup::data::Dataset,
) -> (f64, f64) {
    use selfsup::eval::{self, knn};
    let score = |b: &selfsup::nets::Backbone| {
        let ftr = eval::extract_with(b, train, &cfg.views, cfg.readout(), 512);
        let fte = eval::extract_with(b, test, &cfg.views, cfg.readout(), 512);
        let p = knn::predict(
            &ftr,
            train.labels.as_ref().unwrap(),
            &fte,
            knn::KnnConfig {
                k: 20,
                temperature: 0.07,
            },
        );
        eval::accuracy(&p, test.labels.as_ref().unwrap())
    };
    let device = burn::tensor::Device::flex();
    device.seed(cfg.seed);
    let random = selfsup::nets::Backbone::new(&cfg.backbone, train.channels, &device);
    (score(pretrained), score(&random))
}

/// The `loss` of every line of `dir/metrics.jsonl`.
pub fn logged_losses(dir: &std::path::Path) -> Vec<f64> {
    let losses = logged_values(dir, "loss");
    assert!(!losses.is_empty(), "no losses in {}", dir.display());
    losses
}

/// The `key` values of `dir/metrics.jsonl`, from the lines that have one.
pub fn logged_values(dir: &std::path::Path, key: &str) -> Vec<f64> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()[key].as_f64())
        .collect()
}

/// `cfg`'s method at random init (seeded like the run), prepared on `train`: the baseline of
/// held-out pretext metrics.
pub fn untrained_method(
    cfg: &selfsup::config::RunConfig,
    train: &selfsup::data::Dataset,
) -> Box<dyn selfsup::methods::Method> {
    let device = burn::tensor::Device::flex();
    device.seed(cfg.seed);
    let info = selfsup::methods::find(&cfg.method).unwrap();
    let mut m = (info.build)(cfg, train.channels, &device).unwrap();
    m.prepare(train, true).unwrap();
    m
}

/// Pretrains `cfg` on `data` into `dir` (resuming from it when `resume`), without a progress bar.
pub fn pretrain_in(
    cfg: &selfsup::config::RunConfig,
    data: std::sync::Arc<selfsup::data::Dataset>,
    dir: &std::path::Path,
    resume: bool,
) -> selfsup::train::TrainOutcome {
    let opts = selfsup::train::TrainOptions {
        out_dir: dir.into(),
        resume,
        progress: false,
    };
    selfsup::train::pretrain(cfg, data, &opts).unwrap()
}

/// Asserts that the mean loss of the last 4 steps is below that of steps `from..from + 4` by
/// more than `margin`.
pub fn assert_loss_falls(method: &str, losses: &[f32], from: usize, margin: f32) {
    let head: f32 = losses[from..from + 4].iter().sum::<f32>() / 4.0;
    let tail: f32 = losses[losses.len() - 4..].iter().sum::<f32>() / 4.0;
    assert!(
        tail < head - margin,
        "{method} loss should fall by more than {margin}: steps {from}-{} {head:.3}, last steps {tail:.3}",
        from + 3
    );
}

/// Asserts that `pretrained` beats the same architecture at random init by more than one point
/// of k-NN top-1 on `test` (see [`knn_pretrained_vs_random`]).
pub fn assert_beats_random_init(
    method: &str,
    pretrained: &selfsup::nets::Backbone,
    cfg: &selfsup::config::RunConfig,
    train: &selfsup::data::Dataset,
    test: &selfsup::data::Dataset,
) {
    let (trained, random) = knn_pretrained_vs_random(pretrained, cfg, train, test);
    println!(
        "{method} k-NN top-1 on {} held-out images: pretrained {trained:.1} %, random init {random:.1} %",
        test.len()
    );
    assert!(
        trained > random + 1.0,
        "{method}: pretrained {trained:.1} % should beat random init {random:.1} %"
    );
}

/// A small, fast SimCLR run (quarter-width ConvNet, small head, batch 64, a log line per step).
pub fn tiny_config(epochs: usize) -> selfsup::config::RunConfig {
    let mut c = selfsup::config::RunConfig {
        epochs,
        batch_size: 64,
        log_every: 1,
        ..selfsup::config::RunConfig::default()
    };
    c.backbone.width = 0.25;
    c.simclr.proj_hidden = 64;
    c.simclr.proj_dim = 32;
    c.schedule.lr = 0.5;
    c
}
