//! Data-parallel training over several processes: the collective operations a run needs
//! (rank, world size, all-reduce, all-gather, broadcast over flat host buffers), behind one
//! small trait with two implementations:
//!
//! - [`SingleProcess`]: world size 1, every operation a copy (the default);
//! - `MpiWorld` (cargo feature `mpi`): MPI through rsmpi, chosen automatically when the process
//!   was started by `mpirun`/`mpiexec` or `srun` (their environment variables say so).
//!
//! The planned GPU backend (NCCL, through burn's CUDA data-parallel path or cudarc) plugs in
//! under the tensor-level functions of this module ([`average_gradients`], [`gather_rows`],
//! [`GatheredRows::surrogate`], [`broadcast_tensors`]), which then work on device buffers
//! instead of copying through the host; the methods and the trainer call only those and do
//! not change. (burn 0.22's own data-parallel path is NCCL within one process, without an
//! all-gather, and panics on the CPU backend.)
//!
//! How a run uses it (like PyTorch's DistributedDataParallel):
//! - every rank builds the model from the same seed and then takes rank 0's weights
//!   ([`broadcast_tensors`]);
//! - each global batch of `batch_size` images is cut into `world_size` contiguous shards, one
//!   per rank, with the views a single process would make for those images
//!   (`data::loader::LoaderConfig::shard`): the union of the shards is the epoch;
//! - after `backward()` the optimizer averages the gradients over the ranks in one all-reduce
//!   of one flat buffer, parameters in module order ([`average_gradients`]), so every rank
//!   applies the same update;
//! - methods that compare samples across the batch gather what they need: SimCLR its
//!   negatives (with the exact gradient, [`gather_rows_with_grad`]), MoCo its keys and its
//!   shuffled-BN batch, SwAV its Sinkhorn sums, NPID/PIRL/AVID their memory-bank updates;
//! - rank 0 alone writes the run folder and shows progress.
//!
//! Every collective call is timed; [`take_comm_seconds`] reads and clears the total, which the
//! trainer logs per step as `comm_s`.

pub mod check;
#[cfg(feature = "mpi")]
mod mpi;

use crate::device::host_values;
use crate::error::{Error, Result};
use crate::train::checkpoint::HostParam;
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The collective operations of a group of processes (ranks). Every rank must make the same
/// calls in the same order with buffers of the same length.
pub trait Collective: Send + Sync {
    /// This process's rank, `0..world_size()`.
    fn rank(&self) -> usize;
    /// Number of processes.
    fn world_size(&self) -> usize;
    /// Element-wise sum over the ranks, in place.
    fn all_reduce_sum(&self, buf: &mut [f32]);
    /// [`Collective::all_reduce_sum`] in double precision.
    fn all_reduce_sum_f64(&self, buf: &mut [f64]);
    /// Every rank's `local` (all the same length), concatenated in rank order.
    fn all_gather(&self, local: &[f32]) -> Vec<f32>;
    /// [`Collective::all_gather`] in double precision.
    fn all_gather_f64(&self, local: &[f64]) -> Vec<f64>;
    /// Overwrites `buf` on every rank with `root`'s `buf`.
    fn broadcast(&self, buf: &mut [f32], root: usize);
    /// Ends every process of the group with exit status `code` (after an error on one rank,
    /// so that the others do not wait for it forever).
    fn abort(&self, code: i32) -> !;
    /// What implements it (`single process`, `MPI (Open MPI v4.1.4)`).
    fn describe(&self) -> String;
}

/// The one-process world: rank 0 of 1.
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, _buf: &mut [f32]) {}
    fn all_reduce_sum_f64(&self, _buf: &mut [f64]) {}
    fn all_gather(&self, local: &[f32]) -> Vec<f32> {
        local.to_vec()
    }
    fn all_gather_f64(&self, local: &[f64]) -> Vec<f64> {
        local.to_vec()
    }
    fn broadcast(&self, _buf: &mut [f32], _root: usize) {}
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
    fn describe(&self) -> String {
        "single process".into()
    }
}

