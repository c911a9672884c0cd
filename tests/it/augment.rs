//! View transforms and the loader's determinism.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use selfsup::augment::{Image, ViewConfig, blur, color, crop};
use selfsup::data::DataSource;
use selfsup::data::loader::{ViewSpec, make_batch};

fn ramp(c: usize, h: usize, w: usize) -> Image {
    Image {
        data: (0..c * h * w).map(|i| (i % 97) as f32 / 97.0).collect(),
        channels: c,
        height: h,
        width: w,
    }
}

#[test]
fn crop_regions_respect_scale_and_bounds() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for _ in 0..500 {
        let r = crop::sample_region(28, 28, (0.2, 1.0), (0.75, 4.0 / 3.0), &mut rng);
        assert!(
            r.top >= 0.0 && r.left >= 0.0 && r.top + r.height <= 28.0 && r.left + r.width <= 28.0,
            "{r:?}"
        );
        let frac = r.height * r.width / 784.0;
        assert!((0.15..=1.0).contains(&frac), "area fraction {frac}");
    }
}

#[test]
fn full_region_crop_is_identity_and_flip_mirrors() {
    let img = ramp(3, 8, 6);
    let r = crop::Region {
        top: 0.0,
        left: 0.0,
        height: 8.0,
        width: 6.0,
    };
    let out = crop::resized_crop(&img, r, 8, 6);
    for (a, b) in out.data.iter().zip(&img.data) {
        assert!((a - b).abs() < 1e-6);
    }
    let mut f = img.clone();
    f.flip_horizontal();
    assert_eq!(f.at(1, 2, 0), img.at(1, 2, 5));
    f.flip_horizontal();
    assert_eq!(f, img);
    // Downsampling by 2 averages pixel pairs (bilinear at pixel centres).
    let line = Image {
        data: vec![0.0, 1.0, 2.0, 3.0],
        channels: 1,
        height: 1,
        width: 4,
    };
    let half = crop::resized_crop(
        &line,
        crop::Region {
            top: 0.0,
            left: 0.0,
            height: 1.0,
            width: 4.0,
        },
        1,
        2,
    );
    assert_eq!(half.data, vec![0.5, 2.5]);
}

#[test]
fn blur_kernel_is_normalized_and_keeps_constants() {
    let k = blur::kernel(1.5);
    assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    assert_eq!(k.len(), 11);
    let mut img = Image {
        data: vec![0.3; 3 * 10 * 10],
        channels: 3,
        height: 10,
        width: 10,
    };
    blur::gaussian_blur(&mut img, 2.0);
    assert!(img.data.iter().all(|v| (v - 0.3).abs() < 1e-5));
    // A blurred impulse spreads and keeps its mass away from the border.
    let mut imp = Image {
        data: vec![0.0; 15 * 15],
        channels: 1,
        height: 15,
        width: 15,
    };
    imp.data[7 * 15 + 7] = 1.0;
    blur::gaussian_blur(&mut imp, 1.0);
    assert!((imp.data.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    assert!(imp.data[7 * 15 + 7] < 0.2 && imp.data[7 * 15 + 8] > 0.05);
}

#[test]
fn colour_transforms() {
    let mut g = ramp(3, 4, 4);
    color::to_grayscale(&mut g);
    assert_eq!(g.at(0, 1, 1), g.at(2, 1, 1));
    let img = ramp(3, 4, 4);
    let mut h = img.clone();
    color::adjust_hue(&mut h, 0.0);
    for (a, b) in h.data.iter().zip(&img.data) {
        assert!((a - b).abs() < 1e-5, "hue 0 changed {b} to {a}");
    }
    // A full turn of hue in two halves is the identity too; half a turn maps red to cyan.
    let mut red = Image {
        data: vec![1.0, 0.0, 0.0],
        channels: 3,
        height: 1,
        width: 1,
    };
    color::adjust_hue(&mut red, 0.5);
    assert!(
        (red.data[0]).abs() < 1e-5
            && (red.data[1] - 1.0).abs() < 1e-5
            && (red.data[2] - 1.0).abs() < 1e-5
    );
    let mut c = Image {
        data: vec![0.2, 0.6],
        channels: 1,
        height: 1,
        width: 2,
    };
    color::adjust_contrast(&mut c, 0.0);
    assert!((c.data[0] - 0.4).abs() < 1e-6 && (c.data[1] - 0.4).abs() < 1e-6);
    let mut s = Image {
        data: vec![0.2, 0.7],
        channels: 1,
        height: 1,
        width: 2,
    };
    color::solarize(&mut s, 0.5);
    assert!((s.data[1] - 0.3).abs() < 1e-6 && s.data[0] == 0.2);
}

#[test]
fn views_are_seeded_and_differ_between_views() {
    let data = DataSource::Embedded.load().unwrap().train.take(16);
    let spec = ViewSpec {
        views: vec![ViewConfig::default(), ViewConfig::default()],
    };
    let idx: Vec<usize> = (0..16).collect();
    let a = make_batch(&data, &spec, &idx, 5, 0, 0);
    let b = make_batch(&data, &spec, &idx, 5, 0, 0);
    assert_eq!(a, b, "same seed, epoch and positions give the same views");
    assert_ne!(a[0].data, a[1].data, "the two views differ");
    let c = make_batch(&data, &spec, &idx, 5, 1, 0);
    assert_ne!(a[0].data, c[0].data, "another epoch gives other views");
    assert_eq!(a[0].shape, [16, 1, 28, 28]);
}

#[test]
fn view_config_rejects_bad_values() {
    let bad = ViewConfig {
        crop_scale: (0.5, 0.2),
        ..Default::default()
    };
    assert!(
        bad.validate()
            .unwrap_err()
            .to_string()
            .contains("crop_scale")
    );
    let bad = ViewConfig {
        flip_prob: 1.5,
        ..Default::default()
    };
    assert!(
        bad.validate()
            .unwrap_err()
            .to_string()
            .contains("flip_prob")
    );
}

#[test]
fn knn_votes_hand_computed() {
    use selfsup::eval::{Features, knn};
    // Train points on the unit circle; the query sits between class 0 (angle 0) and class 1.
    let pts = [
        (1.0f32, 0.0f32, 0u32),
        (0.9, 0.1, 0),
        (0.0, 1.0, 1),
        (0.2, 0.98, 1),
        (0.3, 0.95, 1),
    ];
    let train = Features {
        data: pts.iter().flat_map(|p| [p.0, p.1]).collect(),
        n: 5,
        dim: 2,
    };
    let labels: Vec<u32> = pts.iter().map(|p| p.2).collect();
    let test = Features {
        data: vec![1.0, 0.3],
        n: 1,
        dim: 2,
    };
    // k = 1: the nearest point is class 0. k = 5 at a high temperature: 3 votes beat 2.
    let p = knn::predict_many(&train, &labels, &test, &[1, 5], 100.0);
    assert_eq!((p[0][0], p[1][0]), (0, 1));
    // At T = 0.07 the two close class-0 points outweigh three farther class-1 points.
    assert_eq!(
        knn::predict(
            &train,
            &labels,
            &test,
            knn::KnnConfig {
                k: 5,
                temperature: 0.07
            }
        ),
        vec![0]
    );
}
