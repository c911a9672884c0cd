//! The one place that knows which burn backend runs: turns `--device` into a burn [`Device`].
//!
//! * `cpu` (default): burn's pure-Rust `flex` backend, multi-threaded with rayon and SIMD.
//! * `tch` (cargo feature `tch`): burn's libtorch backend on the CPU.
//! * `cuda:N` (cargo feature `cuda`): burn's CUDA backend on GPU `N`.

use crate::error::{Error, Result};
use burn::tensor::Device;

/// Parses a device name (`cpu`, `tch`, `cuda:N`) into a plain (non-autodiff) burn device.
pub fn parse(name: &str) -> Result<Device> {
    match name {
        "cpu" | "flex" => Ok(Device::flex()),
        #[cfg(feature = "tch")]
        #[allow(deprecated)]
        // burn marks its LibTorch backend deprecated; it is the comparison point
        "tch" => Ok(Device::libtorch()),
        #[cfg(not(feature = "tch"))]
        "tch" => Err(Error::Config(
            "device 'tch' needs a build with `--features tch`".into(),
        )),
        _ => match name
            .strip_prefix("cuda:")
            .or(if name == "cuda" { Some("0") } else { None })
        {
            Some(_idx) => cuda(_idx),
            None => Err(Error::Config(format!(
                "unknown device '{name}': use cpu, tch or cuda:N"
            ))),
        },
    }
}

#[cfg(feature = "cuda")]
fn cuda(idx: &str) -> Result<Device> {
    let i: usize = idx
        .parse()
        .map_err(|_| Error::Config(format!("bad CUDA device index '{idx}'")))?;
    Ok(Device::cuda(i))
}

#[cfg(not(feature = "cuda"))]
fn cuda(_idx: &str) -> Result<Device> {
    Err(Error::Config(
        "CUDA devices need a build with `--features cuda` (its build needs internet access)".into(),
    ))
}

/// The device a module's parameters live on (the CPU for a module without parameters).
pub fn of<M: burn::module::Module>(module: &M) -> Device {
    module
        .devices()
        .into_iter()
        .next()
        .unwrap_or_else(Device::flex)
}

/// The values of a float tensor of any rank, row-major, in host memory (a gradient-free copy).
pub fn host_values<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f32> {
    t.detach()
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 tensor data")
}

/// The training device: `base` with gradients enabled.
pub fn training(base: &Device) -> Device {
    base.clone().autodiff()
}
