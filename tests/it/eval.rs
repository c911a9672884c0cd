//! Average precision on hand-made rankings, and the SVM solver against its own objective.

use selfsup::eval::Features;
use selfsup::eval::ap::{step_ap, voc_ap};
use selfsup::eval::svm::{self, SvmConfig};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn average_precision_on_hand_made_rankings() {
    // Ranking + - + -: precision 1 at recall 0.5, 2/3 at recall 1.
    let s = [0.9, 0.8, 0.7, 0.6];
    let p = [true, false, true, false];
    assert!(close(voc_ap(&s, &p).unwrap(), 0.5 + 0.5 * 2.0 / 3.0));
    assert!(close(step_ap(&s, &p).unwrap(), 0.5 + 0.5 * 2.0 / 3.0));
    // Ranking - + : interpolation makes no difference to the single positive at rank 2.
    assert!(close(voc_ap(&[0.9, 0.1], &[false, true]).unwrap(), 0.5));
    // A tie of a positive and a negative at the top counts as one group (precision 1/2 at
    // recall 1/2), whatever the input order; then the second positive (2/3 at recall 1).
    let s = [0.5, 0.5, 0.1];
    for p in [[true, false, true], [false, true, true]] {
        assert!(close(step_ap(&s, &p).unwrap(), 0.5 * 0.5 + 0.5 * 2.0 / 3.0));
        // Interpolated: the best precision at recall >= 1/2 is 2/3.
        assert!(close(voc_ap(&s, &p).unwrap(), 2.0 / 3.0));
    }
    // No positive: undefined. All positive: 1.
    assert_eq!(voc_ap(&[0.3, 0.2], &[false, false]), None);
    assert_eq!(step_ap(&[0.3, 0.2], &[false, false]), None);
    assert!(close(voc_ap(&[0.3, 0.2, 0.2], &[true; 3]).unwrap(), 1.0));
    assert!(close(step_ap(&[0.3, 0.2, 0.2], &[true; 3]).unwrap(), 1.0));
}

/// The primal objective the dual solver minimizes (bias regularized, as liblinear).
fn primal(x: &[f32], d: usize, y: &[bool], c: f64, wpos: f64, w: &[f64], b: f64) -> f64 {
    let reg = 0.5 * (w.iter().map(|v| v * v).sum::<f64>() + b * b);
    let loss: f64 = y
        .iter()
        .enumerate()
        .map(|(i, &yi)| {
            let s: f64 = w
                .iter()
                .zip(&x[i * d..(i + 1) * d])
                .map(|(w, &v)| w * v as f64)
                .sum::<f64>()
                + b;
            let (t, ci) = if yi { (1.0, c * wpos) } else { (-1.0, c) };
            ci * (1.0 - t * s).max(0.0).powi(2)
        })
        .sum();
    reg + loss
}

#[test]
fn svm_solution_minimizes_the_primal_objective() {
    // Two overlapping Gaussian-ish clouds in 3-D (deterministic pseudo-random).
    let mut s = 12345u64;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0
    };
    let (n, d) = (200, 3);
    let y: Vec<bool> = (0..n).map(|i| i % 3 == 0).collect();
    let x: Vec<f32> = (0..n * d)
        .map(|k| (next() + if y[k / d] && k % d == 0 { 0.8 } else { 0.0 }) as f32)
        .collect();
    let cfg = SvmConfig {
        tol: 1e-8,
        max_iter: 10_000,
        ..SvmConfig::default()
    };
    let rows: Vec<usize> = (0..n).collect();
    for c in [0.1, 1.0, 10.0] {
        let m = svm::fit(&x, d, &rows, &y, c, &cfg, 1);
        let best = primal(&x, d, &y, c, 2.0, &m.w, m.bias);
        // Every small step away from the solution, along each coordinate, costs objective.
        for j in 0..=d {
            for h in [1e-3, -1e-3] {
                let mut w = m.w.clone();
                let mut b = m.bias;
                if j < d {
                    w[j] += h;
                } else {
                    b += h;
                }
                let moved = primal(&x, d, &y, c, 2.0, &w, b);
                assert!(
                    moved >= best - 1e-9,
                    "C = {c}: moving coordinate {j} by {h} lowered the objective {best} to {moved}"
                );
            }
        }
        // The SVM separates the clouds better than chance.
        let scores: Vec<f32> = (0..n)
            .map(|i| m.score(&x[i * d..(i + 1) * d]) as f32)
            .collect();
        assert!(voc_ap(&scores, &y).unwrap() > 0.6);
    }
}

