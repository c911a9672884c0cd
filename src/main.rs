//! The `selfsup` command line: pretrain, evaluate, embed, search neighbours, compare, bench,
//! demo, and list what is available. Each command lives in `cli/<command>.rs`; this file parses and dispatches.

mod cli;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Self-supervised visual representation learning, and evaluation of frozen features.
#[derive(Parser)]
#[command(name = "selfsup", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pretrain SimCLR on the embedded data, then compare the pretrained and random-init backbones.
    Demo(cli::demo::DemoArgs),
    /// Pretrain a backbone with a self-supervised method.
    Pretrain(cli::pretrain::PretrainArgs),
    /// Train the supervised baseline (backbone + linear classifier on labels); evaluate it
    /// like any checkpoint.
    TrainSupervised(cli::pretrain::PretrainArgs),
    /// Evaluate a checkpoint's frozen backbone on a labeled data set.
    Eval(cli::eval::EvalArgs),
    /// Write a checkpoint's features of a data set to a .npy file.
    Embed(cli::embed::EmbedArgs),
    /// Find the images most similar to given ones, or near-duplicate pairs, with a
    /// checkpoint's features: picture grids and CSVs of paths and cosine similarities.
    Neighbors(cli::neighbors::NeighborsArgs),
    /// Write a run folder's report.html (curves, pictures, config); `--eval` adds held-out
    /// k-NN accuracy over time, neighbours and a t-SNE map.
    Report(cli::report::ReportArgs),
    /// Train every method with the same backbone, data and wall-clock budget; table and plot.
    Compare(cli::compare::CompareArgs),
    /// Run the same workloads in selfsup and in PyTorch (`bench/torch_ref.py`), alternating;
    /// table of medians and speed ratios.
    Bench(cli::bench::BenchArgs),
    /// One benchmark workload in this process (what `bench` runs); prints one JSON line.
    #[command(hide = true)]
    BenchWorker(cli::bench::BenchWorkerArgs),
    /// Check the process group of a data-parallel run (`mpirun -np N selfsup dist-check`):
    /// every collective, Sinkhorn over shards, and all-reduce times at gradient sizes.
    DistCheck(cli::dist_check::DistCheckArgs),
    /// List the self-supervised methods.
    Methods,
    /// List the backbones.
    Backbones,
    /// List the data formats.
    Datasets,
    /// List the shipped recipes (`--recipe NAME`).
    Recipes,
}

/// mimalloc: measured 15 % more SimCLR images/s than the system allocator on 2 cores (the
/// training step allocates and frees large activation buffers).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's `mi_option_t` (15 in its v2 and v3 headers, which
/// libmimalloc-sys 0.1 builds).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

unsafe extern "C" {
    /// mimalloc's `mi_option_set` (in the library libmimalloc-sys links; the crate declares it
    /// only behind its `extended` feature).
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// Tells mimalloc never to return freed memory to the OS (purge delay -1) unless the user set
/// `MIMALLOC_PURGE_DELAY`. A training step frees and reallocates the same large activation
/// buffers every step; with mimalloc's default (purge after 10 ms) the kernel zeroes those
/// pages again on each reuse (`clear_page_erms` in `perf`, on the main thread). Measured with
/// `selfsup bench-worker step-mae` on the 2-core AMD EPYC with AVX-512: 49 -> 90 images/s
/// (docs/performance.md). The cost: the process keeps its peak memory until it exits.
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mi_option_set only stores an integer option; any value is valid for it.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

fn main() {
    keep_freed_memory();
    let cli = Cli::parse();
    // Joins the MPI world when a launcher started this process (`mpirun -np N selfsup ...`).
    let session = match selfsup::dist::init() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    };
    let (rank, world) = (selfsup::dist::rank(), selfsup::dist::world_size());
    // Ranks other than 0 only report warnings and errors, prefixed with their rank.
    let level = if rank == 0 {
        tracing::Level::INFO
    } else {
        tracing::Level::WARN
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_max_level(level)
        .init();
    if let Err(e) = run(cli) {
        if world > 1 {
            eprintln!("error (rank {rank} of {world}): {e:#}");
            // The other ranks may be waiting for this one in a collective: end them all.
            selfsup::dist::world().abort(1);
        }
        eprintln!("error: {e:#}");
        drop(session);
        std::process::exit(1);
    }
    drop(session);
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo(a) => cli::demo::run(a),
        Command::Compare(a) => cli::compare::run(a),
        Command::Bench(a) => cli::bench::run(a),
        Command::BenchWorker(a) => cli::bench::worker(a),
        Command::Pretrain(a) => cli::pretrain::run(a),
        Command::DistCheck(a) => cli::dist_check::run(a),
        Command::TrainSupervised(mut a) => {
            a.run.method = Some("supervised".into());
            cli::pretrain::run(a)
        }
        Command::Eval(a) => cli::eval::run(a),
        Command::Embed(a) => cli::embed::run(a),
        Command::Neighbors(a) => cli::neighbors::run(a),
        Command::Report(a) => cli::report::run(a),
        Command::Methods => cli::list::methods(),
        Command::Backbones => cli::list::backbones(),
        Command::Datasets => cli::list::datasets(),
        Command::Recipes => cli::list::recipes(),
    }
}
