//! Integration tests, in one crate so burn is linked once.

mod audio;
mod audiovisual;
mod augment;
mod cli;
mod cpc;
mod data;
mod demo;
#[cfg(feature = "mpi")]
mod dist;
mod eval;
mod generative;
#[cfg(any(feature = "vulkan", feature = "wgpu"))]
mod gpu;
mod losses;
mod margin;
mod memory;
mod nets;
mod pretext;
mod pretext_tasks;
mod reliability;
mod report;
mod resume;
mod siamese;
mod swav;
mod train;
mod video;
mod video_tracking;

use std::path::PathBuf;

/// The shared real-data folder (`../shared/data` from the project root).
pub fn shared_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
}

/// The 10,000 Fashion-MNIST test images (from `../shared/data`), loaded once: the held-out
/// set of the image learning tests. On 10,000 images the binomial SE of a k-NN accuracy near
/// 75 % is 0.43 points, so a 3 SE margin over random init is about 1.9 points (see
/// [`margin::se_two_accuracies`]); on the 1,000 embedded test images it would be 5.8.
pub fn fashion_test() -> &'static selfsup::data::Dataset {
    static TEST: std::sync::OnceLock<selfsup::data::Dataset> = std::sync::OnceLock::new();
    TEST.get_or_init(|| {
        let splits = selfsup::data::DataSource::Idx(shared_data().join("fashion-mnist"))
            .load()
            .unwrap();
        let test = splits.test.unwrap();
        assert_eq!(test.len(), 10_000);
        test
    })
}

/// The seed offset of the learning tests: `SELFSUP_TEST_SEED` (default 0).
pub fn seed_offset() -> u64 {
    match std::env::var("SELFSUP_TEST_SEED") {
        Ok(s) => s.parse().expect("SELFSUP_TEST_SEED is a whole number"),
        Err(_) => 0,
    }
}

/// `cfg` with [`seed_offset`] added to its seed: every learning run and its baseline go
/// through this, so `SELFSUP_TEST_SEED=N cargo test` reruns the suite under other seeds.
pub fn seeded(cfg: &selfsup::config::RunConfig) -> selfsup::config::RunConfig {
    selfsup::config::RunConfig {
        seed: cfg.seed + seed_offset(),
        ..cfg.clone()
    }
}

/// k-NN top-1 (k = 20) on `test` with `train` as the labeled set: the pretrained backbone and
/// the same architecture at random init (seeded like the run), as fractions. Features: the
/// vector the method trained ([`trained_vector`]; the wider default readout of evaluation
/// would cost more time than these printed figures are worth).
pub fn knn_pretrained_vs_random(
    pretrained: &selfsup::nn::Backbone,
    cfg: &selfsup::config::RunConfig,
    train: &selfsup::data::Dataset,
    test: &selfsup::data::Dataset,
) -> (f64, f64) {
    use selfsup::eval::{self, knn};
    let score = |b: &selfsup::nn::Backbone| {
        let ftr = eval::extract_with(b, train, &cfg.views, trained_vector(cfg), 512);
        let fte = eval::extract_with(b, test, &cfg.views, trained_vector(cfg), 512);
        let p = knn::predict(
            &ftr,
            train.labels.as_ref().unwrap(),
            &fte,
            knn::KnnConfig {
                k: 20,
                temperature: 0.07,
            },
        );
        eval::accuracy(&p, test.labels.as_ref().unwrap()) / 100.0
    };
    let device = burn::tensor::Device::flex();
    let random = selfsup::nn::Backbone::random_init(
        &cfg.backbone,
        train.channels,
        seeded(cfg).seed,
        &device,
    );
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
    let cfg = &seeded(cfg);
    device.seed(cfg.seed);
    let info = selfsup::methods::find(&cfg.method).unwrap();
    let mut m = (info.build)(cfg, train.channels, &device).unwrap();
    m.prepare(train, true).unwrap();
    m
}

/// Pretrains `cfg` (its seed offset by [`seed_offset`]) on `data` into `dir` (resuming from it
/// when `resume`), without a progress bar.
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
    selfsup::train::pretrain(&seeded(cfg), data, &opts).unwrap()
}

/// Asserts that the mean loss of the last `w` steps is below that of steps `from..from + w`
/// by more than `margin` and by at least 3 SE, `w` = a sixth of the run, clamped to 4..=16
/// steps. The SE is Welch's over the two windows ([`margin::se_two_means`]): the step-to-step
/// spread of the loss (batch sampling, augmentations), plus any trend inside a window, which
/// only makes it larger.
pub fn assert_loss_falls(method: &str, losses: &[f32], from: usize, margin: f32) {
    let w = ((losses.len() - from) / 6).clamp(4, 16);
    let head: Vec<f64> = losses[from..from + w].iter().map(|&l| l as f64).collect();
    let tail: Vec<f64> = losses[losses.len() - w..]
        .iter()
        .map(|&l| l as f64)
        .collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    margin::assert_below(
        &format!(
            "{method} loss, last {w} steps vs steps {from}-{}",
            from + w - 1
        ),
        mean(&tail),
        mean(&head),
        margin::se_two_means(&head, &tail),
        margin as f64,
    );
}

/// Images in each gallery of [`view_matching`]: chance is 1 in 10.
pub const GALLERY: usize = 10;

