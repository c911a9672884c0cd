//! Plumbing shared by selfsup's own CPU kernels (the GEMM convolution, the fused BatchNorm,
//! the 2x2 max pooling): reading and building the Flex backend's tensors.

use burn::tensor::{Bytes, DType, Shape};
use burn_flex::{FlexTensor, Layout};
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

/// The values of an f32 Flex tensor, row-major (copied only when it is a strided view).
pub(crate) fn values(t: &FlexTensor) -> Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(
            t.to_contiguous()
                .as_slice::<f32>()
                .expect("a contiguous f32 tensor")
                .to_vec(),
        ),
    }
}

/// A contiguous f32 Flex tensor of `shape` holding `values`.
pub(crate) fn tensor(values: Vec<f32>, shape: &[usize]) -> FlexTensor {
    debug_assert_eq!(values.len(), shape.iter().product::<usize>());
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(Shape::from(shape.to_vec())),
        DType::F32,
    )
}

/// Whether selfsup's own CPU kernels run (see [`set_own_cpu_kernels`]).
static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns selfsup's own CPU kernels (the GEMM convolution, the fused BatchNorm, the 2x2 max
/// pooling) on or off for the whole process (on by default): off, burn's `conv2d`,
/// `BatchNorm` and `MaxPool2d` run. For comparisons
/// (`examples/conv_timing.rs`, the equivalence tests in `tests/it/nets.rs`).
pub fn set_own_cpu_kernels(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether the own kernels apply to a tensor on `device` of `dtype`: they are on, the device
/// is the Flex CPU backend (with or without autodiff), and the values are f32.
pub(crate) fn own_kernels_apply(device: &burn::tensor::Device, dtype: DType) -> bool {
    ENABLED.load(Ordering::Relaxed)
        && dtype == DType::F32
        && matches!(
            device.clone().inner().as_dispatch(),
            burn::backend::DispatchDevice::Flex(_)
        )
}
