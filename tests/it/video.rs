//! Video: the ffmpeg reader and frame folders, the Shuffle & Learn and Odd-One-Out samplers on
//! hand-made frame sequences, and both methods learning their task on real clips.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use selfsup::config::RunConfig;
use selfsup::data::Dataset;
use selfsup::data::video::{self, VideoConfig};
use selfsup::pretext::frames::{
    frame_motion, motion_windows, moving_windows, odd_question, order_tuple,
};
use std::sync::Arc;

fn clip_path(name: &str) -> std::path::PathBuf {
    super::shared_data().join("video").join(name)
}

/// A grey 4x4 "video" whose frame `i` has every pixel at `levels[i]`, one clip per slice.
fn synthetic(clips: &[&[u8]]) -> Dataset {
    let mut pixels = Vec::new();
    let mut ranges = Vec::new();
    for levels in clips {
        let start = pixels.len() / 16;
        for &v in *levels {
            pixels.extend(std::iter::repeat_n(v, 16));
        }
        ranges.push(start..pixels.len() / 16);
    }
    Dataset {
        pixels,
        labels: None,
        class_names: (0..clips.len()).map(|i| format!("clip{i}")).collect(),
        channels: 1,
        height: 4,
        width: 4,
        clips: ranges,
        sounds: None,
        paths: Vec::new(),
    }
}

#[test]
fn reads_a_real_clip_with_ffmpeg() {
    let cfg = VideoConfig::default();
    let clip = video::read_video(&clip_path("carphone_pristine.mp4"), &cfg).unwrap();
    // The data README: 176x144, 120 frames.
    assert_eq!(clip.len(), 120);
    assert_eq!((clip.channels, clip.side), (1, 32));
    assert_eq!(clip.frames.len(), 120 * 32 * 32);
    // Consecutive frames differ (a real video, not a repeated frame) but not by much.
    let d = selfsup::data::video::clips_to_dataset(std::slice::from_ref(&clip));
    let motion = frame_motion(&d, 0..120);
    let mean = motion.iter().sum::<f32>() / motion.len() as f32;
    assert!(mean > 0.002 && mean < 0.05, "mean motion {mean}");

    // Colour, another size, a lower rate and a frame cap.
    let rgb = VideoConfig {
        gray: false,
        side: 20,
        fps: 5.0,
        ..VideoConfig::default()
    };
    let c = video::read_video(&clip_path("carphone_pristine.mp4"), &rgb).unwrap();
    assert_eq!((c.channels, c.side), (3, 20));
    assert!(c.len() < 60 && c.len() >= 10, "{} frames at 5 fps", c.len());
    let capped = VideoConfig {
        max_frames: 7,
        ..VideoConfig::default()
    };
    assert_eq!(
        video::read_video(&clip_path("tree.avi"), &capped)
            .unwrap()
            .len(),
        7
    );
}

#[test]
fn reads_frame_folders_and_splits_clips() {
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("walk");
    std::fs::create_dir(&frames).unwrap();
    for i in 0..5u8 {
        let img = image::GrayImage::from_pixel(40, 30, image::Luma([i * 50]));
        img.save(frames.join(format!("f{i:03}.png"))).unwrap();
    }
    let clip = video::read_frame_folder(&frames, &VideoConfig::default()).unwrap();
    assert_eq!((clip.len(), clip.name.as_str()), (5, "walk"));
    // In name order: the grey levels rise.
    let firsts: Vec<u8> = (0..5).map(|i| clip.frames[i * 32 * 32]).collect();
    assert_eq!(firsts, vec![0, 50, 100, 150, 200]);

    // A folder of a frame folder and a video: two clips, the last by name held out.
    std::fs::copy(
        clip_path("carphone_pristine.mp4"),
        dir.path().join("zz.mp4"),
    )
    .unwrap();
    let s = video::load_splits(dir.path(), &VideoConfig::default()).unwrap();
    assert_eq!(s.train.class_names, vec!["walk"]);
    assert_eq!(s.train.clips, vec![0..5]);
    let test = s.test.unwrap();
    assert_eq!(
        (test.class_names[0].as_str(), test.clips[0].clone()),
        ("zz", 0..120)
    );
    // Holding out by name.
    let named = VideoConfig {
        holdout: vec!["walk".into()],
        ..VideoConfig::default()
    };
    let s = video::load_splits(dir.path(), &named).unwrap();
    assert_eq!(s.test.unwrap().class_names, vec!["walk"]);
}

