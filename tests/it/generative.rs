//! Autoencoder, VAE and BiGAN: the KL term and the reconstruction loss against hand-computed
//! values, all three learning on real data (BiGAN with ALICE's cycle term), and BiGAN's
//! mechanics.

use burn::prelude::*;
use selfsup::config::RunConfig;
use selfsup::data::DataSource;
use selfsup::methods::generative::autoencoder::{
    Reconstruction, kl_to_unit_gaussian, reconstruction_loss,
};
use std::sync::Arc;

fn t2(v: &[f32], shape: [usize; 2]) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), &Device::flex())
}

#[test]
fn kl_matches_its_closed_form_on_hand_made_gaussians() {
    // KL(N(mu, s^2) || N(0, 1)) = 0.5 * (s^2 + mu^2 - 1 - ln s^2) per dimension.
    let mu = [0.0f32, 0.0, 1.0, -2.0];
    let var = [1.0f64, 4.0, 0.25, 1.0];
    let logvar: Vec<f32> = var.iter().map(|v| v.ln() as f32).collect();
    let per_dim: Vec<f64> = (0..4)
        .map(|i| 0.5 * (var[i] + (mu[i] as f64).powi(2) - 1.0 - var[i].ln()))
        .collect();
    // Two samples of two dimensions: 0 + 0.80685 and 0.81815 + 2.0; mean over the batch.
    let expected = (per_dim.iter().sum::<f64>()) / 2.0;
    assert!((expected - 1.8125).abs() < 1e-3);
    let kl: f32 = kl_to_unit_gaussian(t2(&mu, [2, 2]), t2(&logvar, [2, 2])).into_scalar();
    assert!((kl as f64 - expected).abs() < 1e-5, "{kl} vs {expected}");
    // The posterior equal to the prior costs nothing.
    let zero: f32 = kl_to_unit_gaussian(t2(&[0.0; 4], [2, 2]), t2(&[0.0; 4], [2, 2])).into_scalar();
    assert_eq!(zero, 0.0);
}

#[test]
fn reconstruction_losses_match_hand_computed_values() {
    let dev = Device::flex();
    let logits = [0.0f32, 2.0, -1.0, 3.0];
    let target = [0.5f32, 1.0, 0.0, 0.25];
    let l = Tensor::<4>::from_data(TensorData::new(logits.to_vec(), [1, 1, 2, 2]), &dev);
    let t = Tensor::<4>::from_data(TensorData::new(target.to_vec(), [1, 1, 2, 2]), &dev);
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    let bce: f64 = logits
        .iter()
        .zip(&target)
        .map(|(&x, &y)| {
            let p = sig(x as f64);
            -(y as f64 * p.ln() + (1.0 - y as f64) * (1.0 - p).ln())
        })
        .sum();
    let got: f32 = reconstruction_loss(Reconstruction::Bce, l.clone(), t.clone()).into_scalar();
    assert!((got as f64 - bce).abs() < 1e-4, "{got} vs {bce}");
    let l2: f64 = logits
        .iter()
        .zip(&target)
        .map(|(&x, &y)| (sig(x as f64) - y as f64).powi(2))
        .sum();
    let got: f32 = reconstruction_loss(Reconstruction::L2, l, t).into_scalar();
    assert!((got as f64 - l2).abs() < 1e-5);
}

fn learns(
    method: &str,
    epochs: usize,
) -> (Vec<(String, f64)>, std::path::PathBuf, tempfile::TempDir) {
    let splits = DataSource::Embedded.load().unwrap();
    let data = Arc::new(splits.train.take(2048));
    let test = splits.test.unwrap().take(1000);
    let mut cfg = crate::tiny_config(epochs);
    cfg = cfg.for_method(method);
    let dir = tempfile::tempdir().unwrap();
    let out = crate::pretrain_in(&cfg, data.clone(), dir.path(), false);
    crate::assert_loss_falls(method, &out.losses, 0, 50.0);
    let m = out.method.pretext_metrics(&test, 1000);
    println!("{method} on held-out images: {m:?}");
    let get = |k: &str| m.iter().find(|(n, _)| n == k).unwrap().1;
    // SE from the spread over 8 disjoint slices of the 1,000 images (batch means).
    let chunks = crate::margin::chunk_metrics(out.method.as_ref(), &test, 1000, 8);
    let se = crate::margin::se_over_chunks(&chunks, |g| {
        0.6 * g("mean_image_sse") - g("reconstruction_sse")
    });
    crate::margin::assert_below(
        &format!("{method} reconstruction SSE below 0.6 x the mean image's"),
        get("reconstruction_sse"),
        0.6 * get("mean_image_sse"),
        se,
        0.0,
    );
    crate::print_knn_against_random_init(
        method,
        &out.method.backbone(),
        &cfg,
        &data,
        crate::fashion_test(),
    );
    let path = dir.path().to_path_buf();
    (m, path, dir)
}

