//! Exact resume for every registered method: 8 steps straight give the same losses and the
//! same checkpoint tensors (model, banks, queues, positive sets, optimizer state) to 1e-5 as
//! 4 steps, a stop inside an epoch, `--resume`, and 4 more steps.

use selfsup::config::RunConfig;
use selfsup::data::{DataSource, Dataset};
use selfsup::train::{self, TrainOptions, checkpoint};
use std::path::Path;
use std::sync::Arc;

/// Steps of the straight run; the split run stops at half of them.
const STEPS: u64 = 8;

/// The run of `method` in this test, on a slice small enough for seconds, with the options
/// that give its trajectory state to carry over a resume (queues in use, a prototype freeze
/// that ends before the stop, a KL warm-up, discriminator dropout, CMA positives).
pub(crate) fn resume_case(method: &str) -> (RunConfig, Arc<Dataset>) {
    let mut cfg = crate::tiny_config(2);
    cfg = cfg.for_method(method);
    cfg.batch_size = 32;
    let embedded = |n: usize| Arc::new(DataSource::Embedded.load().unwrap().train.take(n));
    // 192 images in batches of 32: 6 steps an epoch, so the stop at step 4 is inside epoch 0
    // and the run crosses into epoch 1.
    let mut data = embedded(192);
    match method {
        "moco" => {
            cfg.edit_method_settings(|c: &mut selfsup::methods::contrastive::moco::MocoConfig| {
                c.queue_size = 64;
                c.proj_hidden = 32;
                c.proj_dim = 16;
            })
            .unwrap();
        }
        "swav" => {
            cfg.edit_method_settings(|c: &mut selfsup::methods::clustering::swav::SwavConfig| {
                c.prototypes = 16;
                c.proj_hidden = 32;
                c.proj_dim = 16;
                c.local_crops = 1;
                c.queue_length = 32;
                c.queue_start_epoch = 1;
                c.freeze_prototypes_steps = 2;
            })
            .unwrap();
        }
        "npid" => cfg
            .edit_method_settings(|c: &mut selfsup::methods::contrastive::npid::NpidConfig| {
                c.negatives = 64
            })
            .unwrap(),
        "pirl" => cfg
            .edit_method_settings(|c: &mut selfsup::methods::contrastive::pirl::PirlConfig| {
                c.negatives = 64
            })
            .unwrap(),
        "jigsaw" | "relative_position" => cfg.views.size = 56,
        "mae" => {
            for s in [
                "backbone.kind=\"vit_tiny\"",
                "backbone.vit.dim=32",
                "backbone.vit.depth=1",
                "backbone.vit.heads=2",
                "backbone.vit.patch=7",
                "backbone.vit.image_size=28",
                "optim.kind=\"adamw\"",
            ] {
                cfg.set(s).unwrap();
            }
        }
        "multi" => {
            use selfsup::methods::pretext::multi_task::TaskKind;
            cfg.edit_method_settings(
                |c: &mut selfsup::methods::pretext::multi_task::MultiConfig| {
                    c.tasks = vec![TaskKind::RelativePosition, TaskKind::Rotation];
                },
            )
            .unwrap();
        }
        "colorization" => {
            let photos = selfsup::data::folder::load_folder(
                &crate::shared_data().join("photos"),
                160,
                false,
            )
            .unwrap();
            data = Arc::new(photos.random_crops(192, 40, 1).unwrap());
            cfg.views.size = 32;
            cfg.views.mean = vec![0.5];
            cfg.views.std = vec![0.25];
        }
        "vae" => cfg
            .edit_method_settings(
                |c: &mut selfsup::methods::generative::autoencoder::AutoencoderConfig| {
                    c.kl_warmup_epochs = 1.0
                },
            )
            .unwrap(),
        "bigan" => {
            cfg.optim.kind = selfsup::train::optim::OptimizerKind::AdamW;
            cfg.schedule.lr = 2e-4;
            cfg.edit_method_settings(|c: &mut selfsup::methods::generative::bigan::BiganConfig| {
                c.discriminator_dropout = 0.3;
                c.cycle_weight = 1.0;
            })
            .unwrap();
        }
        "shuffle_learn" | "odd_one_out" | "tracking" | "time_contrastive" => {
            cfg.data = DataSource::Video(crate::shared_data().join("video"));
            cfg.video.holdout = vec!["carphone_pristine".into()];
            cfg.optim.kind = selfsup::train::optim::OptimizerKind::AdamW;
            cfg.schedule.lr = 1e-3;
            if method == "odd_one_out" {
                cfg.edit_method_settings(
                    |c: &mut selfsup::methods::video::odd_one_out::OddOneOutConfig| {
                        c.elements = 4;
                    },
                )
                .unwrap();
                cfg.batch_size = 16;
            }
            if method == "tracking" {
                // 28 px patches need frames of at least 56 px.
                cfg.video.side = 64;
                cfg.edit_method_settings(
                    |c: &mut selfsup::methods::video::tracking::TrackingConfig| {
                        c.hard_after_epochs = 0;
                    },
                )
                .unwrap();
            }
            let splits = cfg.data.load_with(&cfg.load_options()).unwrap();
            cfg.fit_views_to(&splits.train);
            data = Arc::new(splits.train);
        }
        "avc" | "avid_cma" => {
            // 101 training pairs in batches of 32: 3 steps an epoch; of 3 epochs, CMA starts
            // at epoch 1 (step 3), so the stop at step 4 holds positive sets in use.
            cfg.data = DataSource::AudioVisual(crate::shared_data().join("audiovisual/tuxpaint"));
            cfg.folder_side = 32;
            cfg.epochs = 3;
            cfg.optim.kind = selfsup::train::optim::OptimizerKind::AdamW;
            cfg.schedule.lr = 1e-3;
            let splits = cfg.data.load_with(&cfg.load_options()).unwrap();
            cfg.fit_views_to(&splits.train);
            data = Arc::new(splits.train);
        }
        _ => {}
    }
    (cfg, data)
}

