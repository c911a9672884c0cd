//! Optimizers, schedule, checkpoints, exact resumption, and a small learning test.

use burn::nn::Linear;
use burn::optim::GradientsParams;
use burn::prelude::*;
use selfsup::config::RunConfig;
use selfsup::data::{DataSource, Dataset};
use selfsup::nn::{Backbone, BackboneConfig, BackboneKind};
use selfsup::train::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use selfsup::train::schedule::WarmupCosine;
use selfsup::train::{self, TrainOptions, checkpoint};
use std::sync::Arc;

fn weights(l: &Linear) -> Vec<f32> {
    l.weight
        .val()
        .into_data()
        .convert::<f32>()
        .try_to_vec()
        .unwrap()
}

/// One step on loss = sum(x W): the gradient of W is x (per output column).
fn step(opt: &mut Optimizer, l: Linear, x: &[f32], lr: f64) -> Linear {
    let device = Device::flex().autodiff();
    let input = Tensor::<2>::from_data(TensorData::new(x.to_vec(), [1, x.len()]), &device);
    let loss = l.forward(input).sum();
    let grads = GradientsParams::from_grads(loss.backward(), &l);
    opt.step(lr, l, grads)
}

fn linear() -> Linear {
    let device = Device::flex().autodiff();
    let w =
        Tensor::<2>::from_data(TensorData::new(vec![1.0f32, -2.0], [2, 1]), &device).require_grad();
    Linear {
        weight: burn::module::Param::from_tensor(w),
        bias: None,
    }
}

#[test]
fn sgd_momentum_matches_pytorch_formula() {
    let cfg = OptimizerConfig {
        kind: OptimizerKind::Sgd,
        momentum: 0.9,
        weight_decay: 0.1,
        ..Default::default()
    };
    let mut opt = Optimizer::new(cfg);
    let l = step(&mut opt, linear(), &[0.5, 3.0], 0.1);
    // g = x + wd w = [0.6, 2.8]; buf = g; w = w - lr buf.
    let w1 = [1.0 - 0.1 * 0.6, -2.0 - 0.1 * 2.8];
    let got = weights(&l);
    assert!(
        (got[0] - w1[0]).abs() < 1e-6 && (got[1] - w1[1]).abs() < 1e-6,
        "{got:?}"
    );
    let l = step(&mut opt, l, &[0.5, 3.0], 0.1);
    let g2 = [0.5 + 0.1 * w1[0], 3.0 + 0.1 * w1[1]];
    let buf = [0.9 * 0.6 + g2[0], 0.9 * 2.8 + g2[1]];
    let got = weights(&l);
    assert!(
        (got[0] - (w1[0] - 0.1 * buf[0])).abs() < 1e-5
            && (got[1] - (w1[1] - 0.1 * buf[1])).abs() < 1e-5,
        "{got:?}"
    );
}

#[test]
fn lars_scales_by_trust_ratio_and_adamw_steps_by_lr() {
    let cfg = OptimizerConfig {
        kind: OptimizerKind::Lars,
        momentum: 0.0,
        weight_decay: 0.0,
        lars_eta: 0.02,
        ..Default::default()
    };
    let mut opt = Optimizer::new(cfg);
    let l = step(&mut opt, linear(), &[3.0, 4.0], 1.0);
    // trust = eta |w| / |g| = 0.02 sqrt(5) / 5.
    let t = 0.02 * 5f32.sqrt() / 5.0;
    let got = weights(&l);
    assert!(
        (got[0] - (1.0 - t * 3.0)).abs() < 1e-6 && (got[1] - (-2.0 - t * 4.0)).abs() < 1e-6,
        "{got:?}"
    );
    // Clipped (LARC): the layer's rate is min(trust, lr). At lr 1 the trust ratio is the
    // smaller and the step is the unclipped one; at lr 0.005 < trust the step is lr * g.
    for (lr, rate) in [(1.0, t), (0.005, 0.005)] {
        let mut opt = Optimizer::new(OptimizerConfig {
            lars_clip: true,
            ..cfg
        });
        let got = weights(&step(&mut opt, linear(), &[3.0, 4.0], lr));
        assert!(
            (got[0] - (1.0 - rate * 3.0)).abs() < 1e-6
                && (got[1] - (-2.0 - rate * 4.0)).abs() < 1e-6,
            "lr {lr}: {got:?}"
        );
    }
    let cfg = OptimizerConfig {
        kind: OptimizerKind::AdamW,
        weight_decay: 0.5,
        ..Default::default()
    };
    let mut opt = Optimizer::new(cfg);
    let l = step(&mut opt, linear(), &[3.0, -4.0], 0.01);
    // First Adam step moves each weight by lr * sign(g); decoupled decay subtracts lr wd w.
    let got = weights(&l);
    let want = [
        1.0 - 0.01 * 0.5 * 1.0 - 0.01,
        -2.0 + 0.01 * 0.5 * 2.0 + 0.01,
    ];
    assert!(
        (got[0] - want[0]).abs() < 1e-5 && (got[1] - want[1]).abs() < 1e-5,
        "{got:?} vs {want:?}"
    );
}

