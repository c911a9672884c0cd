//! The binary on bad input: non-zero exit, one clear line, never a panic.

use std::process::{Command, Output};

fn selfsup(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_selfsup"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// Runs the binary and asserts it succeeded (its stderr in the message).
fn succeeds(args: &[&str]) -> Output {
    let out = selfsup(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn fails_with(args: &[&str], needle: &str) {
    let out = selfsup(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(
        err.contains(needle),
        "{args:?}: stderr should mention '{needle}': {err}"
    );
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
}

#[test]
fn bad_inputs_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out = out.to_str().unwrap();
    fails_with(
        &["pretrain", "--data", "idx:/no/such/folder", "--out", out],
        "/no/such/folder",
    );
    fails_with(
        &["pretrain", "--data", "zip:/x", "--out", out],
        "unknown data kind",
    );
    fails_with(&["pretrain", "--lr=-1", "--out", out], "schedule.lr");
    fails_with(
        &["pretrain", "--method", "nope", "--out", out],
        "unknown method 'nope'",
    );
    fails_with(
        &["pretrain", "--batch-size", "20000", "--out", out],
        "larger than the data set",
    );
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "epochs = 2\nlearning_rate = 3\n").unwrap();
    fails_with(
        &["pretrain", "--config", cfg.to_str().unwrap(), "--out", out],
        "unknown field `learning_rate`",
    );
    fails_with(
        &["eval", "knn", "--checkpoint", "/no/such.safetensors"],
        "/no/such.safetensors",
    );
    fails_with(
        &["pretrain", "--set", "nope.x=1", "--out", out],
        "no setting 'nope'",
    );
    fails_with(
        &["pretrain", "--set", "nope=1", "--out", out],
        "unknown field `nope`",
    );
    fails_with(
        &["pretrain", "--set", "epochs=many", "--out", out],
        "--set epochs=many",
    );
    fails_with(
        &["pretrain", "--set", "epochs", "--out", out],
        "expected KEY=VALUE",
    );
    // A setting only some methods have is refused, with the method named, for the others.
    fails_with(
        &["pretrain", "--pirl-transform", "rotation", "--out", out],
        "no setting 'pirl'",
    );
    fails_with(
        &["pretrain", "--set", "moco.queue_size=3", "--out", out],
        "the method is 'simclr'",
    );
    fails_with(
        &[
            "pretrain",
            "--method",
            "rotation",
            "--temperature",
            "0.1",
            "--out",
            out,
        ],
        "unknown field `temperature`",
    );
    fails_with(
        &[
            "pretrain",
            "--method",
            "moco",
            "--set",
            "moco.queue_size=0",
            "--out",
            out,
        ],
        "moco.queue_size",
    );
    fails_with(
        &[
            "pretrain",
            "--method",
            "cpc",
            "--view-size",
            "12",
            "--out",
            out,
        ],
        "cpc",
    );
    // Pretext-task settings.
    fails_with(
        &["pretrain", "--method", "colorization", "--out", out],
        "colorization needs colour (RGB) images",
    );
    fails_with(
        &[
            "pretrain",
            "--method",
            "multi",
            "--tasks",
            "rotation,rotation",
            "--out",
            out,
        ],
        "each once",
    );
    fails_with(
        &[
            "pretrain",
            "--method",
            "multi",
            "--tasks",
            "rotation,jigsaw",
            "--task-weights",
            "1",
            "--out",
            out,
        ],
        "one non-negative weight per task",
    );
    fails_with(
        &[
            "pretrain",
            "--method",
            "jigsaw",
            "--set",
            "jigsaw.permutations=1",
            "--out",
            out,
        ],
        "jigsaw.permutations = 1",
    );
    fails_with(
        &[
            "pretrain",
            "--set",
            "random_crops=10",
            "--set",
            "random_crop_side=100",
            "--out",
            out,
        ],
        "cannot cut 100 px crops",
    );
    // Video: a method that needs clips on still images, a missing clip, a bad setting.
    fails_with(
        &["pretrain", "--method", "shuffle_learn", "--out", out],
        "learns from video",
    );
    fails_with(
        &[
            "pretrain",
            "--data",
            "video:/no/such/clip.mp4",
            "--out",
            out,
        ],
        "/no/such/clip.mp4",
    );
    fails_with(
        &["pretrain", "--method", "avc", "--out", out],
        "images with sounds",
    );
    fails_with(
        &["pretrain", "--data", "av:/no/such/pairs", "--out", out],
        "/no/such/pairs",
    );
    fails_with(
        &[
            "pretrain",
            "--method",
            "shuffle_learn",
            "--set",
            "shuffle_learn.window=3",
            "--out",
            out,
        ],
        "shuffle_learn.window = 3",
    );
}

#[test]
fn lists_methods_and_backbones() {
    let out = selfsup(&["methods"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("simclr"));
    let out = selfsup(&["backbones"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("resnet50"));
}

#[test]
fn pretrain_eval_and_embed_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let r = run.to_str().unwrap();
    let out = selfsup(&[
        "pretrain",
        "--train-limit",
        "256",
        "--batch-size",
        "64",
        "--epochs",
        "1",
        "--out",
        r,
        "--quiet",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "config.toml",
        "metrics.jsonl",
        "last.safetensors",
        "last.ckpt.safetensors",
    ] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    // config.toml repeats the run: the method's own table with every default filled in.
    let saved = selfsup::config::RunConfig::from_toml_file(&run.join("config.toml")).unwrap();
    let simclr: selfsup::methods::contrastive::simclr::SimClrConfig =
        saved.method_settings().unwrap();
    assert_eq!(simclr, Default::default());
    assert!(
        saved.settings.contains_key("temperature"),
        "{:?}",
        saved.settings
    );
    let ckpt = run.join("last.safetensors");
    let out = selfsup(&[
        "eval",
        "knn",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--k",
        "5",
        "--validation",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("k-NN (k=5"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let npy = dir.path().join("f.npy");
    // The validation fifth of the train split, read as the ConvNet's default features: the
    // last three blocks pooled to 3x3 (64 + 128 + 256 channels x 9 = 4,032 values).
    let out = selfsup(&[
        "embed",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--validation",
        "--out",
        npy.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&npy).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let header = String::from_utf8_lossy(&bytes[..128]);
    assert!(
        header.contains("(1999, 4032") && header.contains("<f4"),
        "{header}"
    );
    assert!(dir.path().join("f.labels.npy").exists());
}

#[test]
fn compare_writes_table_json_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_selfsup"))
        .args([
            "compare",
            // A budget far under one step: every run gets the minimum of one epoch on any
            // machine (at 1 s a fast CPU fitted two epochs of the 2-step slice).
            "--budget-s",
            "0.01",
            "--train-limit",
            "512",
            "--methods",
            "simclr,npid",
            "--seeds",
            "2",
            "--validation",
            // One L2 candidate (no inner validation fits) keeps the probe cheap; it also
            // checks that `--set` reaches runs whose recipe replaces the base config.
            "--set",
            "probe.weight_decays=[0.0]",
            "--quiet",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = std::fs::read_to_string(dir.path().join("table.md")).unwrap();
    assert!(
        table.contains("| simclr | 2 | 1 |")
            && table.contains("| npid | 2 | 1 |")
            && table.contains("| random init | 2 |")
            && table.contains("| raw pixels | 1 |")
            && table.contains(" sd |")
            && table.contains("linear - random init (SE)")
            && table.contains(" SE |"),
        "{table}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("results.json")).unwrap()).unwrap();
    // Two seeds of each method, scored on the 1,999 validation images.
    let results = json["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(
        (results[0]["seed"].as_u64(), results[1]["seed"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(results[0]["scores"]["n"].as_u64(), Some(1999));
    assert_eq!(results[0]["random_init_row"].as_str(), Some("random init"));
    assert!(dir.path().join("simclr/seed-1/last.safetensors").exists());
    let run_cfg = std::fs::read_to_string(dir.path().join("npid/seed-0/config.toml")).unwrap();
    assert!(run_cfg.contains("weight_decays = [0.0]"), "{run_cfg}");
    // Each curve starts at the untrained model (time 0) and ends after the one epoch.
    let curve = json["results"][0]["curve"].as_array().unwrap();
    assert_eq!(curve.len(), 2);
    assert_eq!(curve[0][0].as_f64().unwrap(), 0.0);
    let png = std::fs::read(dir.path().join("knn_vs_time.png")).unwrap();
    assert_eq!(&png[..4], b"\x89PNG");
    let img = image::load_from_memory(&png).unwrap();
    assert_eq!((img.width(), img.height()), (900, 560));
}

/// Every evaluation mode on a briefly trained checkpoint, on small slices of the embedded data.
#[test]
fn eval_modes_svm_lowshot_layers_neighbors_finetune() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = selfsup(&[
        "pretrain",
        "--train-limit",
        "512",
        "--batch-size",
        "64",
        "--epochs",
        "1",
        "--set",
        "backbone.width=0.5",
        "--quiet",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ckpt = run.join("last.safetensors");
    let ckpt = ckpt.to_str().unwrap();
    let eval = |extra: &[&str]| {
        let mut args = vec!["eval"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[
            "--checkpoint",
            ckpt,
            "--train-limit",
            "600",
            "--test-limit",
            "300",
        ]);
        let out = selfsup(&args);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let svm = eval(&["svm", "--costs", "0.1,1,10"]);
    assert!(svm.contains("| T-shirt |") && svm.contains("mAP"), "{svm}");
    let map: f64 = svm
        .split("mAP: ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(map > 30.0 && map <= 100.0, "{svm}");
    // The baselines: raw pixels and the same backbone at random init.
    for extra in [&["linear", "--pixels"][..], &["linear", "--random-init"]] {
        let text = eval(extra);
        assert!(text.contains("linear probe top-1"), "{extra:?}: {text}");
    }
    let low = eval(&["lowshot", "--shots", "1,16", "--seeds", "2"]);
    assert!(low.contains("| 1 |") && low.contains("| 16 |"), "{low}");
    let layers = eval(&["layers", "--layer-dims", "256"]);
    for b in ["block1", "block2", "block3", "block4"] {
        assert!(layers.contains(&format!("| {b} |")), "{layers}");
    }
    assert!(run.join("layers.png").exists());
    let nn = eval(&[
        "neighbors",
        "--queries",
        "4",
        "--neighbors",
        "5",
        "--tsne-points",
        "200",
    ]);
    assert!(nn.contains("of 20"), "{nn}");
    for f in ["neighbors.png", "tsne.png"] {
        let png = std::fs::read(run.join(f)).unwrap();
        assert_eq!(&png[..4], b"\x89PNG", "{f}");
    }
    let ft = eval(&["finetune", "--epochs", "1"]);
    assert!(
        ft.contains("fine-tuned from") && ft.contains("from random init"),
        "{ft}"
    );
}

#[test]
fn finetune_from_another_backbone_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = selfsup(&[
        "pretrain",
        "--train-limit",
        "128",
        "--batch-size",
        "64",
        "--stop-after-steps",
        "1",
        "--set",
        "backbone.width=0.5",
        "--quiet",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ckpt = run.join("last.safetensors");
    fails_with(
        &[
            "train-supervised",
            "--train-limit",
            "128",
            "--batch-size",
            "64",
            "--epochs",
            "1",
            "--init-from",
            ckpt.to_str().unwrap(),
            "--quiet",
            "--out",
            dir.path().join("sup").to_str().unwrap(),
        ],
        "backbone tensors",
    );
}

#[test]
fn bench_runs_workloads_in_fresh_processes_and_writes_its_table() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let o = selfsup(&[
        "bench",
        "--no-python",
        "--workloads",
        "views,step-convnet",
        "--repeats",
        "2",
        "--steps",
        "1",
        "--images",
        "512",
        "--batch",
        "64",
        "--out",
        out,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = std::fs::read_to_string(dir.path().join("bench.md")).unwrap();
    assert!(
        md.contains("| views | images/s |") && md.contains("| step-convnet | images/s |"),
        "{md}"
    );
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("bench.json")).unwrap())
            .unwrap();
    for row in rows.as_array().unwrap() {
        let runs = row["selfsup_runs"].as_array().unwrap();
        assert_eq!(runs.len(), 2);
        assert!(runs.iter().all(|v| v.as_f64().unwrap() > 0.0), "{row}");
        assert!(row["selfsup_rss_mb"].as_f64().unwrap() > 1.0, "{row}");
        assert!(row["pytorch"].is_null());
    }
    fails_with(
        &["bench", "--no-python", "--workloads", "nope", "--out", out],
        "unknown workload 'nope'",
    );
    fails_with(
        &["bench", "--python", "/no/such/python", "--out", out],
        "cannot import torch",
    );
}

/// A user's own folder, end to end: pretrain at `--image-size`, `embed` writes the image
/// paths beside the features, and `neighbors` finds a query's copy first (cosine 1, the
/// query itself left out) and lists the copy as a near-duplicate pair; bad requests are
/// clear errors.
#[test]
fn neighbors_finds_queries_and_duplicates_in_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    let samples = crate::shared_data().join("cifar10-samples");
    let mut names: Vec<_> = std::fs::read_dir(&samples)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    for n in &names {
        std::fs::copy(samples.join(n), photos.join(n)).unwrap();
    }
    // A copy of the first image under another name: the one exact duplicate.
    std::fs::copy(samples.join(&names[0]), photos.join("zz-copy.png")).unwrap();
    let run = dir.path().join("run");
    let data = format!("folder:{}", photos.display());
    succeeds(&[
        "pretrain",
        "--data",
        &data,
        "--image-size",
        "24",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--quiet",
        "--out",
        run.to_str().unwrap(),
    ]);
    let saved = selfsup::config::RunConfig::from_toml_file(&run.join("config.toml")).unwrap();
    assert_eq!((saved.folder_side, saved.views.size), (24, 24));
    let ckpt = run.join("last.safetensors");
    let ckpt = ckpt.to_str().unwrap();
    let npy = dir.path().join("f.npy");
    succeeds(&[
        "embed",
        "--checkpoint",
        ckpt,
        "--split",
        "train",
        "--out",
        npy.to_str().unwrap(),
    ]);
    let paths = std::fs::read_to_string(dir.path().join("f.paths.txt")).unwrap();
    let listed: Vec<&str> = paths.lines().collect();
    assert_eq!(listed.len(), names.len() + 1);
    assert!(listed[0].ends_with(&names[0]) && listed[names.len()].ends_with("zz-copy.png"));

    let found = dir.path().join("found");
    let query = photos.join(&names[0]);
    let other = samples.join(&names[5]);
    succeeds(&[
        "neighbors",
        "--checkpoint",
        ckpt,
        "--query",
        query.to_str().unwrap(),
        other.to_str().unwrap(),
        "-k",
        "3",
        "--duplicates",
        "--threshold",
        "0.9999",
        "--out",
        found.to_str().unwrap(),
    ]);
    let csv = std::fs::read_to_string(found.join("neighbors.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 6, "{csv}");
    // The first query is in the folder: itself left out, its copy first at similarity 1.
    assert!(rows[0][2].ends_with("zz-copy.png"), "{csv}");
    assert!(rows[0][4].parse::<f32>().unwrap() > 0.9999, "{csv}");
    assert!(
        rows[..3].iter().all(|r| !r[2].ends_with(&names[0])),
        "{csv}"
    );
    // The second query is outside the folder: its own copy inside is its best match.
    assert!(rows[3][2].ends_with(&names[5]), "{csv}");
    let sims: Vec<f32> = rows[3..].iter().map(|r| r[4].parse().unwrap()).collect();
    assert!(sims[0] >= sims[1] && sims[1] >= sims[2], "{csv}");
    let dups = std::fs::read_to_string(found.join("duplicates.csv")).unwrap();
    let pairs: Vec<&str> = dups.lines().skip(1).collect();
    assert!(!pairs.is_empty(), "{dups}");
    assert!(
        pairs[0].contains(&names[0]) && pairs[0].contains("zz-copy.png"),
        "{dups}"
    );
    for png in ["neighbors.png", "duplicates.png"] {
        let img = image::open(found.join(png)).unwrap();
        assert!(img.width() > 64 && img.height() > 64, "{png}");
    }

    let out_dir = found.to_str().unwrap();
    fails_with(
        &["neighbors", "--checkpoint", ckpt, "--out", out_dir],
        "nothing to search for",
    );
    fails_with(
        &[
            "neighbors",
            "--checkpoint",
            ckpt,
            "--query",
            "/no/such.png",
            "--out",
            out_dir,
        ],
        "/no/such.png",
    );
    fails_with(
        &[
            "neighbors",
            "--checkpoint",
            ckpt,
            "--duplicates",
            "--threshold",
            "2",
            "--out",
            out_dir,
        ],
        "--threshold",
    );
}
