//! The one place that knows which burn backend runs: turns `--device` into a burn [`Device`].
//!
//! * `cpu` (default): burn's pure-Rust `flex` backend, multi-threaded with rayon and SIMD.
//! * `tch` (cargo feature `tch`): burn's libtorch backend on the CPU.
//! * `cuda:N` (cargo feature `cuda`): burn's CUDA backend on GPU `N`.
//! * `vulkan`, `vulkan:N`, `vulkan:cpu` (cargo feature `vulkan`): burn's Vulkan backend (CubeCL
//!   kernels as SPIR-V through wgpu) on the best adapter, discrete GPU `N`, or a CPU Vulkan
//!   driver (Mesa's lavapipe), which runs the GPU code path on a machine without a GPU.
//! * `wgpu`, `wgpu:N`, `wgpu:cpu` (cargo feature `wgpu`): the same kernels as WGSL, which
//!   wgpu translates for the platform's API (Vulkan on Linux).

use crate::error::{Error, Result};
use burn::tensor::Device;

/// Parses a device name (`cpu`, `tch`, `cuda:N`, `vulkan[:N|:cpu]`, `wgpu[:N|:cpu]`) into a
/// plain (non-autodiff) burn device.
pub fn parse(name: &str) -> Result<Device> {
    for api in ["vulkan", "wgpu"] {
        if let Some(which) = name.strip_prefix(api) {
            if which.is_empty() || which.starts_with(':') {
                return wgpu_device(api, which.trim_start_matches(':'));
            }
        }
    }
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
                "unknown device '{name}': use cpu, tch, cuda:N, vulkan[:N|:cpu] or wgpu[:N|:cpu]"
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

/// The device `which` of graphics API `api` (`vulkan`: CubeCL's SPIR-V; `wgpu`: WGSL, on the
/// platform's API): "" (the best adapter), `N` (discrete GPU N) or `cpu` (a CPU driver such
/// as lavapipe).
#[cfg_attr(
    not(any(feature = "vulkan", feature = "wgpu")),
    allow(unused_variables)
)]
fn wgpu_device(api: &str, which: &str) -> Result<Device> {
    #[cfg(any(feature = "vulkan", feature = "wgpu"))]
    let kind = match which {
        "" => burn::tensor::DeviceKind::DefaultDevice,
        "cpu" => burn::tensor::DeviceKind::Cpu,
        n => burn::tensor::DeviceKind::DiscreteGpu(n.parse().map_err(|_| {
            Error::Config(format!(
                "bad {api} device '{n}': use {api}, {api}:N or {api}:cpu"
            ))
        })?),
    };
    match api {
        #[cfg(feature = "vulkan")]
        "vulkan" => Ok(Device::vulkan(kind)),
        #[cfg(feature = "wgpu")]
        "wgpu" => Ok(Device::wgpu(kind)),
        _ => Err(Error::Config(format!(
            "{api} devices need a build with `--features {api}`"
        ))),
    }
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
