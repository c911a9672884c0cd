//! [`Collective`] over MPI (rsmpi): `MPI_COMM_WORLD` of the processes a launcher started.
//! Calls are serialized by a lock, so any thread may make them.

use super::Collective;
use crate::error::{Error, Result};
use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use mpi::environment::{Threading, Universe};
use mpi::topology::{Communicator, SimpleCommunicator};
use std::sync::Mutex;

/// The MPI world of this process.
pub struct MpiWorld {
    rank: usize,
    size: usize,
    library: String,
    lock: Mutex<()>,
}

impl MpiWorld {
    /// Initializes MPI; the returned [`Universe`] shuts it down when dropped.
    pub fn init() -> Result<(MpiWorld, Universe)> {
        let (universe, _threading) = mpi::initialize_with_threading(Threading::Serialized)
            .ok_or_else(|| Error::Config("MPI was already initialized".into()))?;
        let world = universe.world();
        let library = mpi::environment::library_version()
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or("")
            .split(',')
            .next()
            .unwrap_or("")
            .trim_end_matches('\0')
            .to_string();
        Ok((
            MpiWorld {
                rank: world.rank() as usize,
                size: world.size() as usize,
                library,
                lock: Mutex::new(()),
            },
            universe,
        ))
    }

    fn with<T>(&self, f: impl FnOnce(&SimpleCommunicator) -> T) -> T {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        f(&SimpleCommunicator::world())
    }
}

impl Collective for MpiWorld {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.size
    }

    fn all_reduce_sum(&self, buf: &mut [f32]) {
        let send = buf.to_vec();
        self.with(|w| w.all_reduce_into(&send[..], buf, SystemOperation::sum()));
    }

    fn all_reduce_sum_f64(&self, buf: &mut [f64]) {
        let send = buf.to_vec();
        self.with(|w| w.all_reduce_into(&send[..], buf, SystemOperation::sum()));
    }

    fn all_gather(&self, local: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0f32; local.len() * self.size];
        self.with(|w| w.all_gather_into(local, &mut out[..]));
        out
    }

    fn all_gather_f64(&self, local: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0f64; local.len() * self.size];
        self.with(|w| w.all_gather_into(local, &mut out[..]));
        out
    }

    fn broadcast(&self, buf: &mut [f32], root: usize) {
        self.with(|w| w.process_at_rank(root as i32).broadcast_into(buf));
    }

    fn abort(&self, code: i32) -> ! {
        SimpleCommunicator::world().abort(code)
    }

    fn describe(&self) -> String {
        format!("MPI ({}), {} ranks", self.library, self.size)
    }
}
