//! State that methods keep across steps, outside the gradient: the memory bank of NPID, PIRL
//! and AVID ([`bank`]), exponential moving averages of a network's weights, the momentum
//! encoders of MoCo ([`ema`]), and FIFO queues of embeddings, MoCo's keys and NNCLR's support
//! set ([`queue`]).

pub mod bank;
pub mod ema;
pub mod queue;