#[test]
fn autoencoder_learns_and_writes_reconstructions() {
    let (_, dir, _keep) = learns("autoencoder", 4);
    assert!(dir.join("autoencoder_reconstructions.png").exists());
}

#[test]
fn vae_learns_its_elbo_rises_and_it_writes_samples() {
    let (m, dir, _keep) = learns("vae", 4);
    assert!(
        m.iter()
            .any(|(k, v)| k == "negative_elbo_nats" && v.is_finite())
    );
    assert!(dir.join("vae_samples.png").exists() && dir.join("vae_reconstructions.png").exists());
    // The per-epoch ELBO rises; the KL weight warms up from 0 to 1 over the first epoch.
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let epochs: Vec<f64> = lines
        .iter()
        .filter_map(|l| l["epoch_elbo"].as_f64())
        .collect();
    println!("VAE mean training ELBO per epoch: {epochs:?}");
    assert!(epochs.len() >= 3, "{epochs:?}");
    // The last epoch's ELBO beats the first's by 3 SE: Welch's SE over the steps' ELBOs of
    // the two epochs.
    let of_epoch = |e: u64| -> Vec<f64> {
        lines
            .iter()
            .filter(|l| l["epoch"].as_u64() == Some(e))
            .filter_map(|l| l["elbo"].as_f64())
            .collect()
    };
    let last = lines.last().unwrap()["epoch"].as_u64().unwrap();
    let (first, final_) = (of_epoch(0), of_epoch(last));
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    crate::margin::assert_above(
        "VAE training ELBO, last epoch over the first",
        mean(&final_),
        mean(&first),
        crate::margin::se_two_means(&final_, &first),
        0.0,
    );
    let betas: Vec<f64> = lines.iter().map(|l| l["beta"].as_f64().unwrap()).collect();
    assert!(betas[0] < 0.1 && (betas[betas.len() - 1] - 1.0).abs() < 1e-6);
}

/// A small BiGAN run with the papers' optimizer: AdamW, lr 2e-4, beta1 0.5, no weight decay.
fn bigan_config(epochs: usize) -> RunConfig {
    let mut cfg = crate::tiny_config(epochs);
    cfg = cfg.for_method("bigan");
    cfg.optim.kind = selfsup::train::optim::OptimizerKind::AdamW;
    cfg.optim.beta1 = 0.5;
    cfg.optim.weight_decay = 0.0;
    cfg.schedule.lr = 2e-4;
    cfg.schedule.warmup_epochs = 0.0;
    cfg
}

/// BiGAN's alternating updates: one step moves the discriminator, the encoder and the
/// generator (each in its own half of the step), keeps the losses finite, and writes samples
/// and reconstructions; with BigBiGAN's unary scores and
/// ALICE's cycle term, the unary scores move too and the cycle term is logged. Bad settings are
/// errors that name them.
#[test]
fn bigan_updates_all_three_networks_and_writes_pictures() {
    let data = Arc::new(DataSource::Embedded.load().unwrap().train.take(256));
    let mut cfg = bigan_config(1);
    cfg.stop_after_steps = 2;
    let device = Device::flex();
    let info = selfsup::methods::find("bigan").unwrap();
    let mut variant = cfg.clone();
    variant
        .edit_method_settings(|c: &mut selfsup::methods::generative::bigan::BiganConfig| {
            c.unary_scores = true;
            c.cycle_weight = 1.0;
            c.discriminator_lr_scale = 0.5;
        })
        .unwrap();
    for (cfg, extra) in [
        (&cfg, &[][..]),
        (&variant, &["disc_image_score.", "disc_code."][..]),
    ] {
        device.seed(cfg.seed);
        let before = (info.build)(cfg, 1, &device.clone().autodiff())
            .unwrap()
            .tensors();
        let dir = tempfile::tempdir().unwrap();
        let out = crate::pretrain_in(cfg, data.clone(), dir.path(), false);
        assert!(out.losses.iter().all(|l| l.is_finite()));
        let after = out.method.tensors();
        let prefixes = [
            "backbone.",
            "encoder_head.",
            "generator.",
            "disc_image.",
            "disc_joint.",
        ];
        for prefix in prefixes.iter().chain(extra) {
            let moved = after
                .iter()
                .filter(|(k, _)| k.starts_with(prefix) && k.ends_with("weight"))
                .any(|(k, v)| v.data != before[k].data);
            assert!(moved, "{prefix} parameters should move");
        }
        assert_eq!(
            after.keys().any(|k| k.starts_with("disc_code.")),
            cfg.method_settings::<selfsup::methods::generative::bigan::BiganConfig>()
                .unwrap()
                .unary_scores
        );
        let logged = crate::logged_values(dir.path(), "cycle_loss");
        assert_eq!(
            !logged.is_empty(),
            cfg.method_settings::<selfsup::methods::generative::bigan::BiganConfig>()
                .unwrap()
                .cycle_weight
                > 0.0
        );
        assert!(logged.iter().all(|l| *l > 0.0 && *l < 1.0), "{logged:?}");
        assert!(dir.path().join("bigan_samples.png").exists());
        assert!(dir.path().join("bigan_reconstructions.png").exists());
    }
    for (field, set) in [
        (
            "discriminator_lr_scale",
            (|c: &mut selfsup::methods::generative::bigan::BiganConfig| {
                c.discriminator_lr_scale = 0.0
            }) as fn(&mut selfsup::methods::generative::bigan::BiganConfig),
        ),
        ("cycle_weight", |c| c.cycle_weight = -1.0),
        ("discriminator_dropout", |c| c.discriminator_dropout = 1.0),
    ] {
        let mut bad = cfg.clone();
        bad.edit_method_settings(set).unwrap();
        let err = (info.build)(&bad, 1, &device.clone().autodiff())
            .err()
            .expect("a bad setting is an error")
            .to_string();
        assert!(err.contains(field), "{err}");
    }
}