#[test]
fn warmup_cosine_schedule() {
    let s = WarmupCosine {
        lr: 1.0,
        final_lr: 0.1,
        warmup_steps: 4,
        total_steps: 14,
    };
    assert!((s.at(0) - 0.25).abs() < 1e-12 && (s.at(3) - 1.0).abs() < 1e-12);
    assert!((s.at(4) - 1.0).abs() < 1e-12);
    assert!((s.at(9) - 0.55).abs() < 1e-12);
    assert!((s.at(14) - 0.1).abs() < 1e-12);
}

#[test]
fn checkpoint_roundtrip_and_mismatch_errors() {
    let device = Device::flex();
    let cfg = BackboneConfig {
        kind: BackboneKind::ConvNet,
        width: 0.25,
        ..Default::default()
    };
    let a = Backbone::new(&cfg, 1, &device);
    let tensors = checkpoint::collect(&a);
    assert!(
        tensors.contains_key("blocks.0.conv.weight")
            && tensors.contains_key("blocks.3.bn.running_var"),
        "{:?}",
        tensors.keys()
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    checkpoint::save(&path, &tensors, Default::default()).unwrap();
    let (back, _) = checkpoint::load(&path).unwrap();
    let b = checkpoint::apply(Backbone::new(&cfg, 1, &device), &back, &path).unwrap();
    assert_eq!(checkpoint::collect(&b), tensors);
    // Another backbone: a clear error naming missing and mis-shaped tensors.
    let other = BackboneConfig {
        kind: BackboneKind::ResNet18,
        ..Default::default()
    };
    let e = checkpoint::apply(Backbone::new(&other, 1, &device), &back, &path)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("m.safetensors") && e.contains("missing tensor 'conv1.weight'"),
        "{e}"
    );
    let wider = BackboneConfig {
        width: 0.5,
        ..cfg.clone()
    };
    let e = checkpoint::apply(Backbone::new(&wider, 1, &device), &back, &path)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("has shape [8, 1, 3, 3] in the checkpoint, the model needs [16, 1, 3, 3]"),
        "{e}"
    );
    std::fs::write(&path, b"garbage").unwrap();
    assert!(
        checkpoint::load(&path)
            .unwrap_err()
            .to_string()
            .contains("not a valid safetensors")
    );
}

fn small_train(n: usize) -> Arc<Dataset> {
    Arc::new(DataSource::Embedded.load().unwrap().train.take(n))
}

#[test]
fn resume_continues_exactly() {
    let data = small_train(320);
    let cfg = crate::tiny_config(2); // 5 steps per epoch, 10 in all
    let straight = tempfile::tempdir().unwrap();
    let full = train::pretrain(
        &cfg,
        data.clone(),
        &TrainOptions {
            out_dir: straight.path().into(),
            resume: false,
            progress: false,
        },
    )
    .unwrap();
    assert_eq!(full.losses.len(), 10);

    let split = tempfile::tempdir().unwrap();
    let opts = TrainOptions {
        out_dir: split.path().into(),
        resume: true,
        progress: false,
    };
    let first = train::pretrain(
        &RunConfig {
            stop_after_steps: 7,
            ..cfg.clone()
        },
        data.clone(),
        &opts,
    )
    .unwrap();
    assert_eq!(first.steps, 7);
    let second = train::pretrain(&cfg, data, &opts).unwrap();
    assert_eq!(second.steps, 10);
    assert_eq!(second.losses.len(), 3);
    for (a, b) in full.losses[7..].iter().zip(&second.losses) {
        assert!(
            (a - b).abs() < 1e-5,
            "losses after resume differ: {:?} vs {:?}",
            &full.losses[7..],
            second.losses
        );
    }
    let (wa, _) = checkpoint::load(&straight.path().join(train::MODEL_CKPT)).unwrap();
    let (wb, _) = checkpoint::load(&split.path().join(train::MODEL_CKPT)).unwrap();
    for (k, a) in &wa {
        let b = &wb[k];
        let diff = a
            .data
            .iter()
            .zip(&b.data)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-5, "{k} differs by {diff}");
    }
    let lines = std::fs::read_to_string(split.path().join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 10);
}

