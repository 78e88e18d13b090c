//! CUDA kernels and driver calls: the VAE's tap convolution through cuBLAS, and the device memory pool's counters
//! (which answer "nothing" on other devices, so callers need no `cfg`).

pub mod device_memory;
#[cfg(feature = "cuda")]
pub mod tap_conv;
