//! Tracking (Wang & Gupta 2015) and frames close in time as positives: the tracker on a
//! synthetic moving square and on a real clip, the ranking loss and hard negatives, and both
//! methods learning on real clips.

use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use selfsup::data::Dataset;
use selfsup::data::video::{self, VideoConfig};
use selfsup::features::track::{PairSearch, Tracker, find_pairs, most_moving_patch, ncc, patch};
use selfsup::losses::{cosine_distances, hardest_negatives, paired_cosine_distances, ranking_loss};

/// 20 frames of 64x64: a smooth gradient background and a 12 px textured square whose corner
/// moves from (10, 6) by (1, 2) pixels per frame.
fn moving_square() -> (Dataset, Vec<(usize, usize)>) {
    let (side, frames) = (64, 20);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let texture: Vec<u8> = (0..144).map(|_| rng.random_range(0..=255)).collect();
    let mut pixels = Vec::new();
    let mut truth = Vec::new();
    for t in 0..frames {
        let (y0, x0) = (10 + t, 6 + 2 * t);
        truth.push((y0, x0));
        for y in 0..side {
            for x in 0..side {
                let inside = (y0..y0 + 12).contains(&y) && (x0..x0 + 12).contains(&x);
                pixels.push(if inside {
                    texture[(y - y0) * 12 + (x - x0)]
                } else {
                    (60 + y + x) as u8
                });
            }
        }
    }
    let d = Dataset {
        pixels,
        labels: None,
        class_names: vec!["square".into()],
        channels: 1,
        height: side,
        width: side,
        clips: vec![0..frames],
        sounds: None,
        paths: Vec::new(),
    };
    (d, truth)
}

#[test]
fn tracker_follows_a_moving_square_within_two_pixels() {
    let (d, truth) = moving_square();
    // The most moving 16 px patch between the first two frames covers the square.
    let ((y, x), motion) = most_moving_patch(&d, 0, 16, 2);
    assert!(motion > 0.1, "motion {motion}");
    assert!(
        y <= 10 && y + 16 >= 22 && x <= 6 + 2 && x + 16 >= 18,
        "patch at ({y}, {x})"
    );
    // Track a 16 px box around the square (2 px margin) through all 20 frames.
    let tracker = Tracker {
        side: 16,
        search: 4,
    };
    let path = tracker.track(&d, 0, 19, (8, 4));
    assert_eq!(path.frames, (0..20).collect::<Vec<_>>());
    for (t, &(py, px)) in path.places.iter().enumerate() {
        let (ty, tx) = (truth[t].0 - 2, truth[t].1 - 2);
        assert!(
            py.abs_diff(ty) <= 2 && px.abs_diff(tx) <= 2,
            "frame {t}: tracked ({py}, {px}), truth ({ty}, {tx})"
        );
    }
    // The background does not move with the square, so the match slowly degrades.
    assert!(path.scores.iter().all(|&s| s > 0.85), "{:?}", path.scores);
    // NCC: 1 for the same patch, invariant to gain and offset, 0 for a flat patch.
    let a = patch(&d, 0, (8, 4), 16);
    let b: Vec<f32> = a.iter().map(|v| 0.5 * v + 0.2).collect();
    assert!((ncc(&a, &b) - 1.0).abs() < 1e-5);
    assert_eq!(ncc(&a, &vec![0.3; a.len()]), 0.0);
}

#[test]
fn tracker_stays_on_moving_things_in_a_real_clip() {
    let cfg = VideoConfig {
        side: 96,
        ..VideoConfig::default()
    };
    let clip = video::read_video(&super::shared_data().join("video/bikes.mp4"), &cfg).unwrap();
    let d = video::clips_to_dataset(&[clip]);
    let search = PairSearch {
        tracker: Tracker {
            side: 28,
            search: 6,
        },
        gap: 8,
        every: 4,
        min_motion: 0.03,
        min_score: -1.0,
    };
    let pairs = find_pairs(&d, &search);
    assert!(pairs.len() > 20, "{} tracks", pairs.len());
    // The tracked patch still looks like the first one, and much more than the patch left at
    // the starting place does: the box moved with the thing.
    let median = |mut v: Vec<f32>| {
        v.sort_by(f32::total_cmp);
        v[v.len() / 2]
    };
    let tracked = median(pairs.iter().map(|p| p.score).collect());
    let stayed = median(
        pairs
            .iter()
            .map(|p| {
                ncc(
                    &patch(&d, p.first, p.start, 28),
                    &patch(&d, p.last, p.start, 28),
                )
            })
            .collect(),
    );
    println!(
        "bikes.mp4: {} tracks over 8 frames, median NCC with the first patch {tracked:.2} (a box that stays put: {stayed:.2})",
        pairs.len()
    );
    assert!(
        tracked > 0.4 && tracked > stayed + 0.15,
        "{tracked} vs {stayed}"
    );
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("tracks.png");
    selfsup::methods::video::tracking::save_tracks(&png, &d, &pairs, 28, 6).unwrap();
    assert!(std::fs::metadata(&png).unwrap().len() > 1000);
}

