//! `selfsup dist-check`: checks the process group of a data-parallel run.

use anyhow::{Result, bail};
use clap::Args;

#[derive(Args)]
/// Flags of `dist-check`.
pub struct DistCheckArgs {
    /// All-reduce message sizes to time, in f32 values (default: 1 Ki, the small ConvNet +
    /// SimCLR head's 0.6 Mi gradients, ResNet-18's 11 Mi).
    #[arg(long, value_delimiter = ',', default_value = "1024,600000,11200000")]
    pub sizes: Vec<usize>,
    /// Timed all-reduces per size (median reported).
    #[arg(long, default_value_t = 10)]
    pub repeats: usize,
}

/// Runs every collective check and prints the report.
pub fn run(a: DistCheckArgs) -> Result<()> {
    let report = selfsup::dist::check::run(&a.sizes, a.repeats);
    if !selfsup::dist::is_primary() {
        return if report.passed() {
            Ok(())
        } else {
            bail!("dist-check failed")
        };
    }
    println!("{}", report.world);
    for c in &report.checks {
        println!(
            "  {:<4} {} (max error {:.2e})",
            if c.passed { "ok" } else { "FAIL" },
            c.what,
            c.max_error
        );
    }
    if report.timings.is_empty() {
        println!("one process: no communication to time (start it under mpirun -np N)");
    } else {
        println!(
            "all-reduce (sum, f32), slowest rank's median of {}:",
            a.repeats
        );
    }
    for t in &report.timings {
        println!(
            "  {:>10} floats ({:>8.2} MB): {:>9.3} ms, bus bandwidth {:.2} GB/s",
            t.floats,
            t.floats as f64 * 4e-6,
            t.seconds * 1e3,
            t.bus_gb_s
        );
    }
    if !report.passed() {
        bail!("dist-check failed");
    }
    Ok(())
}
