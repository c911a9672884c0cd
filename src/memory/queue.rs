//! A FIFO queue of embeddings (a ring buffer of rows): MoCo's queue of keys and NNCLR's
//! support set. It lives outside autograd and is saved in the checkpoint with its write
//! position, so that a resumed run continues with the same queue.

use crate::error::{Error, Result};
use crate::losses::l2_normalize;
use crate::train::checkpoint::HostParam;
use burn::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Writes the rows of `keys` into the ring buffer `queue` (`[K, D]`) from row `ptr` on,
/// wrapping around (the oldest rows are overwritten; of a batch larger than the queue only its
/// last `K` rows are kept). Returns the queue and the next write position.
pub fn fifo_enqueue(mut queue: Tensor<2>, mut ptr: usize, keys: Tensor<2>) -> (Tensor<2>, usize) {
    let [k, d] = queue.dims();
    let b = keys.dims()[0];
    let keys = if b > k {
        keys.narrow(0, b - k, k)
    } else {
        keys
    };
    let mut n = b.min(k);
    let mut off = 0;
    while n > 0 {
        let take = n.min(k - ptr);
        queue = queue.slice_assign([ptr..ptr + take, 0..d], keys.clone().narrow(0, off, take));
        ptr = (ptr + take) % k;
        off += take;
        n -= take;
    }
    (queue, ptr)
}

/// A queue of `[K, D]` rows and its next write position.
#[derive(Clone, Debug)]
pub struct FifoQueue {
    /// The rows (a plain tensor, no gradient).
    pub rows: Tensor<2>,
    /// Where the next row goes.
    pub ptr: usize,
    /// The checkpoint name of the rows; the position is saved as `NAME_ptr`.
    name: &'static str,
}

impl FifoQueue {
    /// `k` random unit rows of width `d` (what fills the queue before real rows arrive),
    /// saved under `name`.
    pub fn random_unit(name: &'static str, k: usize, d: usize, device: &Device) -> Self {
        let rows = l2_normalize(Tensor::<2>::random(
            [k, d],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device.clone().inner(),
        ));
        FifoQueue { rows, ptr: 0, name }
    }

    /// Enqueues the rows of `keys` ([`fifo_enqueue`]).
    pub fn push(&mut self, keys: Tensor<2>) {
        let (rows, ptr) = fifo_enqueue(self.rows.clone(), self.ptr, keys);
        self.rows = rows;
        self.ptr = ptr;
    }

    /// Adds the rows and the position to a checkpoint's tensors.
    pub fn save_into(&self, tensors: &mut BTreeMap<String, HostParam>) {
        let [k, d] = self.rows.dims();
        let data = self
            .rows
            .to_data()
            .convert::<f32>()
            .try_to_vec()
            .expect("f32 queue");
        tensors.insert(
            self.name.into(),
            HostParam {
                shape: vec![k, d],
                data,
            },
        );
        tensors.insert(
            format!("{}_ptr", self.name),
            HostParam {
                shape: vec![1],
                data: vec![self.ptr as f32],
            },
        );
    }

    /// Takes the rows and the position out of a checkpoint's tensors; an error naming `path`
    /// when they are missing or of another size.
    pub fn take_from(
        &mut self,
        tensors: &mut HashMap<String, HostParam>,
        path: &Path,
    ) -> Result<()> {
        let rows = tensors.remove(self.name);
        let ptr = tensors.remove(&format!("{}_ptr", self.name));
        match (rows, ptr) {
            (Some(q), Some(p)) if q.shape == self.rows.dims().to_vec() => {
                self.rows = Tensor::from_data(
                    TensorData::new(q.data, [q.shape[0], q.shape[1]]),
                    &self.rows.device(),
                );
                self.ptr = p.data[0] as usize;
                Ok(())
            }
            _ => Err(Error::Checkpoint {
                path: path.to_path_buf(),
                message: format!("'{}' missing or of another size", self.name),
            }),
        }
    }
}