fn t2(rows: &[[f32; 2]]) -> Tensor<2> {
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), 2]), &Device::flex())
}

fn scalar(t: Tensor<1>) -> f32 {
    t.into_scalar()
}

#[test]
fn ranking_loss_hand_cases() {
    // D(a, p) = 0; D(a, n) = 1 - cos 45 deg = 0.2929; margin 0.5: 0 - 0.2929 + 0.5.
    let (a, p) = (t2(&[[1.0, 0.0]]), t2(&[[2.0, 0.0]]));
    let d_ap = paired_cosine_distances(a.clone(), p);
    let near = cosine_distances(a.clone(), t2(&[[1.0, 1.0]]));
    let l = scalar(ranking_loss(d_ap.clone(), near, &[vec![0]], 0.5));
    assert!((l - (0.5 - (1.0 - 0.5f32.sqrt()))).abs() < 1e-5, "{l}");
    // A negative far enough (D = 1 >= 0 + 0.5): no loss.
    let far = cosine_distances(a.clone(), t2(&[[0.0, 3.0]]));
    assert!(scalar(ranking_loss(d_ap.clone(), far, &[vec![0]], 0.5)).abs() < 1e-6);
    // Just inside the margin: D(a, n) = 1 with margin 1.5 gives 0.5.
    let far = cosine_distances(a, t2(&[[0.0, 3.0]]));
    assert!((scalar(ranking_loss(d_ap, far, &[vec![0]], 1.5)) - 0.5).abs() < 1e-5);
    // Two anchors, each against chosen negatives; the loss averages the chosen pairs:
    // anchor 0: D(a,p) = 1 (orthogonal); negatives D = 0 (same) and 2 (opposite) ->
    // hinges 1 + 0.5 = 1.5 and max(0, 1 - 2 + 0.5) = 0; anchor 1 chooses only the first: 1.5.
    let a = t2(&[[1.0, 0.0], [1.0, 0.0]]);
    let p = t2(&[[0.0, 1.0], [0.0, 1.0]]);
    let n = t2(&[[1.0, 0.0], [-1.0, 0.0]]);
    let l = scalar(ranking_loss(
        paired_cosine_distances(a.clone(), p),
        cosine_distances(a, n),
        &[vec![0, 1], vec![0]],
        0.5,
    ));
    assert!((l - 3.0 / 3.0).abs() < 1e-5, "{l}");
}

#[test]
fn hard_negatives_are_the_closest() {
    // Distances of 2 anchors to 4 negatives.
    let d = [0.9, 0.2, 0.5, 0.1, 0.3, 0.3, 0.8, 0.05];
    assert_eq!(
        hardest_negatives(&d, 4, 2, false),
        vec![vec![3, 1], vec![3, 0]]
    );
    // Excluding each anchor's own index (its own patch), ties broken by index.
    assert_eq!(
        hardest_negatives(&d, 4, 2, true),
        vec![vec![3, 1], vec![3, 0]]
    );
    assert_eq!(hardest_negatives(&d, 4, 1, true)[1], vec![3]);
    let d = [0.1, 0.5, 0.2, 0.0];
    assert_eq!(hardest_negatives(&d, 2, 1, true), vec![vec![1], vec![0]]);
}

#[test]
fn positives_in_time_stay_in_the_window_and_the_clip() {
    use selfsup::methods::video::time_contrastive::positive_frame;
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let clip = 100..130;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..2000 {
        for anchor in [100, 115, 129] {
            let f = positive_frame(&clip, anchor, 3, &mut rng);
            assert!(
                clip.contains(&f) && f != anchor && f.abs_diff(anchor) <= 3,
                "{anchor} -> {f}"
            );
            if anchor == 115 {
                seen.insert(f);
            }
        }
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        vec![112, 113, 114, 116, 117, 118]
    );
}

fn video_config(method: &str, steps: u64) -> (selfsup::config::RunConfig, selfsup::data::Splits) {
    let mut cfg = selfsup::config::RunConfig {
        method: method.into(),
        data: selfsup::data::DataSource::Video(super::shared_data().join("video")),
        epochs: 100,
        batch_size: 32,
        stop_after_steps: steps,
        log_every: 1,
        ..selfsup::config::RunConfig::default()
    };
    cfg.video.holdout = vec!["carphone_pristine".into()];
    cfg.backbone.width = 0.5;
    if method == "tracking" {
        cfg.video.side = 96;
        cfg.optim.kind = selfsup::train::optim::OptimizerKind::AdamW;
        cfg.optim.weight_decay = 1e-4;
        cfg.schedule.lr = 1e-3;
        cfg.edit_method_settings(
            |c: &mut selfsup::methods::video::tracking::TrackingConfig| {
                c.hard_after_epochs = 1;
                c.gap = 8;
            },
        )
        .unwrap();
    }
    let splits = cfg.data.load_with(&cfg.load_options()).unwrap();
    cfg.fit_views_to(&splits.train);
    (cfg, splits)
}

