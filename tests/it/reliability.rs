//! Interrupted runs, numerical faults and determinism.

use selfsup::config::{NonFinitePolicy, RunConfig};
use selfsup::data::DataSource;
use selfsup::train::optim::OptimizerKind;
use selfsup::train::{self, TrainOptions, checkpoint};
use std::sync::Arc;

fn data(n: usize) -> Arc<selfsup::data::Dataset> {
    Arc::new(DataSource::Embedded.load().unwrap().train.take(n))
}

fn run(
    cfg: &RunConfig,
    dir: &std::path::Path,
    resume: bool,
) -> selfsup::Result<train::TrainOutcome> {
    let opts = TrainOptions {
        out_dir: dir.into(),
        resume,
        progress: false,
    };
    train::pretrain(cfg, data(320), &opts)
}

/// An exploding learning rate: the first step's update overflows the weights, so the second
/// step's loss is not finite.
fn exploding(mut c: RunConfig, policy: NonFinitePolicy) -> RunConfig {
    c.optim.kind = OptimizerKind::Sgd;
    c.schedule.lr = 1e30;
    c.schedule.warmup_epochs = 0.0;
    c.on_nonfinite = policy;
    c
}

#[test]
fn a_non_finite_loss_stops_skips_or_rolls_back_but_never_trains_on() {
    // Stop (the default): an error naming the step and the loss.
    let dir = tempfile::tempdir().unwrap();
    let e = run(
        &exploding(crate::tiny_config(2), NonFinitePolicy::Stop),
        dir.path(),
        false,
    )
    .err()
    .expect("must fail");
    let msg = e.to_string();
    assert!(msg.contains("non-finite") && msg.contains("loss"), "{msg}");
    // Skip: bad batches are skipped, and the run gives up instead of going on forever.
    let dir = tempfile::tempdir().unwrap();
    let e = run(
        &exploding(crate::tiny_config(2), NonFinitePolicy::Skip),
        dir.path(),
        false,
    )
    .err()
    .expect("must fail");
    assert!(e.to_string().contains("giving up"), "{e}");
    // Rollback: one good epoch (checkpoint at step 5), then the exploding rate: every bad step
    // reloads step 5; the checkpoint on disk stays the good one, finite.
    let dir = tempfile::tempdir().unwrap();
    let good = run(&crate::tiny_config(1), dir.path(), false).unwrap();
    assert_eq!(good.steps, 5);
    let e = run(
        &exploding(crate::tiny_config(3), NonFinitePolicy::Rollback),
        dir.path(),
        true,
    )
    .err()
    .expect("must fail");
    assert!(e.to_string().contains("giving up"), "{e}");
    let (t, meta) = checkpoint::load(&dir.path().join(train::TRAIN_CKPT)).unwrap();
    assert_eq!(meta["step"], "5");
    assert!(t.values().all(|p| p.data.iter().all(|v| v.is_finite())));
}

#[test]
fn same_seed_same_loss_curve_bit_for_bit() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let cfg = crate::tiny_config(2);
    let x = run(&cfg, a.path(), false).unwrap().losses;
    let y = run(&cfg, b.path(), false).unwrap().losses;
    assert_eq!(x.len(), 10);
    assert_eq!(
        x.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        y.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    let mut other = cfg.clone();
    other.seed += 1;
    assert_ne!(
        run(&other, b.path(), false).unwrap().losses,
        x,
        "another seed, another curve"
    );
}

