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

/// `kill -9` at 20 pseudo-random moments (some during checkpoint writes, which happen every
/// 4 steps here); each time `--resume` must find a complete checkpoint and go on; the run ends
/// at the scheduled step with a loadable checkpoint.
#[test]
fn killed_runs_resume_from_the_last_complete_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let args = |extra: &[&str]| {
        let mut a: Vec<String> = [
            "pretrain",
            "--train-limit",
            "256",
            "--batch-size",
            "64",
            "--epochs",
            "100",
            "--set",
            "backbone.width=0.25",
            "--set",
            "simclr.proj_hidden=32",
            "--set",
            "simclr.proj_dim=16",
            "--quiet",
            "--resume",
            "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.push(out.to_str().unwrap().to_string());
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let mut seed = 2024u64;
    let mut last_step = 0u64;
    let mut kills = 0;
    while kills < 20 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let wait_ms = 300 + (seed >> 33) % 1000;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_selfsup"))
            .args(args(&[]))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(wait_ms));
        if child.try_wait().unwrap().is_some() {
            break; // finished before the kill
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        let ckpt = out.join(train::TRAIN_CKPT);
        if ckpt.exists() {
            let (_, meta) =
                checkpoint::load(&ckpt).expect("the checkpoint on disk is always complete");
            let step: u64 = meta["step"].parse().unwrap();
            assert!(
                step >= last_step,
                "checkpoint went back from step {last_step} to {step}"
            );
            assert_eq!(step % 4, 0, "checkpoints are written at epoch ends");
            last_step = step;
        }
    }
    assert!(
        kills >= 10,
        "the run should have been killed at least 10 times ({kills})"
    );
    let done = std::process::Command::new(env!("CARGO_BIN_EXE_selfsup"))
        .args(args(&[]))
        .output()
        .unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let (_, meta) = checkpoint::load(&out.join(train::TRAIN_CKPT)).unwrap();
    assert_eq!(meta["step"], "400", "100 epochs of 4 steps");
    assert!(last_step > 0, "some checkpoints were written between kills");
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
    assert_eq!(stale, 0);
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
