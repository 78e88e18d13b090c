//! The f32 storage of CPU tensors as the kernels read and write it, and whether a tensor takes the CPU fast paths.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, DType, Device, Layout, Tensor};

/// A vector of `len` values that `fill` writes through the pointer it is given, not zeroed first (zeroing the
/// megabytes of a layer's output ran on the calling thread while the pool's threads waited).
///
/// # Safety
/// When `fill` returns `Ok`, it has written all `len` values.
pub unsafe fn written(
    len: usize,
    fill: impl FnOnce(&mut [MaybeUninit<f32>]) -> candle_core::Result<()>,
) -> candle_core::Result<Vec<f32>> {
    let mut out = Vec::with_capacity(len);
    fill(&mut out.spare_capacity_mut()[..len])?;
    // SAFETY: the caller's contract.
    unsafe { out.set_len(len) };
    Ok(out)
}

/// The output pointer shared by the column tasks.
pub struct SendPtr(pub *mut f32);

// SAFETY: the tasks write disjoint column blocks (see [`super::cpu::matmul`], [`super::cpu::panel_attention`]).
unsafe impl Sync for SendPtr {}

/// Whether `t` is an f32 tensor in CPU memory, which the CPU fast paths take.
pub fn is_cpu_f32(t: &Tensor) -> bool {
    runs_cpu_f32(t.device(), t.dtype())
}

/// Whether a model on `device` in `dtype` runs the CPU fast paths (CPU memory, f32).
pub fn runs_cpu_f32(device: &Device, dtype: DType) -> bool {
    device.is_cpu() && dtype == DType::F32
}

/// The f32 values of a contiguous tensor.
pub fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(values) = storage else { candle_core::bail!("{op} takes f32 tensors") };
    Ok(&values[contiguous_range(layout, op)?])
}

/// The f32 values of a contiguous tensor, to change in place.
pub fn f32_slice_mut<'a>(storage: &'a mut CpuStorage, layout: &Layout, op: &str) -> candle_core::Result<&'a mut [f32]> {
    let CpuStorage::F32(values) = storage else { candle_core::bail!("{op} takes f32 tensors") };
    Ok(&mut values[contiguous_range(layout, op)?])
}

/// Where a contiguous tensor's elements lie in its storage.
fn contiguous_range(layout: &Layout, op: &str) -> candle_core::Result<std::ops::Range<usize>> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(start..end),
        None => candle_core::bail!("{op} takes contiguous tensors"),
    }
}