#[test]
fn bad_video_inputs_give_clear_errors() {
    let cfg = VideoConfig::default();
    let err = |r: selfsup::Result<video::Clip>| r.unwrap_err().to_string();
    let e = err(video::read_video(
        std::path::Path::new("/no/such/clip.mp4"),
        &cfg,
    ));
    assert!(e.contains("/no/such/clip.mp4"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.mp4");
    std::fs::write(&bad, b"this is not a video at all").unwrap();
    let e = err(video::read_video(&bad, &cfg));
    assert!(
        e.contains("broken.mp4") && e.contains("ffmpeg could not decode"),
        "{e}"
    );

    let no_ffmpeg = VideoConfig {
        ffmpeg: "/no/such/ffmpeg".into(),
        ..VideoConfig::default()
    };
    let e = err(video::read_video(&clip_path("bikes.mp4"), &no_ffmpeg));
    assert!(
        e.contains("/no/such/ffmpeg") && e.contains("not found"),
        "{e}"
    );

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = video::load_clips(&empty, &cfg).unwrap_err().to_string();
    assert!(e.contains("empty") && e.contains("no video files"), "{e}");

    let named = VideoConfig {
        holdout: vec!["nope".into()],
        ..VideoConfig::default()
    };
    let e = video::load_splits(&clip_path("bikes.mp4"), &named)
        .unwrap_err()
        .to_string();
    assert!(e.contains("'nope'") && e.contains("bikes"), "{e}");
}

#[test]
fn motion_filter_keeps_windows_that_move() {
    // Frames 0..4 still, then a ramp of 10 grey levels per frame, then still again.
    let levels: Vec<u8> = [0u8, 0, 0, 0, 0, 10, 20, 30, 40, 50, 50, 50, 50].to_vec();
    let d = synthetic(&[&levels]);
    let motion = frame_motion(&d, 0..levels.len());
    assert_eq!(motion.len(), 12);
    assert!((motion[4] - 10.0 / 255.0).abs() < 1e-6 && motion[0] == 0.0 && motion[11] == 0.0);
    // Windows of 4 frames (3 steps) moving at least 2/3 of a 10-level step on average.
    let w = motion_windows(&motion, 4, 20.0 / 3.0 / 255.0 - 1e-6);
    assert_eq!(w, vec![3, 4, 5, 6, 7]);
    assert!(
        motion_windows(&motion, 14, 0.0).is_empty(),
        "a window longer than the clip"
    );

    // Over several clips, window starts are frame indices into the whole set.
    let d2 = synthetic(&[&levels, &levels]);
    let all = moving_windows(&d2, 4, 20.0 / 3.0 / 255.0 - 1e-6, "test").unwrap();
    assert_eq!(all, vec![3, 4, 5, 6, 7, 16, 17, 18, 19, 20]);

    // Errors: still images, a clip too short, nothing moving.
    let still = Dataset {
        clips: Vec::new(),
        ..synthetic(&[&levels])
    };
    let e = moving_windows(&still, 4, 0.0, "shuffle_learn")
        .unwrap_err()
        .to_string();
    assert!(e.contains("video"), "{e}");
    let short = synthetic(&[&levels, &[1, 2, 3]]);
    let e = moving_windows(&short, 5, 0.0, "shuffle_learn")
        .unwrap_err()
        .to_string();
    assert!(e.contains("clip1") && e.contains("3 frames"), "{e}");
    let e = moving_windows(&d, 4, 0.5, "shuffle_learn")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("moves enough") && e.contains("motion_threshold"),
        "{e}"
    );
}

#[test]
fn order_tuples_follow_the_paper() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (start, span) = (100, 12);
    let (mut forward, mut backward) = (0, 0);
    for i in 0..2000 {
        let positive = i % 2 == 0;
        let t = order_tuple(start, span, positive, &mut rng);
        assert_eq!(t.in_order, positive);
        let [x, y, z] = t.frames;
        for f in t.frames {
            assert!(
                (start..start + span).contains(&f),
                "frame {f} outside the window"
            );
        }
        assert!(x != y && y != z && x != z);
        let between = (x < y && y < z) || (z < y && y < x);
        assert_eq!(between, positive, "{:?}", t.frames);
        if !positive {
            // The odd middle frame lies outside the outer two, on either side.
            assert!(y < x.min(z) || y > x.max(z));
        }
        if x < z {
            forward += 1;
        } else {
            backward += 1;
        }
    }
    // Shown forward and backward about equally often, so direction says nothing.
    assert!(
        (900..1100).contains(&forward) && forward + backward == 2000,
        "{forward}"
    );
}

#[test]
fn odd_questions_hide_one_shuffled_sub_sequence() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let starts: Vec<usize> = (40..60).collect();
    let mut where_odd = [0usize; 4];
    for _ in 0..1000 {
        let q = odd_question(&starts, 4, 3, 2, &mut rng);
        assert_eq!(q.elements.len(), 4);
        where_odd[q.odd] += 1;
        for (i, e) in q.elements.iter().enumerate() {
            let mut sorted = e.clone();
            sorted.sort_unstable();
            // Frames `stride` apart from an allowed start.
            assert!(starts.contains(&sorted[0]));
            assert_eq!(sorted, vec![sorted[0], sorted[0] + 2, sorted[0] + 4]);
            let reversed: Vec<usize> = sorted.iter().rev().copied().collect();
            if i == q.odd {
                assert!(
                    *e != sorted && *e != reversed,
                    "odd element {e:?} is in order"
                );
            } else {
                assert_eq!(*e, sorted);
            }
        }
    }
    assert!(
        where_odd.iter().all(|&n| (200..300).contains(&n)),
        "{where_odd:?}"
    );
}

