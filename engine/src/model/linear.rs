//! Linear layers `y = x·Wᵀ + b` (spec §14, CPU fast path). On the CPU in f32 the weight is re-laid out once at
//! load for the product the CPU runs fastest:
//! - with AVX-512 and a width that is a whole number of 64-column panels (every transformer projection here),
//!   packed panels multiplied by this crate's own kernel ([`crate::model::panels`]), which packs nothing per
//!   call;
//! - otherwise the transposed `[in, out]` matrix: inputs of up to a few hundred rows run as one single-threaded
//!   GEMM per core over a slice of the output columns, up to 3× faster than one GEMM split by the GEMM library
//!   itself, which scales badly at so few rows; every output element is computed by the same kernel with the
//!   same summation order, so results do not change.
//!
//! Elsewhere (GPU, bf16) the weight is kept as loaded and candle multiplies.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Module, Shape, Tensor};

#[cfg(target_arch = "x86_64")]
use crate::model::panels::{PanelMatrix, PANEL};

use crate::model::resident::ResidentBytes;

/// Output columns per task are a multiple of this (one AVX-512 register of f32).
const COLUMN_ALIGN: usize = 16;
/// Inputs with more rows than this go to candle's own GEMM, which then splits rows as well and packs each input
/// block once instead of once per column block (measured on 2 cores: the column split wins at 70, 125, 229 and
/// 375 rows — the 30 s DiT step 6 % faster — and loses on the 750-row timbre encoder).
const MAX_SPLIT_ROWS: usize = 512;

/// A linear layer computing `x·weightᵀ + bias` for a `weight` `[out, in]` and an optional `bias` `[out]`.
#[derive(Debug, Clone)]
pub struct Linear {
    product: Product,
    bias: Option<Tensor>,
}

/// How a layer's weight is held, chosen at load for the device, dtype and CPU.
#[derive(Debug, Clone)]
enum Product {
    /// `[out, in]`: on the CPU in f32 the transposed view of a contiguous `[in, out]` matrix.
    Matrix(Tensor),
    /// CPU f32 with AVX-512: packed panels.
    #[cfg(target_arch = "x86_64")]
    Panels(std::sync::Arc<PanelProduct>),
}

impl Linear {
    /// A layer computing `x·weightᵀ + bias` for `weight` `[out, in]` (any layout), re-laid out for the CPU when it
    /// lives there in f32 (see the module doc).
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> candle_core::Result<Self> {
        let (outputs, inputs) = weight.dims2()?;
        let product = if is_cpu_f32(&weight) {
            let values = weight.flatten_all()?.to_vec1::<f32>()?;
            #[cfg(target_arch = "x86_64")]
            if let Some(packed) = PanelMatrix::from_rows(&values, inputs, outputs, inputs, outputs) {
                return Ok(Self { product: Product::Panels(std::sync::Arc::new(PanelProduct(packed))), bias });
            }
            let columns = transpose(&values, outputs, inputs);
            Product::Matrix(Tensor::from_vec(columns, (inputs, outputs), weight.device())?.t()?)
        } else {
            Product::Matrix(weight)
        };
        Ok(Self { product, bias })
    }

    /// Multiplies `x` `[.., in]` by the weight, without the bias.
    fn product(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let weight = match &self.product {
            #[cfg(target_arch = "x86_64")]
            Product::Panels(panels) => {
                if !is_cpu_f32(x) {
                    candle_core::bail!("a CPU f32 linear layer got a {:?} input on {:?}", x.dtype(), x.device())
                }
                return x.contiguous()?.apply_op1_no_bwd(panels.as_ref());
            }
            Product::Matrix(weight) => weight,
        };
        let rows = x.elem_count() / weight.dim(1)?.max(1);
        let columns = weight.t()?;
        if is_cpu_f32(x) && rows <= MAX_SPLIT_ROWS && columns.is_contiguous() {
            return x.contiguous()?.apply_op2_no_bwd(&columns, &ColumnSplitMatmul);
        }
        x.broadcast_matmul(&columns)
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.product(x)?;
        match &self.bias {
            Some(bias) => y.broadcast_add(bias),
            None => Ok(y),
        }
    }
}

impl ResidentBytes for Linear {
    fn resident_bytes(&self) -> u64 {
        let weight = match &self.product {
            Product::Matrix(weight) => weight.resident_bytes(),
            #[cfg(target_arch = "x86_64")]
            Product::Panels(panels) => panels.0.bytes(),
        };
        weight + self.bias.as_ref().map_or(0, Tensor::resident_bytes)
    }
}

