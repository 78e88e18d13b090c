//! The VAE's convolutions on CUDA: every kernel tap's GEMM accumulates into the same output through cuBLAS
//! (β = 1 from the second tap), so a conv costs one output-sized buffer and no separate sums. Weights stored below
//! f32 (the decoder in bf16) multiply with TF32 tensor cores, within the precision the weights already have; f32
//! weights (the encoder, kept f32 so a cover's structure does not depend on the device) multiply in full f32.

use candle_core::cuda::cudarc::cublas::sys;
use candle_core::cuda::cudarc::driver::{DevicePtr, DevicePtrMut};
use candle_core::{CpuStorage, CudaStorage, CustomOp2, Layout, Shape, Tensor};

use crate::error::Result;

/// `Σ_i x[i·gap .. i·gap + m] · w_i` for `x` `[rows, width]` and the taps' stacked `w` `[taps·width, n]`, both
/// f32 on a CUDA device; `tf32` allows TF32 tensor cores. Returns `[m, n]` f32.
pub fn accumulate(x: &Tensor, taps: usize, gap: usize, m: usize, w: &Tensor, tf32: bool) -> Result<Tensor> {
    let op = TapConv { taps, gap, m, tf32 };
    Ok(x.contiguous()?.apply_op2_no_bwd(&w.contiguous()?, &op)?)
}

struct TapConv {
    taps: usize,
    gap: usize,
    m: usize,
    tf32: bool,
}

impl CustomOp2 for TapConv {
    fn name(&self) -> &'static str {
        "vae-tap-conv"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("vae-tap-conv runs on CUDA devices only")
    }

    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        x_layout: &Layout,
        w: &CudaStorage,
        w_layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let Self { taps, gap, m, tf32 } = *self;
        let (rows, width) = x_layout.shape().dims2()?;
        let (stacked, n) = w_layout.shape().dims2()?;
        if taps == 0 || stacked != taps * width || rows < (taps - 1) * gap + m {
            candle_core::bail!(
                "vae-tap-conv: {taps} taps {gap} rows apart over {m} outputs need [≥{}, {width}] · [{}, n], got {:?} · {:?}",
                taps.saturating_sub(1) * gap + m,
                taps * width,
                x_layout.shape(),
                w_layout.shape()
            )
        }
        let (Some((x_start, _)), Some((w_start, _))) = (x_layout.contiguous_offsets(), w_layout.contiguous_offsets())
        else {
            candle_core::bail!("vae-tap-conv takes contiguous tensors")
        };
        let device = x.device.clone();
        let (x, w) = (x.as_cuda_slice::<f32>()?, w.as_cuda_slice::<f32>()?);
        // SAFETY: every element of `out` is written by the first tap's GEMM (β = 0) before anything reads it.
        let mut out = unsafe { device.alloc::<f32>(m * n)? };
        let blas = device.cublas_handle();
        let compute = if tf32 {
            sys::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32
        } else {
            sys::cublasComputeType_t::CUBLAS_COMPUTE_32F
        };
        let int =
            |v: usize| i32::try_from(v).map_err(|_| candle_core::Error::Msg(format!("vae-tap-conv: {v} exceeds i32")));
        let (n_i, m_i, width_i) = (int(n)?, int(m)?, int(width)?);
        let stream = out.stream().clone();
        for tap in 0..taps {
            // Column-major view: outᵀ [n × m] (+)= w_tapᵀ [n × width] · x_tapᵀ [width × m], all leading dims natural.
            let w_tap = w.slice(w_start + tap * width * n..);
            let x_tap = x.slice(x_start + tap * gap * width..);
            let (alpha, beta) = (1f32, if tap == 0 { 0f32 } else { 1f32 });
            let (w_ptr, _w_guard) = w_tap.device_ptr(&stream);
            let (x_ptr, _x_guard) = x_tap.device_ptr(&stream);
            let (out_ptr, _out_guard) = out.device_ptr_mut(&stream);
            // SAFETY: the shapes were checked above, so the GEMM reads `width·n` weights after `w_tap`, `m` rows of
            // `width` after `x_tap` and writes the `m·n` elements of `out`; α and β outlive the call.
            unsafe {
                candle_core::cuda::cudarc::cublas::result::gemm_ex(
                    *blas.handle(),
                    sys::cublasOperation_t::CUBLAS_OP_N,
                    sys::cublasOperation_t::CUBLAS_OP_N,
                    n_i,
                    m_i,
                    width_i,
                    (&alpha as *const f32).cast(),
                    w_ptr as *const _,
                    sys::cudaDataType_t::CUDA_R_32F,
                    n_i,
                    x_ptr as *const _,
                    sys::cudaDataType_t::CUDA_R_32F,
                    width_i,
                    (&beta as *const f32).cast(),
                    out_ptr as *mut _,
                    sys::cudaDataType_t::CUDA_R_32F,
                    n_i,
                    compute,
                    sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT_TENSOR_OP,
                )
            }
            .map_err(|e| candle_core::Error::Msg(format!("vae-tap-conv: cuBLAS: {e:?}")))?;
        }
        Ok((CudaStorage::wrap_cuda_slice(out, device), Shape::from((m, n))))
    }
}
