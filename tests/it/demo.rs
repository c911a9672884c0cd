//! `selfsup demo`'s accuracy-against-time curve, on a small slice of the embedded data.

use selfsup::data::{DataSource, Splits};

fn small_splits() -> Splits {
    let s = DataSource::Embedded.load().unwrap();
    let train: Vec<usize> = (0..512).collect();
    let test: Vec<usize> = (0..400).collect();
    Splits {
        train: s.train.subset(&train),
        test: Some(s.test.unwrap().subset(&test)),
    }
}

#[test]
fn the_curve_scores_every_epoch_and_ends_at_the_reported_backbone() {
    let splits = small_splits();
    let mut cfg = selfsup::demo::demo_config();
    cfg.epochs = 2;
    cfg.batch_size = 128;
    cfg.fit_views_to(&splits.train);
    let dir = tempfile::tempdir().unwrap();
    let r = selfsup::demo::run(&cfg, &splits, dir.path().join("curve"), false, true).unwrap();
    // One point at initialization, then one after each epoch.
    let epochs: Vec<f64> = r.curve.iter().map(|p| p.epoch).collect();
    assert_eq!(epochs, vec![0.0, 1.0, 2.0]);
    assert!(r.curve.windows(2).all(|w| w[0].seconds <= w[1].seconds));
    // The last snapshot is the trained backbone: the same scores as the report's row.
    let last = &r.curve[2].scores;
    assert_eq!(
        (last.knn20, last.linear, last.n),
        (r.pretrained.knn20, r.pretrained.linear, r.pretrained.n)
    );
    assert_eq!(last.n, 400);
    for f in ["curve.json", "accuracy_vs_time.png", "report.json"] {
        assert!(dir.path().join("curve").join(f).is_file(), "{f} written");
    }
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("curve/curve.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3);

    // Without the curve, no snapshot is kept and none is scored.
    let r = selfsup::demo::run(&cfg, &splits, dir.path().join("plain"), false, false).unwrap();
    assert!(r.curve.is_empty());
    assert!(!dir.path().join("plain/snapshots.jsonl").exists());
}