static WORLD: OnceLock<Box<dyn Collective>> = OnceLock::new();
static COMM_NANOS: AtomicU64 = AtomicU64::new(0);

/// Environment variables by which MPI launchers (Open MPI's `mpirun`, MPICH/Hydra, PMIx,
/// SLURM's `srun --mpi=...`) announce the number of ranks.
const LAUNCHER_SIZE_VARS: &[&str] = &[
    "OMPI_COMM_WORLD_SIZE",
    "PMI_SIZE",
    "PMIX_SIZE",
    "MV2_COMM_WORLD_SIZE",
];

/// The number of ranks a launcher started, if this process was started by one.
pub fn launcher_world_size() -> Option<usize> {
    LAUNCHER_SIZE_VARS
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
}

/// Keeps the process group alive; dropping it shuts MPI down (call before exiting).
pub struct Session {
    #[cfg(feature = "mpi")]
    _universe: Option<::mpi::environment::Universe>,
}

/// Joins the process group: MPI when this binary has the `mpi` feature and a launcher started
/// it (or `SELFSUP_MPI=1`), else a single process. Call once, first thing in `main`; keep the
/// returned [`Session`] until the end. Fails when a launcher started several ranks but the
/// binary cannot talk MPI (they would all write the same run folder).
pub fn init() -> Result<Session> {
    let launched = launcher_world_size();
    #[cfg(feature = "mpi")]
    {
        let forced = std::env::var("SELFSUP_MPI").is_ok_and(|v| v == "1");
        if launched.is_some() || forced {
            let (world, universe) = mpi::MpiWorld::init()?;
            set_world(Box::new(world));
            return Ok(Session {
                _universe: Some(universe),
            });
        }
        set_world(Box::new(SingleProcess));
        Ok(Session { _universe: None })
    }
    #[cfg(not(feature = "mpi"))]
    {
        if let Some(n) = launched.filter(|&n| n > 1) {
            return Err(Error::Config(format!(
                "started by an MPI launcher as one of {n} ranks, but this selfsup was built \
                 without MPI: rebuild with `cargo build --release --features mpi`"
            )));
        }
        set_world(Box::new(SingleProcess));
        Ok(Session {})
    }
}

fn set_world(world: Box<dyn Collective>) {
    // A second init (tests call the library without `init`) keeps the first world.
    let _ = WORLD.set(world);
}

/// The process group ([`SingleProcess`] when [`init`] was not called).
pub fn world() -> &'static dyn Collective {
    WORLD.get_or_init(|| Box::new(SingleProcess)).as_ref()
}

/// This process's rank.
pub fn rank() -> usize {
    world().rank()
}

/// Number of ranks.
pub fn world_size() -> usize {
    world().world_size()
}

/// Whether this process writes files and prints progress (rank 0).
pub fn is_primary() -> bool {
    rank() == 0
}

/// Seconds spent in collective operations since the last call (including the wait for the
/// slowest rank), and clears the count.
pub fn take_comm_seconds() -> f64 {
    COMM_NANOS.swap(0, Ordering::Relaxed) as f64 * 1e-9
}

fn timed<T>(f: impl FnOnce(&dyn Collective) -> T) -> T {
    let start = Instant::now();
    let out = f(world());
    COMM_NANOS.fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
    out
}

/// Element-wise sum over the ranks, in place (timed).
pub fn all_reduce_sum(buf: &mut [f32]) {
    if world_size() > 1 {
        timed(|w| w.all_reduce_sum(buf));
    }
}

/// Element-wise sum over the ranks in double precision, in place (timed).
pub fn all_reduce_sum_f64(buf: &mut [f64]) {
    if world_size() > 1 {
        timed(|w| w.all_reduce_sum_f64(buf));
    }
}

/// Every rank's `local`, concatenated in rank order (timed).
pub fn all_gather(local: &[f32]) -> Vec<f32> {
    if world_size() > 1 {
        timed(|w| w.all_gather(local))
    } else {
        local.to_vec()
    }
}