/// `[.., in] · W` for a weight packed into panels: the panels are shared out among the rayon pool's threads.
#[cfg(target_arch = "x86_64")]
#[derive(Debug)]
struct PanelProduct(PanelMatrix);

/// Tasks per pool thread, so that a core slowed by anything else is balanced by the others taking its panels.
#[cfg(target_arch = "x86_64")]
const TASKS_PER_THREAD: usize = 4;

#[cfg(target_arch = "x86_64")]
impl candle_core::CustomOp1 for PanelProduct {
    fn name(&self) -> &'static str {
        "panel-matmul"
    }

    fn cpu_fwd(&self, x: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (inputs, outputs) = (self.0.inputs(), self.0.outputs());
        let dims = layout.shape().dims();
        if dims.last() != Some(&inputs) {
            candle_core::bail!("panel-matmul: input {:?} does not end in the weight's {inputs} inputs", dims)
        }
        let x = f32_slice(x, layout, self.name())?;
        let rows = x.len() / inputs;
        let panels = outputs / PANEL;
        let per_task = panels.div_ceil(TASKS_PER_THREAD * rayon::current_num_threads().max(1));
        let fill = |out: &mut [MaybeUninit<f32>]| {
            let dst = SendPtr(out.as_mut_ptr().cast());
            rayon::scope(|scope| {
                for p0 in (0..panels).step_by(per_task) {
                    let dst = &dst;
                    // SAFETY: `x` is `[rows, inputs]`, `out` is `[rows, outputs]` and alive for the scope; each task
                    // writes only the columns of its own panels.
                    scope.spawn(move |_| unsafe {
                        self.0.multiply(x.as_ptr(), inputs, rows, p0..(p0 + per_task).min(panels), dst.0, outputs)
                    });
                }
            });
            Ok(())
        };
        // SAFETY: the tasks together write every column of every row: all `rows · outputs` values.
        let out = unsafe { written(rows * outputs, fill)? };
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("checked above") = outputs;
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }
}

/// The row-major transpose of a row-major `[rows, cols]` matrix, copied in cache-sized tiles (a strided tensor
/// copy walks the source column by column, several times slower on the multi-megabyte weights).
fn transpose(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const TILE: usize = 32;
    let mut dst = vec![0f32; rows * cols];
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    dst[c * rows + r] = src[r * cols + c];
                }
            }
        }
    }
    dst
}

/// `[.., K] · [K, N]` → `[.., N]` for contiguous f32 operands: the `N` columns are cut into one block per
/// thread of the rayon pool, each multiplied by a single-threaded GEMM.
struct ColumnSplitMatmul;

impl CustomOp2 for ColumnSplitMatmul {
    fn name(&self) -> &'static str {
        "column-split-matmul"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        w: &CpuStorage,
        w_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (k, n) = w_layout.shape().dims2()?;
        let dims = x_layout.shape().dims();
        if dims.last() != Some(&k) {
            candle_core::bail!("column-split-matmul: input {:?} does not end in the weight's {k} rows", dims)
        }
        let m = x_layout.shape().elem_count() / k.max(1);
        let (x, w) = (f32_slice(x, x_layout, self.name())?, f32_slice(w, w_layout, self.name())?);
        let mut out = vec![0f32; m * n];
        let block = n.div_ceil(rayon::current_num_threads().max(1)).next_multiple_of(COLUMN_ALIGN);
        // Column block `c0..c0 + cols` of every row: disjoint strided regions of `out`, handed out through a raw
        // pointer because they interleave in memory.
        let dst = SendPtr(out.as_mut_ptr());
        rayon::scope(|scope| {
            for c0 in (0..n).step_by(block) {
                let cols = block.min(n - c0);
                let dst = &dst;
                scope.spawn(move |_| {
                    // SAFETY: `x` is `[m, k]`, `w` is `[k, n]` and `out` is `[m, n]`, all row-major and alive for the
                    // scope; each task writes only columns `c0..c0 + cols` of `out`, which no other task touches.
                    unsafe {
                        gemm::gemm(
                            m,
                            cols,
                            k,
                            dst.0.add(c0),
                            1,
                            n as isize,
                            false,
                            x.as_ptr(),
                            1,
                            k as isize,
                            w.as_ptr().add(c0),
                            1,
                            n as isize,
                            0.0,
                            1.0,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        )
                    }
                });
            }
        });
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("checked above") = n;
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }
}