/// `kill -9` at 12 pseudo-random moments of a `method` run through the CLI (`args` on top of
/// a small run), with checkpoints every 3 steps (not at epoch ends: 4 steps on 256 images),
/// so some kills land in a write and most resumes start inside an epoch. Each time `--resume` must
/// find a complete checkpoint whose step never goes back; the run ends at its planned step,
/// and its final checkpoint (model, method state, optimizer) equals an uninterrupted run's to
/// 1e-5. Each kill comes 0 to 11 steps after the first step of its start, then
/// `first_kill_ms` plus 0-39 ms.
fn assert_survives_kills(method: &str, args: &[&str], planned: u64, first_kill_ms: u64) {
    let dir = tempfile::tempdir().unwrap();
    let command = |out: &std::path::Path| {
        let mut a: Vec<String> = [
            "pretrain",
            "--method",
            method,
            "--batch-size",
            "64",
            "--epochs",
            "100",
            "--stop-after-steps",
            &planned.to_string(),
            "--set",
            "backbone.width=0.25",
            "--set",
            "checkpoint_every_steps=3",
            "--set",
            "checkpoint_every_epochs=1000",
            "--set",
            "log_every=1",
            "--quiet",
            "--resume",
            "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.push(out.to_str().unwrap().to_string());
        a.extend(args.iter().map(|s| s.to_string()));
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_selfsup"));
        c.args(a)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        c
    };
    let out = dir.path().join("killed");
    let mut seed = 2024u64;
    let mut last_step = 0u64;
    let mut kills = 0;
    while kills < 12 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // A random number of steps (0 to 11) after this start's first step, then a random
        // fraction of a step: counted in steps, so that a faster engine does not reach the
        // planned end in fewer kills.
        let extra_steps = ((seed >> 33) % 12) as usize;
        let wait_ms = first_kill_ms + (seed >> 45) % 40;
        let metrics = out.join("metrics.jsonl");
        let logged = || {
            std::fs::read_to_string(&metrics)
                .map(|t| t.lines().count())
                .unwrap_or(0)
        };
        let before = logged();
        let mut child = command(&out).spawn().unwrap();
        // Start-up (such as decoding video clips) takes longer on a loaded machine; 60 s at
        // the latest.
        let started = std::time::Instant::now();
        let mut target = None;
        while child.try_wait().unwrap().is_none() && started.elapsed().as_secs() < 60 {
            let now = logged();
            match target {
                None if now > before => target = Some(now + extra_steps),
                Some(t) if now >= t => break,
                _ => {}
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        std::thread::sleep(std::time::Duration::from_millis(wait_ms));
        if child.try_wait().unwrap().is_some() {
            break; // finished before the kill
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        let ckpt = out.join(train::TRAIN_CKPT);
        if ckpt.exists() {
            let (_, meta) = checkpoint::load(&ckpt)
                .unwrap_or_else(|e| panic!("{method}: the checkpoint on disk is incomplete: {e}"));
            let step: u64 = meta["step"].parse().unwrap();
            assert!(
                step >= last_step,
                "{method}: checkpoint went back from step {last_step} to {step}"
            );
            assert!(
                step % 3 == 0 || step == planned,
                "{method}: a checkpoint at step {step}, between the planned ones"
            );
            last_step = step;
        }
    }
    assert!(
        kills >= 8,
        "{method}: the run should have been killed at least 8 times ({kills})"
    );
    for dir in [out.clone(), dir.path().join("straight")] {
        let done = command(&dir).output().unwrap();
        assert!(
            done.status.success(),
            "{method}: {}",
            String::from_utf8_lossy(&done.stderr)
        );
    }
    let (killed, meta) = checkpoint::load(&out.join(train::TRAIN_CKPT)).unwrap();
    assert_eq!(
        meta["step"],
        planned.to_string(),
        "{method}: the planned end"
    );
    let (straight, _) =
        checkpoint::load(&dir.path().join("straight").join(train::TRAIN_CKPT)).unwrap();
    assert_eq!(killed.len(), straight.len(), "{method}");
    for (k, a) in &straight {
        let diff = a
            .data
            .iter()
            .zip(&killed[k].data)
            .map(|(x, y)| (x - y).abs() / x.abs().max(1.0))
            .fold(0.0f32, f32::max);
        assert!(
            diff <= 1e-5,
            "{method}: {k} differs by {diff} from the uninterrupted run"
        );
    }
    // The log of the killed run parses line by line and has each step once, in order: a
    // resume drops a line torn by a kill and the records past the checkpoint it resumes from.
    let log = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = log
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let v: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{method}: metrics.jsonl line {}: {e}: {l}", i + 1));
            v["step"].as_u64().unwrap()
        })
        .collect();
    assert!(
        steps.windows(2).all(|w| w[0] < w[1]),
        "{method}: the steps of metrics.jsonl go back or repeat: {steps:?}"
    );
    println!("{method}: {kills} kills, last checkpoint between kills at step {last_step}");
    assert!(
        last_step > 0,
        "{method}: some checkpoints were written between kills"
    );
    // Temporary files of writes cut short are cleared when a run starts.
    let stale = std::fs::read_dir(&out)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tmp-")
        })
        .count();
    assert_eq!(stale, 0, "{method}");
}