#[test]
fn voc07_protocol_picks_a_cost_per_class_and_reports_map() {
    // Three classes, each a direction in 4-D plus noise.
    let mut s = 99u64;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0
    };
    let make = |n: usize, next: &mut dyn FnMut() -> f64| {
        let labels: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
        let data: Vec<f32> = (0..n * 4)
            .map(|k| {
                (next() * 0.8
                    + if k % 4 == labels[k / 4] as usize {
                        1.0
                    } else {
                        0.0
                    }) as f32
            })
            .collect();
        (Features { data, n, dim: 4 }, labels)
    };
    let (train, ytr) = make(150, &mut next);
    let (test, yte) = make(90, &mut next);
    let cfg = SvmConfig {
        costs: vec![0.01, 1.0, 100.0],
        ..SvmConfig::default()
    };
    let r = svm::voc07(
        &train,
        &svm::one_vs_rest(&ytr, 3),
        &test,
        &svm::one_vs_rest(&yte, 3),
        &cfg,
    );
    assert_eq!(r.classes.len(), 3);
    for c in &r.classes {
        assert_eq!(c.cv_ap.len(), 3);
        assert!(cfg.costs.contains(&c.best_cost));
        let best = c.cv_ap.iter().cloned().fold(f64::MIN, f64::max);
        assert_eq!(
            c.cv_ap[cfg.costs.iter().position(|&k| k == c.best_cost).unwrap()],
            best
        );
    }
    assert!(r.map > 70.0 && r.map <= 100.0, "mAP {}", r.map);
    // Folds are stratified: each fold holds a third of the positives.
    let folds = svm::stratified_folds(&svm::one_vs_rest(&ytr, 3)[0], 3);
    for f in 0..3 {
        let pos = (0..150).filter(|&i| folds[i] == f && ytr[i] == 0).count();
        assert!((16..=17).contains(&pos));
    }
}

#[test]
fn lowshot_draws_k_per_class_and_accuracy_grows_with_k() {
    use selfsup::eval::lowshot::{self, LowShotConfig, LowShotModel};
    let labels: Vec<u32> = (0..300).map(|i| (i % 3) as u32).collect();
    let picked = lowshot::sample_per_class(&labels, 4, 7);
    assert_eq!(picked.len(), 12);
    for c in 0..3 {
        assert_eq!(picked.iter().filter(|&&i| labels[i] == c).count(), 4);
    }
    assert_ne!(
        picked,
        lowshot::sample_per_class(&labels, 4, 8),
        "seeds draw differently"
    );
    // Noisy class directions: 1 image per class is worse than 32.
    let mut s = 5u64;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0
    };
    let mut make = |n: usize| {
        let y: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
        let data: Vec<f32> = (0..n * 8)
            .map(|k| (next() * 1.5 + if k % 8 == y[k / 8] as usize { 1.0 } else { 0.0 }) as f32)
            .collect();
        (Features { data, n, dim: 8 }, y)
    };
    let (train, ytr) = make(300);
    let (test, yte) = make(300);
    let rows = lowshot::run(
        &train,
        &ytr,
        &test,
        &yte,
        &LowShotConfig {
            shots: vec![1, 32],
            seeds: 4,
            model: LowShotModel::Svm,
            cost: 1.0,
        },
    );
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].accuracies.len(), 4);
    assert!(rows[1].mean > rows[0].mean + 5.0, "{rows:?}");
    assert!(rows[1].mean > 50.0);
}

#[test]
fn multi_label_files_are_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("labels.txt");
    std::fs::write(&p, "0 2\n1\n\n2,0\n").unwrap();
    let l = svm::read_label_file(&p, 4).unwrap();
    assert_eq!(l, vec![vec![0, 2], vec![1], vec![], vec![2, 0]]);
    let t = svm::multi_label_targets(&l, 3);
    assert_eq!(t[0], vec![true, false, false, true]);
    assert_eq!(t[2], vec![true, false, false, true]);
    assert_eq!(t[1], vec![false, true, false, false]);
    let e = svm::read_label_file(&p, 5).unwrap_err().to_string();
    assert!(
        e.contains("labels.txt") && e.contains("4 lines for 5 images"),
        "{e}"
    );
    std::fs::write(&p, "0\nx\n").unwrap();
    let e = svm::read_label_file(&p, 2).unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("'x'"), "{e}");
}

/// AdaBN: after adaptation, the first BatchNorm's running mean is the mean over the data of
/// the first convolution's output (what the layer will then subtract), and weights are kept.
#[test]
fn adapt_batchnorm_reestimates_running_statistics() {
    use burn::prelude::*;
    use selfsup::nn::Backbone;
    fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec().unwrap()
    }
    let data = selfsup::data::DataSource::Embedded
        .load()
        .unwrap()
        .train
        .take(512);
    let cfg = selfsup::config::RunConfig::default();
    let device = Device::flex();
    let mut bc = cfg.backbone.clone();
    bc.width = 0.25;
    let net = Backbone::new(&bc, 1, &device);
    let Backbone::ConvNet(before) = &net else {
        panic!("a convnet")
    };
    let first = &before.blocks[0];
    let (init, w0) = (
        host(first.bn.as_ref().unwrap().running_mean.value()),
        host(first.conv.weight.val()),
    );
    let x = selfsup::eval::plain_batch(&data, &cfg.views.eval_only(), 0..512).to_tensor(&device);
    let conv = first.conv.forward(x);
    let c = conv.dims()[1];
    let want = host(conv.swap_dims(0, 1).reshape([c as i32, -1]).mean_dim(1));

    let adapted = selfsup::eval::adapt_batchnorm(net.clone(), &data, &cfg.views, 128);
    let Backbone::ConvNet(after) = &adapted else {
        panic!("a convnet")
    };
    let got = host(after.blocks[0].bn.as_ref().unwrap().running_mean.value());
    assert!(init.iter().all(|&v| v == 0.0));
    for (g, w) in got.iter().zip(&want) {
        assert!(
            (g - w).abs() < 0.01 + 0.01 * w.abs(),
            "running mean {g}, data mean {w}"
        );
    }
    assert_eq!(w0, host(after.blocks[0].conv.weight.val()));
}
