//! Masked image modelling: hide most of an image and learn to fill it in (MAE).

pub mod mae;