/// BiGAN with ALICE's cycle term learns: on 2,048 images, the cycle loss falls and held-out
/// cycles `G(E(x))` beat the mean image. The cycle weight is 30: at weight 10 the held-out
/// cycles beat the mean image by 24 SE under one seed offset and lost to it under another
/// (76.5 against 67.9); the encoder's k-NN against random init is printed, not claimed.
#[test]
fn bigan_with_the_cycle_term_learns() {
    let splits = DataSource::Embedded.load().unwrap();
    let data = Arc::new(splits.train.take(2048));
    let test = splits.test.unwrap().take(1000);
    let mut cfg = bigan_config(2);
    cfg.edit_method_settings(|c: &mut selfsup::methods::generative::bigan::BiganConfig| {
        c.cycle_weight = 30.0;
        c.discriminator_dropout = 0.3;
        c.discriminator_width = 0.25;
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = crate::pretrain_in(&cfg, data.clone(), dir.path(), false);
    let cycle: Vec<f32> = crate::logged_values(dir.path(), "cycle_loss")
        .into_iter()
        .map(|v| v as f32)
        .collect();
    crate::assert_loss_falls("BiGAN cycle", &cycle, 0, 0.05);
    let m = out.method.pretext_metrics(&test, 1000);
    println!("BiGAN + cycle on held-out images: {m:?}");
    let get = |k: &str| m.iter().find(|(n, _)| n == k).unwrap().1;
    // SE from the spread over 8 disjoint slices of the 1,000 images (batch means).
    let chunks = crate::margin::chunk_metrics(out.method.as_ref(), &test, 1000, 8);
    let se =
        crate::margin::se_over_chunks(&chunks, |g| g("mean_image_sse") - g("reconstruction_sse"));
    crate::margin::assert_below(
        "BiGAN + cycle held-out cycle SSE below the mean image's",
        get("reconstruction_sse"),
        get("mean_image_sse"),
        se,
        0.0,
    );
    let test = crate::fashion_test();
    crate::print_knn_against_random_init(
        "bigan + cycle",
        &out.method.backbone(),
        &cfg,
        &data,
        test,
    );
}

/// MAE on a small ViT (patch 7 on 28 px: 16 patches, 4 visible) for 4 epochs of 2,048
/// images: on 1,000 held-out images, its error on the hidden patches (normalized pixels) is
/// below that of the best constant, the mean hidden patch, by at least 3 SE (the SE of the
/// per-image difference of the two errors, over the images); the 2-ranks claim is not made.
#[test]
fn mae_reconstructs_hidden_patches_better_than_the_mean_patch() {
    let splits = selfsup::data::DataSource::Embedded.load().unwrap();
    let data = std::sync::Arc::new(splits.train.take(2048));
    let mut cfg = crate::tiny_config(4).for_method("mae");
    for s in [
        "backbone.kind=\"vit_tiny\"",
        "backbone.vit.dim=64",
        "backbone.vit.depth=2",
        "backbone.vit.heads=4",
        "backbone.vit.patch=7",
        "backbone.vit.image_size=28",
        "optim.kind=\"adamw\"",
        "optim.weight_decay=0.05",
        "schedule.lr=2e-3",
    ] {
        cfg.set(s).unwrap();
    }
    cfg.fit_views_to(&data);
    let dir = tempfile::tempdir().unwrap();
    let out = crate::pretrain_in(&cfg, data, dir.path(), false);
    let test = splits.test.as_ref().unwrap();
    let m: std::collections::HashMap<String, f64> =
        out.method.pretext_metrics(test, 1000).into_iter().collect();
    let (model, constant, se) = (
        m["masked_patch_mse"],
        m["mean_patch_mse"],
        m["difference_se"],
    );
    println!(
        "MAE held-out hidden-patch error {model:.4} vs mean patch {constant:.4}: {:.1} SE",
        (constant - model) / se
    );
    assert!(
        constant - model > 3.0 * se,
        "MAE: {model} vs the mean patch's {constant} (SE {se})"
    );
}