/// A vector of `len` values that `fill` writes through the pointer it is given, not zeroed first (zeroing the
/// megabytes of a layer's output ran on the calling thread while the pool's threads waited).
///
/// # Safety
/// When `fill` returns `Ok`, it has written all `len` values.
pub(crate) unsafe fn written(
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
pub(crate) struct SendPtr(pub(crate) *mut f32);

// SAFETY: the tasks write disjoint column blocks (see `ColumnSplitMatmul::cpu_fwd`, `PanelProduct::cpu_fwd`).
unsafe impl Sync for SendPtr {}

/// Whether `t` is an f32 tensor in CPU memory, which the CPU fast paths of the model's layers take.
pub(crate) fn is_cpu_f32(t: &Tensor) -> bool {
    runs_cpu_f32(t.device(), t.dtype())
}

/// Whether a model on `device` in `dtype` runs the CPU fast paths (CPU memory, f32).
pub(crate) fn runs_cpu_f32(device: &Device, dtype: DType) -> bool {
    device.is_cpu() && dtype == DType::F32
}

/// The f32 values of a contiguous tensor.
pub(crate) fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(values) = storage else { candle_core::bail!("{op} takes f32 tensors") };
    Ok(&values[contiguous_range(layout, op)?])
}

/// The f32 values of a contiguous tensor, to change in place.
pub(crate) fn f32_slice_mut<'a>(
    storage: &'a mut CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'a mut [f32]> {
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

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    fn ramp(shape: &[usize], seed: usize) -> Tensor {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|i| ((i * 7919 + seed) % 211) as f32 / 105.0 - 1.0).collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    /// `x·wᵀ + b` in f64, element by element.
    fn reference(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Vec<f64> {
        let (rows, k) = x.dims2().unwrap();
        let (x, w, b) = (x.to_vec2::<f32>().unwrap(), weight.to_vec2::<f32>().unwrap(), bias.to_vec1::<f32>().unwrap());
        (0..rows)
            .flat_map(|r| (0..w.len()).map(move |o| (r, o)))
            .map(|(r, o)| (0..k).map(|i| x[r][i] as f64 * w[o][i] as f64).sum::<f64>() + b[o] as f64)
            .collect()
    }

    #[test]
    fn panel_widths_take_the_panel_kernel_on_avx512_and_match_an_f64_product() {
        // One and several panels; several feature blocks (> 1024 inputs) and row blocks (> 512 rows); every
        // remainder of the 6-row tile.
        for (rows, k, n) in [(1, 1, 64), (5, 7, 128), (13, 1100, 64), (125, 300, 192), (515, 20, 64), (70, 64, 256)] {
            let (x, weight, bias) = (ramp(&[rows, k], 1), ramp(&[n, k], 2), ramp(&[n], 3));
            let layer = Linear::new(weight.clone(), Some(bias.clone())).unwrap();
            let panels = matches!(layer.product, Product::Panels(_));
            assert_eq!(panels, std::is_x86_feature_detected!("avx512f"), "{rows}x{k}x{n}");
            let got = layer.forward(&x).unwrap();
            assert_eq!(got.dims(), [rows, n]);
            let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for (g, want) in got.iter().zip(reference(&x, &weight, &bias)) {
                assert!((*g as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()) * (k as f64).sqrt(), "{rows}x{k}x{n}");
            }
        }
    }

    #[test]
    fn other_widths_keep_the_transposed_matrix_and_equal_candles_matmul_bit_for_bit() {
        // Up to 512 rows the column-split GEMM, above it candle's own.
        for (rows, k, n) in [(70, 96, 200), (1, 64, 17), (3, 5, 1), (129, 33, 48), (375, 40, 70), (600, 40, 70)] {
            let x = ramp(&[2, rows, k], 1);
            let stored = ramp(&[k, n], 2);
            let bias = ramp(&[n], 3);
            let layer = Linear::new(stored.t().unwrap(), Some(bias.clone())).unwrap();
            assert!(matches!(&layer.product, Product::Matrix(w) if w.t().unwrap().is_contiguous()));
            let got = layer.forward(&x).unwrap();
            let want = x.broadcast_matmul(&stored).unwrap().broadcast_add(&bias).unwrap();
            assert_eq!(got.dims(), [2, rows, n]);
            let diff = (got - want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
            assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0, "{rows}x{k}x{n}");
        }
    }

    #[test]
    fn a_weight_of_the_wrong_width_or_dtype_is_an_error_not_a_panic() {
        let layer = Linear::new(ramp(&[64, 8], 2), None).unwrap();
        assert!(layer.forward(&ramp(&[3, 9], 1)).is_err());
        assert!(layer.forward(&ramp(&[3, 8], 1).to_dtype(DType::BF16).unwrap()).is_err());
    }
}
