//! Contrastive methods: an image's views (or its transform, or its future patches) must pick
//! each other out among negatives, from the batch, a queue or a memory bank.

pub mod cpc;
pub mod moco;
pub mod mocov3;
pub mod nnclr;
pub mod npid;
pub mod pirl;
pub mod simclr;
