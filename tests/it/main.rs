//! Integration tests, in one crate so burn is linked once.

mod augment;
mod cli;
mod data;
mod losses;
mod nets;
mod swav;
mod train;

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
        let ftr = eval::extract(b, train, &cfg.views, 512);
        let fte = eval::extract(b, test, &cfg.views, 512);
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