pub(crate) fn run(
    cfg: &RunConfig,
    data: &Arc<Dataset>,
    dir: &Path,
    stop: u64,
    resume: bool,
) -> Vec<f32> {
    let opts = TrainOptions {
        out_dir: dir.into(),
        resume,
        progress: false,
    };
    let cfg = RunConfig {
        stop_after_steps: stop,
        ..cfg.clone()
    };
    let out = train::pretrain(&cfg, data.clone(), &opts).unwrap();
    assert_eq!(
        out.steps, stop,
        "{}: stopped at step {}",
        cfg.method, out.steps
    );
    out.losses
}

/// Asserts that `method` resumed inside an epoch continues exactly as without the stop.
fn assert_resumes_exactly(method: &str) {
    let (cfg, data) = resume_case(method);
    let per_epoch = (data.len() / cfg.batch_size) as u64;
    assert!(
        STEPS / 2 % per_epoch != 0 && STEPS <= per_epoch * cfg.epochs as u64,
        "{method}: the stop must fall inside an epoch ({per_epoch} steps each)"
    );
    let (straight, split) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let all = run(&cfg, &data, straight.path(), STEPS, false);
    run(&cfg, &data, split.path(), STEPS / 2, false);
    let rest = run(&cfg, &data, split.path(), STEPS, true);
    assert_eq!(rest.len() as u64, STEPS / 2);
    for (i, (a, b)) in all[(STEPS / 2) as usize..].iter().zip(&rest).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 * a.abs().max(1.0),
            "{method}: step {} after the resume: loss {b} against {a} straight",
            STEPS / 2 + i as u64 + 1
        );
    }
    let (ta, _) = checkpoint::load(&straight.path().join(train::TRAIN_CKPT)).unwrap();
    let (tb, _) = checkpoint::load(&split.path().join(train::TRAIN_CKPT)).unwrap();
    let mut names: Vec<&String> = ta.keys().collect();
    names.sort();
    assert_eq!(
        names,
        {
            let mut n: Vec<&String> = tb.keys().collect();
            n.sort();
            n
        },
        "{method}: the two checkpoints hold other tensors"
    );
    for k in names {
        let (a, b) = (&ta[k], &tb[k]);
        assert_eq!(a.shape, b.shape, "{method}: {k}");
        let diff = a
            .data
            .iter()
            .zip(&b.data)
            .map(|(x, y)| (x - y).abs() / x.abs().max(1.0))
            .fold(0.0f32, f32::max);
        assert!(
            diff <= 1e-5,
            "{method}: {k} differs by {diff} after the resume"
        );
    }
}

#[test]
fn every_method_resumes_exactly_inside_an_epoch() {
    let mut failed = Vec::new();
    for info in selfsup::methods::METHODS {
        let name = info.name;
        let t = std::time::Instant::now();
        let outcome = std::panic::catch_unwind(|| assert_resumes_exactly(name));
        println!(
            "{name}: {} ({:.1} s)",
            if outcome.is_ok() { "exact" } else { "DIFFERS" },
            t.elapsed().as_secs_f64()
        );
        if outcome.is_err() {
            failed.push(name);
        }
    }
    assert!(failed.is_empty(), "resume is not exact for {failed:?}");
}
