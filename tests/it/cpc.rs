//! CPC: the context network is causal over rows, and the method learns.

use burn::prelude::*;
use selfsup::config::RunConfig;
use selfsup::data::DataSource;
use std::sync::Arc;

#[test]
fn cpc_context_sees_only_rows_above_and_its_own() {
    use selfsup::methods::contrastive::cpc::ContextNet;
    let device = Device::flex();
    device.seed(4);
    let net = ContextNet::new(8, &device);
    let z = Tensor::<4>::random(
        [1, 8, 4, 4],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    // Change row 3 only: rows 0-2 of the context must not move; row 3 must.
    let changed = z.clone().slice_assign(
        [0..1, 0..8, 3..4, 0..4],
        Tensor::ones([1, 8, 1, 4], &device) * 5.0,
    );
    let a: Vec<f32> = net
        .forward(z)
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    let b: Vec<f32> = net
        .forward(changed)
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    for c in 0..8 {
        for i in 0..4 {
            for j in 0..4 {
                let k = c * 16 + i * 4 + j;
                if i < 3 {
                    assert_eq!(a[k], b[k], "context row {i} saw row 3");
                }
            }
        }
    }
    assert!((0..8).any(|c| (0..4).any(|j| a[c * 16 + 12 + j] != b[c * 16 + 12 + j])));
}

#[test]
fn cpc_learns() {
    let splits = DataSource::Embedded.load().unwrap();
    let data = Arc::new(splits.train.take(2048));
    let mut cfg = RunConfig {
        method: "cpc".into(),
        epochs: 4,
        batch_size: 128,
        log_every: 1,
        ..RunConfig::default()
    };
    cfg.backbone.width = 0.5;
    cfg.schedule.lr = 1.0;
    let dir = tempfile::tempdir().unwrap();
    let out = crate::pretrain_in(&cfg, data.clone(), dir.path(), false);
    crate::assert_loss_falls("CPC", &out.losses, 0, 0.3);
    // The held-out claim is CPC's own task: predicting the code one row below among all
    // codes of a 64-image batch, against the untrained network; binomial SE on the images
    // (each image's predictions count once: conservative).
    let images = 1024;
    let test = crate::fashion_test();
    let get = |m: &dyn selfsup::methods::Method| {
        let all = m.pretext_metrics(test, images);
        all.iter()
            .find(|(k, _)| k == "prediction_accuracy")
            .unwrap()
            .1
    };
    let trained = get(out.method.as_ref());
    let untrained = get(crate::untrained_method(&cfg, &data).as_ref());
    crate::margin::assert_above(
        "CPC held-out prediction accuracy over untrained",
        trained,
        untrained,
        crate::margin::se_two_accuracies(trained, untrained, images),
        0.0,
    );
    crate::print_knn_against_random_init(
        "CPC",
        &out.method.backbone(),
        &cfg,
        &data,
        crate::fashion_test(),
    );
}