/// Every rank's `local` in double precision, concatenated in rank order (timed).
pub fn all_gather_f64(local: &[f64]) -> Vec<f64> {
    if world_size() > 1 {
        timed(|w| w.all_gather_f64(local))
    } else {
        local.to_vec()
    }
}

/// The mean of `value` over the ranks.
pub fn mean_f64(value: f64) -> f64 {
    let mut v = [value];
    all_reduce_sum_f64(&mut v);
    v[0] / world_size() as f64
}

/// Every rank's indices (all the same count), concatenated in rank order.
pub fn all_gather_indices(local: &[usize]) -> Vec<usize> {
    let as_f64: Vec<f64> = local.iter().map(|&i| i as f64).collect();
    all_gather_f64(&as_f64)
        .into_iter()
        .map(|v| v as usize)
        .collect()
}

/// The rows of every rank's `local` (`[b, d]`, the same `b` everywhere), stacked in rank order
/// as `[world_size * b, d]`, without gradient.
pub fn gather_rows(local: Tensor<2>) -> Tensor<2> {
    if world_size() == 1 {
        return local.detach();
    }
    let [b, d] = local.dims();
    let device = local.device();
    let all = all_gather(&host_values(local));
    Tensor::from_data(TensorData::new(all, [world_size() * b, d]), &device)
}

/// Rows of a sharded batch that has to be compared across ranks, gathered so that the loss
/// can be computed on all of them while the gradient stays exact.
///
/// `gathered` is every rank's rows in rank order as a fresh leaf that requires gradient.
/// Compute this rank's share of the loss from it (terms of this rank's own samples, scaled so
/// that the mean over ranks is the global loss), backward that, and pass the gradient of
/// `gathered` to [`GatheredRows::surrogate`]: it sums the gradients of all ranks (every rank's
/// loss depends on every rank's rows) and returns a scalar whose gradient with respect to this
/// rank's `local` rows is that sum. Averaging the parameter gradients over the ranks then
/// gives exactly the single-process gradient of the global loss.
pub struct GatheredRows {
    /// All ranks' rows `[world_size * b, d]`, a leaf requiring gradient.
    pub gathered: Tensor<2>,
    local: Tensor<2>,
}

/// Gathers `local` (`[b, d]`, in the autodiff graph) from every rank; see [`GatheredRows`].
pub fn gather_rows_with_grad(local: Tensor<2>) -> GatheredRows {
    let gathered = gather_rows(local.clone()).require_grad();
    GatheredRows { gathered, local }
}

impl GatheredRows {
    /// A scalar to backpropagate through the network: `sum(local * g_r)`, where `g_r` is this
    /// rank's rows of the sum over ranks of `grad` (the gradient of each rank's loss share with
    /// respect to [`GatheredRows::gathered`]).
    pub fn surrogate(self, grad: Tensor<2>) -> Tensor<1> {
        let [n, d] = grad.dims();
        let b = n / world_size();
        let device = self.local.device();
        let mut summed = host_values(grad);
        all_reduce_sum(&mut summed);
        let mine = summed[rank() * b * d..(rank() + 1) * b * d].to_vec();
        let g = Tensor::<2>::from_data(TensorData::new(mine, [b, d]), &device);
        (self.local * g).sum()
    }
}

/// Collects the gradient of every parameter of a module, in module order.
struct GradCollector<'a> {
    grads: &'a mut GradientsParams,
    taken: Vec<(ParamId, Vec<usize>, Vec<f32>)>,
}

impl ModuleVisitor for GradCollector<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            let dims = g.dims().to_vec();
            self.taken.push((param.id, dims, host_values(g)));
        }
    }
}