fn video_run(method: &str, steps: u64) -> (RunConfig, selfsup::data::Splits) {
    let mut cfg = RunConfig {
        method: method.into(),
        data: selfsup::data::DataSource::Video(super::shared_data().join("video")),
        epochs: 100,
        batch_size: 32,
        stop_after_steps: steps,
        log_every: 1,
        ..RunConfig::default()
    };
    cfg.video.holdout = vec!["carphone_pristine".into()];
    cfg.backbone.width = 0.5;
    cfg.optim.kind = selfsup::train::optim::OptimizerKind::AdamW;
    cfg.optim.weight_decay = 1e-4;
    cfg.schedule.lr = 1e-3;
    let splits = cfg.data.load_with(&cfg.load_options()).unwrap();
    cfg.fit_views_to(&splits.train);
    (cfg, splits)
}

/// The held-out metric `name` of `method`, and of the same method untrained.
fn held_out_metric(method: &dyn selfsup::methods::Method, test: &Dataset, name: &str) -> f64 {
    let m = method.pretext_metrics(test, 0);
    m.iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no {name} in {m:?}"))
        .1
}

/// The held-out metric `name` of `cfg`'s method at random init.
fn untrained_metric(cfg: &RunConfig, train: &Dataset, test: &Dataset, name: &str) -> f64 {
    held_out_metric(super::untrained_method(cfg, train).as_ref(), test, name)
}

#[test]
fn shuffle_learn_verifies_order_on_a_held_out_clip() {
    let (cfg, splits) = video_run("shuffle_learn", SL_STEPS);
    let dir = tempfile::tempdir().unwrap();
    let t = std::time::Instant::now();
    let out = super::pretrain_in(&cfg, Arc::new(splits.train.clone()), dir.path(), false);
    let secs = t.elapsed().as_secs_f64();
    super::assert_loss_falls("shuffle_learn", &out.losses, 0, 0.02);
    let test = splits.test.as_ref().unwrap();
    let acc = held_out_metric(out.method.as_ref(), test, "order_accuracy");
    let untrained = untrained_metric(&cfg, &splits.train, test, "order_accuracy");
    println!(
        "shuffle_learn: {SL_STEPS} steps in {secs:.0} s; order accuracy on the held-out clip {:.1} % (untrained {:.1} %, chance 50 %)",
        100.0 * acc,
        100.0 * untrained
    );
    // Binomial SEs on the held-out tuples (1,000: chance gives 50 % +- 1.6 points).
    crate::margin::assert_accuracy_over_untrained_and_chance(
        "shuffle_learn order accuracy",
        acc,
        untrained,
        0.5,
        cfg.method_settings::<selfsup::methods::video::shuffle_learn::ShuffleLearnConfig>()
            .unwrap()
            .eval_tuples,
        0.08,
    );
}

#[test]
fn odd_one_out_finds_the_shuffled_sub_sequence_on_a_held_out_clip() {
    let (mut cfg, splits) = video_run("odd_one_out", O3N_STEPS);
    cfg.edit_method_settings(
        |c: &mut selfsup::methods::video::odd_one_out::OddOneOutConfig| {
            c.elements = 4;
        },
    )
    .unwrap();
    cfg.batch_size = 16;
    let dir = tempfile::tempdir().unwrap();
    let t = std::time::Instant::now();
    let out = super::pretrain_in(&cfg, Arc::new(splits.train.clone()), dir.path(), false);
    let secs = t.elapsed().as_secs_f64();
    super::assert_loss_falls("odd_one_out", &out.losses, 0, 0.05);
    let test = splits.test.as_ref().unwrap();
    let acc = held_out_metric(out.method.as_ref(), test, "odd_accuracy");
    let untrained = untrained_metric(&cfg, &splits.train, test, "odd_accuracy");
    println!(
        "odd_one_out: {O3N_STEPS} steps in {secs:.0} s; odd-one accuracy on the held-out clip {:.1} % (untrained {:.1} %, chance 25 %)",
        100.0 * acc,
        100.0 * untrained
    );
    // Binomial SEs on the held-out questions (600: chance gives 25 % +- 1.8 points).
    crate::margin::assert_accuracy_over_untrained_and_chance(
        "odd_one_out accuracy",
        acc,
        untrained,
        0.25,
        cfg.method_settings::<selfsup::methods::video::odd_one_out::OddOneOutConfig>()
            .unwrap()
            .eval_questions,
        0.08,
    );
}

const SL_STEPS: u64 = 150;
const O3N_STEPS: u64 = 60;
