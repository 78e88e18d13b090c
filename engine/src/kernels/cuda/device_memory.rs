//! Device memory of a CUDA device as its driver counts it: the bytes in use in the device's default
//! stream-ordered memory pool, which candle allocates from (`cuMemAllocAsync`) wherever the device supports
//! memory pools, and their high-water mark since a reset (the counterpart of PyTorch's
//! `torch.cuda.max_memory_allocated`). `retake bench` reports the peak per group; the activation-headroom test
//! holds the budget's estimates to it on a GPU. Other devices report nothing.

use candle_core::Device;

/// Resets `device`'s peak mark to the bytes in use now, once its queued work is done; false where the device
/// has no such mark (the CPU, a CUDA device without memory pools).
pub fn reset_peak(device: &Device) -> bool {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(cuda) = device {
        return device.synchronize().is_ok() && pool::reset_high_water(cuda).is_some();
    }
    let _ = device;
    false
}

/// Most bytes in use on `device` since the last [`reset_peak`], once its queued work is done.
pub fn peak(device: &Device) -> Option<u64> {
    pool_bytes(device, Counter::Peak)
}

/// Bytes in use on `device` now, once its queued work (frees included) is done.
pub fn in_use(device: &Device) -> Option<u64> {
    pool_bytes(device, Counter::InUse)
}

/// The two byte counts the driver keeps for a memory pool.
#[derive(Clone, Copy)]
enum Counter {
    Peak,
    InUse,
}

fn pool_bytes(device: &Device, counter: Counter) -> Option<u64> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(cuda) = device {
        device.synchronize().ok()?;
        let attribute = match counter {
            Counter::Peak => pool::USED_HIGH,
            Counter::InUse => pool::USED_CURRENT,
        };
        return pool::attribute(cuda, attribute);
    }
    let _ = (device, counter);
    None
}

#[cfg(feature = "cuda")]
mod pool {
    use std::ffi::c_void;

    use candle_core::cuda::cudarc::driver::sys;
    use candle_core::CudaDevice;

    pub(super) const USED_HIGH: sys::CUmemPool_attribute = sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH;
    pub(super) const USED_CURRENT: sys::CUmemPool_attribute =
        sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_CURRENT;

    /// The default memory pool of the device behind `cuda`, with its context bound to this thread.
    fn default_pool(cuda: &CudaDevice) -> Option<sys::CUmemoryPool> {
        let context = cuda.cuda_stream().context().clone();
        context.bind_to_thread().ok()?;
        let mut pool = std::ptr::null_mut();
        // SAFETY: `pool` is a valid out-pointer and the device handle comes from a live context.
        let status = unsafe { sys::cuDeviceGetDefaultMemPool(&mut pool, context.cu_device()) };
        (status == sys::CUresult::CUDA_SUCCESS).then_some(pool)
    }

    /// A byte-count attribute (`cuuint64_t`) of the default pool.
    pub(super) fn attribute(cuda: &CudaDevice, attribute: sys::CUmemPool_attribute) -> Option<u64> {
        let pool = default_pool(cuda)?;
        let mut bytes: u64 = 0;
        // SAFETY: both attributes read here are `cuuint64_t`, written through a pointer to a live `u64`.
        let status = unsafe { sys::cuMemPoolGetAttribute(pool, attribute, (&mut bytes as *mut u64).cast::<c_void>()) };
        (status == sys::CUresult::CUDA_SUCCESS).then_some(bytes)
    }

    /// Sets the default pool's high-water mark back to the bytes in use now (the driver accepts only 0 for
    /// this, meaning "the current use").
    pub(super) fn reset_high_water(cuda: &CudaDevice) -> Option<()> {
        let pool = default_pool(cuda)?;
        let mut zero: u64 = 0;
        // SAFETY: as in `attribute`; the driver reads a `cuuint64_t` of 0.
        let status = unsafe { sys::cuMemPoolSetAttribute(pool, USED_HIGH, (&mut zero as *mut u64).cast::<c_void>()) };
        (status == sys::CUresult::CUDA_SUCCESS).then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_reports_no_device_memory() {
        assert!(!reset_peak(&Device::Cpu));
        assert_eq!((peak(&Device::Cpu), in_use(&Device::Cpu)), (None, None));
    }
}