/// The readout of the vector a method trains: what its loss sees, with global features read
/// as the last stage pooled to one vector.
pub fn trained_vector(cfg: &selfsup::config::RunConfig) -> selfsup::eval::Readout {
    match selfsup::methods::trained_readout(cfg) {
        selfsup::eval::Readout::Global(_) => {
            selfsup::eval::Readout::Global(selfsup::nn::FeaturesConfig {
                stages: 1,
                grid: 1,
                ..Default::default()
            })
        }
        other => other,
    }
}

/// Held-out view matching: for each of the first `n` images of `test`, two views made by the
/// run's augmentations (`cfg.views`, seeded); the images are cut into galleries of
/// [`GALLERY`], and the score is the fraction of first views whose nearest second view in
/// their gallery (cosine of the frozen backbone's features) is their own. This is what
/// instance-discrimination methods learn (features invariant to the augmentations and
/// distinct across images), measured on images they never saw. The features are the vector
/// the method trained (the last stage pooled globally; CPC's mean over its patch grid), not
/// the wider default readout of evaluation: the claim is about what the method optimized,
/// and the margins of `docs/testing.md` were measured on it.
pub fn view_matching(
    backbone: &selfsup::nn::Backbone,
    cfg: &selfsup::config::RunConfig,
    test: &selfsup::data::Dataset,
    n: usize,
) -> f64 {
    use burn::module::Module;
    use burn::tensor::Tensor;
    let plain = backbone.valid();
    let device = selfsup::device::of(&plain);
    let spec = selfsup::data::loader::ViewSpec {
        views: vec![cfg.views.clone(), cfg.views.clone()],
    };
    let n = n.min(test.len()) / GALLERY * GALLERY;
    let indices: Vec<usize> = (0..n).collect();
    let views = selfsup::data::loader::make_batch(test, &spec, &indices, 0x71E3, 0, 0);
    let embed = |v: &selfsup::data::loader::HostTensor| -> Tensor<2> {
        let f = selfsup::eval::read_features(&plain, v, trained_vector(cfg), &device);
        let norm = f
            .clone()
            .powf_scalar(2.0)
            .sum_dim(1)
            .sqrt()
            .clamp_min(1e-12);
        f / norm
    };
    let (a, b) = (embed(&views[0]), embed(&views[1]));
    let sim = selfsup::device::host_values(a.matmul(b.transpose()));
    let hits = (0..n)
        .filter(|&i| {
            let first = i / GALLERY * GALLERY;
            let best = (first..first + GALLERY)
                .max_by(|&p, &q| sim[i * n + p].total_cmp(&sim[i * n + q]))
                .unwrap();
            best == i
        })
        .count();
    hits as f64 / n as f64
}

/// Asserts that `pretrained` matches held-out views ([`view_matching`] on 2,000 of the
/// 10,000 test images) better than the same architecture at random init (seeded like the
/// run), by at least 3 SE of the difference of the two fractions
/// ([`margin::se_two_accuracies`], n = 2,000).
pub fn assert_matches_views_better_than_random_init(
    method: &str,
    pretrained: &selfsup::nn::Backbone,
    cfg: &selfsup::config::RunConfig,
    channels: usize,
) {
    let n = 2000;
    let device = burn::tensor::Device::flex();
    let random =
        selfsup::nn::Backbone::random_init(&cfg.backbone, channels, seeded(cfg).seed, &device);
    let test = fashion_test();
    let (trained, untrained) = (
        view_matching(pretrained, cfg, test, n),
        view_matching(&random, cfg, test, n),
    );
    margin::assert_above(
        &format!("{method} held-out view matching over random init"),
        trained,
        untrained,
        margin::se_two_accuracies(trained, untrained, n),
        0.0,
    );
}

/// The checks of an instance-discrimination method's backbone trained on the grey images
/// `train`: held-out view matching over random init, asserted by 3 SE
/// ([`assert_matches_views_better_than_random_init`]), and k-NN on the 10,000 test images
/// printed ([`print_knn_against_random_init`]).
pub fn assert_instance_learning(
    method: &str,
    pretrained: &selfsup::nn::Backbone,
    cfg: &selfsup::config::RunConfig,
    train: &selfsup::data::Dataset,
) {
    assert_matches_views_better_than_random_init(method, pretrained, cfg, 1);
    print_knn_against_random_init(method, pretrained, cfg, train, fashion_test());
}

/// Prints `pretrained`'s k-NN top-1 on `test` next to random init's without asserting it:
/// for methods whose k-NN gain at test scale is within the spread over seeds (see
/// `docs/testing.md`).
pub fn print_knn_against_random_init(
    method: &str,
    pretrained: &selfsup::nn::Backbone,
    cfg: &selfsup::config::RunConfig,
    train: &selfsup::data::Dataset,
    test: &selfsup::data::Dataset,
) {
    let (trained, random) = knn_pretrained_vs_random(pretrained, cfg, train, test);
    let se = margin::se_two_accuracies(trained, random, test.len());
    println!(
        "{method} k-NN top-1 on {} held-out images (not claimed): pretrained {:.1} %, random init {:.1} %, gap {:.1} SE",
        test.len(),
        100.0 * trained,
        100.0 * random,
        (trained - random) / se
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
    c.edit_method_settings(
        |c: &mut selfsup::methods::contrastive::simclr::SimClrConfig| {
            c.proj_hidden = 64;
            c.proj_dim = 32;
        },
    )
    .unwrap();
    c.schedule.lr = 0.5;
    c
}
