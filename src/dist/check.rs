//! `selfsup dist-check`: checks a process group before a long run, like nccl-tests for
//! NCCL: every collective against values each rank can predict, Sinkhorn over row shards
//! against Sinkhorn of the whole batch, and all-reduce timings at gradient-sized messages.

use super::{
    all_gather, all_gather_f64, all_reduce_sum, rank, sinkhorn_sharded, world, world_size,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

/// One checked property and whether it held.
#[derive(Clone, Debug)]
pub struct Check {
    /// What was checked.
    pub what: String,
    /// Largest deviation from the expected values.
    pub max_error: f64,
    /// Whether the deviation is within tolerance.
    pub passed: bool,
}

/// Median time of one all-reduce of `floats` values.
#[derive(Clone, Debug)]
pub struct Timing {
    /// Message size in `f32` values.
    pub floats: usize,
    /// Median seconds per all-reduce (the slowest rank's, as every rank waits for it).
    pub seconds: f64,
    /// Bus bandwidth in GB/s, nccl-tests' convention: `2 (W - 1) / W * bytes / seconds`,
    /// comparable across world sizes.
    pub bus_gb_s: f64,
}

/// What [`run`] found.
#[derive(Clone, Debug)]
pub struct Report {
    /// The process group, in words.
    pub world: String,
    /// Correctness checks.
    pub checks: Vec<Check>,
    /// All-reduce timings in the order of the sizes asked for (none in a single process).
    pub timings: Vec<Timing>,
}

impl Report {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

fn check(what: &str, max_error: f64, tolerance: f64) -> Check {
    Check {
        what: what.into(),
        max_error,
        passed: max_error <= tolerance,
    }
}

fn max_abs_diff(a: impl Iterator<Item = f64>, b: impl Iterator<Item = f64>) -> f64 {
    a.zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// Runs the checks and timings on every rank (all ranks must call it); `sizes` are the
/// all-reduce message sizes to time, in `f32` values, each `repeats` times.
pub fn run(sizes: &[usize], repeats: usize) -> Report {
    let (r, w) = (rank(), world_size());
    let mut checks = Vec::new();

    // All-reduce: rank r contributes r + 1 (+ i / 1000 in slot i).
    let mut buf: Vec<f32> = (0..1000)
        .map(|i| (r + 1) as f32 + i as f32 / 1000.0)
        .collect();
    all_reduce_sum(&mut buf);
    let expected = (0..1000).map(|i| (w * (w + 1) / 2) as f64 + (w * i) as f64 / 1000.0);
    checks.push(check(
        "all-reduce sum",
        max_abs_diff(buf.iter().map(|&v| v as f64), expected),
        1e-3,
    ));

    // All-gather: rank r contributes [r, r, r].
    let got = all_gather(&[r as f32; 3]);
    let expected = (0..w).flat_map(|q| [q as f64; 3]);
    let size_ok = if got.len() == 3 * w {
        0.0
    } else {
        f64::INFINITY
    };
    checks.push(check(
        "all-gather in rank order",
        max_abs_diff(got.iter().map(|&v| v as f64), expected).max(size_ok),
        0.0,
    ));

    // Broadcast from rank 0: every rank ends with rank 0's values.
    let mut b: Vec<f32> = (0..257).map(|i| (r * 1000 + i) as f32).collect();
    world().broadcast(&mut b, 0);
    checks.push(check(
        "broadcast from rank 0",
        max_abs_diff(b.iter().map(|&v| v as f64), (0..257).map(|i| i as f64)),
        0.0,
    ));

    // Sinkhorn over shards of 16 rows against the whole batch (same scores on every rank).
    let (rows, k) = (16, 10);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let scores: Vec<f32> = (0..rows * w * k)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let whole = crate::losses::sinkhorn(&scores, rows * w, k, 0.05, 3);
    let mine = &scores[r * rows * k..(r + 1) * rows * k];
    let sharded = sinkhorn_sharded(mine, rows, k, 0.05, 3);
    let err = max_abs_diff(
        sharded.iter().map(|&v| v as f64),
        whole[r * rows * k..(r + 1) * rows * k]
            .iter()
            .map(|&v| v as f64),
    );
    // Every rank's error, so rank 0 reports the worst.
    let worst = all_gather_f64(&[err]).into_iter().fold(0.0, f64::max);
    checks.push(check(
        "Sinkhorn codes over row shards = codes of the whole batch",
        worst,
        1e-5,
    ));

    let mut timings = Vec::new();
    // One process has nothing to time.
    for &floats in sizes.iter().filter(|_| w > 1) {
        let mut buf = vec![1.0f32; floats];
        all_reduce_sum(&mut buf); // warm-up (connections, buffers)
        let mut times = Vec::with_capacity(repeats);
        for _ in 0..repeats.max(1) {
            let t = Instant::now();
            all_reduce_sum(&mut buf);
            times.push(t.elapsed().as_secs_f64());
        }
        // The slowest rank's median: the time a training step actually waits.
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let seconds = all_gather_f64(&[median]).into_iter().fold(0.0, f64::max);
        let bytes = (floats * 4) as f64;
        let bus = 2.0 * (w as f64 - 1.0) / w as f64 * bytes / seconds.max(1e-12) / 1e9;
        timings.push(Timing {
            floats,
            seconds,
            bus_gb_s: bus,
        });
    }
    Report {
        world: world().describe(),
        checks,
        timings,
    }
}
