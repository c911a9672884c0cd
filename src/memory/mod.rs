//! State that methods keep across steps, outside the gradient: the memory bank of NPID, PIRL
//! and AVID ([`bank`]) and exponential moving averages of a network's weights, the momentum
//! encoders of MoCo ([`ema`]).

pub mod bank;
pub mod ema;