#[test]
fn simclr_learns_features_that_beat_random_init() {
    let splits = DataSource::Embedded.load().unwrap();
    let data = Arc::new(splits.train.take(2048));
    let mut cfg = crate::tiny_config(4);
    cfg.batch_size = 128;
    cfg.backbone.width = 0.5;
    cfg.schedule.lr = 1.0;
    let dir = tempfile::tempdir().unwrap();
    let out = crate::pretrain_in(&cfg, data.clone(), dir.path(), false);
    crate::assert_loss_falls("SimCLR", &out.losses, 0, 0.3);

    crate::assert_instance_learning("SimCLR", &out.method.backbone(), &cfg, &data);
}

#[test]
fn ema_blends_and_cosine_momentum_ramps() {
    use selfsup::memory::ema::{cosine_momentum, ema_update};
    let device = Device::flex().autodiff();
    let a = linear();
    let w =
        Tensor::<2>::from_data(TensorData::new(vec![3.0f32, 2.0], [2, 1]), &device).require_grad();
    let b = Linear {
        weight: burn::module::Param::from_tensor(w),
        bias: None,
    };
    let blended = ema_update(a, &b, 0.75);
    assert_eq!(
        weights(&blended),
        vec![0.75 * 1.0 + 0.25 * 3.0, 0.75 * -2.0 + 0.25 * 2.0]
    );
    assert!(
        !blended.weight.val().is_require_grad(),
        "a momentum encoder is not trained by backprop"
    );
    assert!((cosine_momentum(0.99, 0, 100) - 0.99).abs() < 1e-12);
    assert!((cosine_momentum(0.99, 50, 100) - 0.995).abs() < 1e-12);
    assert!((cosine_momentum(0.99, 100, 100) - 1.0).abs() < 1e-12);
}

#[test]
fn moco_learns_and_resumes_with_its_queue() {
    let splits = DataSource::Embedded.load().unwrap();
    let data = Arc::new(splits.train.take(2048));
    let mut cfg = crate::tiny_config(4);
    cfg = cfg.for_method("moco");
    cfg.batch_size = 128;
    cfg.backbone.width = 0.5;
    cfg.schedule.lr = 1.0;
    cfg.edit_method_settings(|c: &mut selfsup::methods::contrastive::moco::MocoConfig| {
        c.queue_size = 256;
        c.momentum = 0.9;
        c.symmetric = true;
        c.proj_hidden = 64;
        c.proj_dim = 32;
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = crate::pretrain_in(&cfg, data.clone(), dir.path(), false);
    // The queue starts as random vectors (easy negatives) and holds only real keys from step 3.
    crate::assert_loss_falls("MoCo", &out.losses, 2, 0.3);
    crate::assert_instance_learning("MoCo", &out.method.backbone(), &cfg, &data);
    // The checkpoint holds both encoders and the queue; resuming past the end is a no-op
    // that loads them all.
    let (t, _) = checkpoint::load(&dir.path().join(train::MODEL_CKPT)).unwrap();
    assert_eq!(t["queue"].shape, vec![256, 32]);
    assert!(
        t.contains_key("key.backbone.blocks.0.conv.weight")
            && t.contains_key("query.projector.fc2.bias")
    );
    let again = crate::pretrain_in(&cfg, data, dir.path(), true);
    assert_eq!(again.steps, out.steps);
}

#[test]
fn mocov3_learns_features_that_beat_random_init() {
    // Held-out view matching over random init by 3 SE (see tests/it/siamese.rs).
    crate::siamese::assert_two_view_method_learns("mocov3", "MoCo v3", 2, 1.0);
}

#[test]
fn nnclr_learns_features_that_beat_random_init() {
    // Held-out view matching over random init by 3 SE (see tests/it/siamese.rs). Two epochs
    // enqueue 4,096 embeddings: a support set of 512 is full after four steps.
    crate::siamese::assert_two_view_method_learns_with(
        "nnclr",
        "NNCLR",
        2,
        1.0,
        &["nnclr.support_size=512"],
    );
}