/// The planned steps of a killed run. A start advances by its first logged step, 0-11 more
/// (5.5 on average) and what fits in under 40 ms, less the 0-2 steps after its last
/// checkpoint: about 7 steps a kill, so 12 kills take about 85 steps. Fewer than the 8 kills
/// asserted would need over 15 steps a kill on average.
const PLANNED: u64 = 120;

#[test]
fn killed_runs_resume_from_the_last_complete_checkpoint() {
    let small_head = [
        "--train-limit",
        "256",
        "--set",
        "simclr.proj_hidden=32",
        "--set",
        "simclr.proj_dim=16",
    ];
    assert_survives_kills("simclr", &small_head, PLANNED, 0);
}

#[test]
fn killed_runs_of_memory_and_queue_methods_end_as_uninterrupted_ones() {
    let moco = [
        "--train-limit",
        "256",
        "--set",
        "moco.queue_size=128",
        "--set",
        "moco.proj_hidden=32",
        "--set",
        "moco.proj_dim=16",
    ];
    assert_survives_kills("moco", &moco, PLANNED, 0);
    let swav = [
        "--train-limit",
        "256",
        "--set",
        "swav.prototypes=16",
        "--set",
        "swav.proj_hidden=32",
        "--set",
        "swav.proj_dim=16",
        "--set",
        "swav.queue_length=64",
        "--set",
        "swav.queue_start_epoch=2",
        "--set",
        "swav.freeze_prototypes_steps=10",
    ];
    assert_survives_kills("swav", &swav, PLANNED, 0);
    assert_survives_kills(
        "npid",
        &["--train-limit", "256", "--set", "npid.negatives=64"],
        PLANNED,
        0,
    );
}

#[test]
fn killed_runs_of_a_pretext_task_and_a_video_method_end_as_uninterrupted_ones() {
    assert_survives_kills("rotation", &["--train-limit", "256"], PLANNED, 0);
    let video = crate::shared_data().join("video");
    let data = format!("video:{}", video.display());
    let video_args = [
        "--data",
        &data,
        "--set",
        "video.holdout=[\"carphone_pristine\"]",
    ];
    assert_survives_kills("shuffle_learn", &video_args, 100, 0);
}

/// One thread against one thread: the same losses bit for bit; one thread against two: the
/// same within 1e-5 (the order of float sums changes with the split of the work).
#[test]
fn loss_curves_agree_across_thread_counts() {
    let dir = tempfile::tempdir().unwrap();
    let losses = |threads: &str, name: &str| -> Vec<f64> {
        let out = dir.path().join(name);
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_selfsup"))
            .env("RAYON_NUM_THREADS", threads)
            .args([
                "pretrain",
                "--train-limit",
                "320",
                "--batch-size",
                "64",
                "--epochs",
                "1",
                "--set",
                "backbone.width=0.25",
                "--set",
                "log_every=1",
                "--quiet",
                "--out",
            ])
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
        crate::logged_losses(&out)
    };
    let one = losses("1", "a");
    assert_eq!(one.len(), 5);
    assert_eq!(one, losses("1", "b"), "one thread, twice: bit for bit");
    let two = losses("2", "c");
    for (a, b) in one.iter().zip(&two) {
        assert!(
            (a - b).abs() <= 1e-5 * a.abs().max(1.0),
            "1 vs 2 threads: {a} vs {b}"
        );
    }
}