/// Held-out `[{what}_closer_fraction, {what}_distance_ratio, {what}_distance_ratio_se,
/// {what}_pairs]` of the trained method and of the same method untrained.
fn trained_and_untrained(
    cfg: &selfsup::config::RunConfig,
    splits: &selfsup::data::Splits,
    what: &str,
) -> (selfsup::train::TrainOutcome, [f64; 4], [f64; 4]) {
    let dir = tempfile::tempdir().unwrap();
    let out = super::pretrain_in(
        cfg,
        std::sync::Arc::new(splits.train.clone()),
        dir.path(),
        false,
    );
    let test = splits.test.as_ref().unwrap();
    let metric = |m: &dyn selfsup::methods::Method| {
        let all = m.pretext_metrics(test, 0);
        let get = |name: String| {
            all.iter()
                .find(|(k, _)| *k == name)
                .unwrap_or_else(|| panic!("no {name} in {all:?}"))
                .1
        };
        [
            get(format!("{what}_closer_fraction")),
            get(format!("{what}_distance_ratio")),
            get(format!("{what}_distance_ratio_se")),
            get(format!("{what}_pairs")),
        ]
    };
    let fresh = super::untrained_method(cfg, &splits.train);
    let (trained, untrained) = (metric(out.method.as_ref()), metric(fresh.as_ref()));
    (out, trained, untrained)
}

/// The held-out claim of a distance-learning method: the distance ratio (near over other
/// pairs) falls below the untrained network's by at least 3 SE (delta-method SEs of both
/// ratios, combined as if independent). Near pairs are closer than the other pair for
/// most anchors, but the untrained network already gets that (99 % on this clip), so it is
/// checked as a sanity bound, not claimed as learning.
fn assert_brings_closer(method: &str, trained: [f64; 4], untrained: [f64; 4]) {
    assert!(trained[0] > 0.5, "{method}: closer fraction {trained:?}");
    let se = (trained[2].powi(2) + untrained[2].powi(2)).sqrt();
    let claim = format!("{method} distance ratio below untrained");
    crate::margin::assert_below(&claim, trained[1], untrained[1], se, 0.0);
}

#[test]
fn tracking_brings_tracked_patches_closer_on_a_held_out_clip() {
    let (cfg, splits) = video_config("tracking", TRACK_STEPS);
    let t = std::time::Instant::now();
    let (out, trained, untrained) = trained_and_untrained(&cfg, &splits, "tracked");
    println!(
        "tracking: {TRACK_STEPS} steps in {:.0} s; held-out tracked pairs closer than another patch of the frame: {:.1} % (untrained {:.1} %); distance ratio tracked / other {:.3} (untrained {:.3})",
        t.elapsed().as_secs_f64(),
        100.0 * trained[0],
        100.0 * untrained[0],
        trained[1],
        untrained[1]
    );
    // No claim on the loss curve: from epoch 1 the negatives are the hardest in the batch,
    // a harder loss than the first epoch's, so the curve rises at the switch whatever the
    // network learns (0.144 in the first steps, 0.189 at the end on an AVX2 EPYC).
    assert!(out.losses.iter().all(|l| l.is_finite()));
    assert_brings_closer("tracking", trained, untrained);
}

/// Time-contrastive learning runs and measures its held-out distances, but makes no learning
/// claim: none holds by 3 SE at this scale. The NT-Xent loss moves by less than its step
/// noise (most frames of a batch have near-duplicates among the negatives: other frames of
/// the same clip), and the held-out distance ratio near / far beat the untrained network's
/// by 3.3 SE after 300 steps under seed offset 0 but lost to it under offset 2 (0.18 against
/// 0.08), on an AVX2 EPYC. The untrained network already puts near frames closer than far
/// ones for every anchor of the clip.
#[test]
fn time_contrastive_runs_and_measures_held_out_distances() {
    let (cfg, splits) = video_config("time_contrastive", TC_STEPS);
    let t = std::time::Instant::now();
    let (out, trained, untrained) = trained_and_untrained(&cfg, &splits, "near");
    println!(
        "time_contrastive: {TC_STEPS} steps in {:.0} s; held-out frames closer to a neighbour in time than to a far frame: {:.1} % (untrained {:.1} %); distance ratio near / far {:.3} (untrained {:.3})",
        t.elapsed().as_secs_f64(),
        100.0 * trained[0],
        100.0 * untrained[0],
        trained[1],
        untrained[1]
    );
    assert!(out.losses.iter().all(|l| l.is_finite()));
    assert!(trained[3] > 0.0 && trained[1].is_finite() && trained[2].is_finite());
    let se = (trained[2].powi(2) + untrained[2].powi(2)).sqrt();
    println!(
        "time_contrastive distance ratio (not claimed): {:.1} SE below the untrained one",
        (untrained[1] - trained[1]) / se
    );
}

const TRACK_STEPS: u64 = 120;
const TC_STEPS: u64 = 60;