/// The mean over the ranks of each gradient in `grads` (the parameters of `module`), in one
/// all-reduce of one flat buffer; unchanged in a single process. Every rank must hold
/// gradients for the same parameters (they run the same code on same-shaped shards).
pub fn average_gradients<M: Module>(module: &M, mut grads: GradientsParams) -> GradientsParams {
    let world = world_size();
    if world == 1 {
        return grads;
    }
    let mut collector = GradCollector {
        grads: &mut grads,
        taken: Vec::new(),
    };
    module.visit(&mut collector);
    let taken = collector.taken;
    let mut flat: Vec<f32> = Vec::with_capacity(taken.iter().map(|t| t.2.len()).sum());
    for (_, _, g) in &taken {
        flat.extend_from_slice(g);
    }
    all_reduce_sum(&mut flat);
    let scale = 1.0 / world as f32;
    let device = module.devices().into_iter().next();
    let mut at = 0;
    for (id, dims, g) in taken {
        let n = g.len();
        let mean: Vec<f32> = flat[at..at + n].iter().map(|v| v * scale).collect();
        at += n;
        register(&mut grads, id, dims, mean, device.as_ref());
    }
    grads
}

fn register(
    grads: &mut GradientsParams,
    id: ParamId,
    dims: Vec<usize>,
    data: Vec<f32>,
    device: Option<&Device>,
) {
    let device = device.cloned().unwrap_or_default();
    let data = TensorData::new(data, dims.clone());
    match dims.len() {
        1 => grads.register::<1>(id, Tensor::from_data(data, &device)),
        2 => grads.register::<2>(id, Tensor::from_data(data, &device)),
        3 => grads.register::<3>(id, Tensor::from_data(data, &device)),
        4 => grads.register::<4>(id, Tensor::from_data(data, &device)),
        5 => grads.register::<5>(id, Tensor::from_data(data, &device)),
        r => panic!("gradients of rank {r} are not supported"),
    }
}

/// Rank 0's values of every tensor in `tensors` (names in sorted order, one broadcast of one
/// flat buffer): makes every rank start from the same weights, banks and queues.
pub fn broadcast_tensors(
    mut tensors: BTreeMap<String, HostParam>,
) -> Result<BTreeMap<String, HostParam>> {
    if world_size() == 1 {
        return Ok(tensors);
    }
    // The same tensors everywhere, or the flat buffers would not line up.
    let shape = [
        tensors.len() as f64,
        tensors.values().map(|t| t.data.len()).sum::<usize>() as f64,
    ];
    if all_gather_f64(&shape).chunks(2).any(|s| s != shape) {
        return Err(Error::Config(
            "the ranks built different models (different configs or data?)".into(),
        ));
    }
    let mut flat: Vec<f32> = Vec::with_capacity(tensors.values().map(|t| t.data.len()).sum());
    for t in tensors.values() {
        flat.extend_from_slice(&t.data);
    }
    timed(|w| w.broadcast(&mut flat, 0));
    let mut at = 0;
    for t in tensors.values_mut() {
        let n = t.data.len();
        t.data.copy_from_slice(&flat[at..at + n]);
        at += n;
    }
    Ok(tensors)
}

/// [`crate::losses::sinkhorn`] over a batch whose rows are spread over the ranks: this rank
/// holds `n_local` rows of `scores` (`[n_local, k]`); the column sums of every iteration are
/// combined over the ranks (in the log domain), so the codes of each rank's rows are the rows
/// of the codes a single process computes for the whole batch.
pub fn sinkhorn_sharded(
    scores: &[f32],
    n_local: usize,
    k: usize,
    epsilon: f64,
    iterations: usize,
) -> Vec<f32> {
    crate::losses::sinkhorn_with(scores, n_local, k, epsilon, iterations, &combine_log_sums)
}

/// Combines per-rank log-sum-exps (`partial[j]` over this rank's rows) into log-sum-exps over
/// all ranks' rows, in place.
fn combine_log_sums(partial: &mut [f64]) {
    if world_size() == 1 {
        return;
    }
    let w = world_size();
    let k = partial.len();
    let all = all_gather_f64(partial);
    for (j, p) in partial.iter_mut().enumerate() {
        let vals = (0..w).map(|r| all[r * k + j]);
        let m = vals.clone().fold(f64::NEG_INFINITY, f64::max);
        *p = if m == f64::NEG_INFINITY {
            m
        } else {
            m + vals.map(|v| (v - m).exp()).sum::<f64>().ln()
        };
    }
}
