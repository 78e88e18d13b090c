//! Matrix products of the CPU linear layers (docs/acestep-model.md §14, CPU fast path): the product by a weight
//! packed into f32 or bf16 panels once at load ([`PanelProduct`]), and for other widths a GEMM split by output columns
//! ([`ColumnSplitMatmul`]): inputs of up to a few hundred rows run as one single-threaded GEMM per core over a
//! slice of the output columns, up to 3× faster than one GEMM split by the GEMM library itself, which scales badly
//! at so few rows; every output element is computed by the same kernel with the same summation order.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp2, Layout, Shape};

#[cfg(target_arch = "x86_64")]
use super::bf16_panels::{Bf16Kernel, Bf16Panels};
#[cfg(target_arch = "x86_64")]
use super::panels::{PanelMatrix, PANEL};
use crate::kernels::storage::{f32_slice, written, SendPtr};

/// Output columns per task are a multiple of this (one AVX-512 register of f32).
const COLUMN_ALIGN: usize = 16;

/// `[.., in] · W` for a weight packed into panels, f32 or bf16: the panels are shared out among the rayon pool's
/// threads.
#[cfg(target_arch = "x86_64")]
#[derive(Debug)]
pub enum PanelProduct {
    /// f32 panels (AVX-512).
    F32(PanelMatrix),
    /// bf16 panels (AVX512-BF16, AVX-512 or AVX2; see [`Bf16Panels`]).
    Bf16(Bf16Panels),
}

#[cfg(target_arch = "x86_64")]
impl PanelProduct {
    /// The product by `weight` `[out, in]` given row by row (row-major), when AVX-512 is there and `out` is a whole
    /// number of panels; `None` otherwise.
    pub fn from_weight_rows(weight: &[f32], outputs: usize, inputs: usize) -> Option<Self> {
        PanelMatrix::from_rows(weight, inputs, outputs, inputs, outputs).map(Self::F32)
    }

    /// The product by `weight` `[out, in]` given row by row as bf16 bits, multiplied by `kernel`, when the CPU runs
    /// it and the shape fits the panels (see [`Bf16Panels::from_rows`]); `None` otherwise.
    pub fn from_bf16_weight_rows(weight: &[u16], outputs: usize, inputs: usize, kernel: Bf16Kernel) -> Option<Self> {
        Bf16Panels::from_rows(weight, outputs, inputs, outputs, kernel).map(Self::Bf16)
    }

    /// Bytes of the packed weight.
    pub fn bytes(&self) -> u64 {
        match self {
            Self::F32(panels) => panels.bytes(),
            Self::Bf16(panels) => panels.bytes(),
        }
    }

    /// `[in]`, `[out]`.
    fn dims(&self) -> (usize, usize) {
        match self {
            Self::F32(panels) => (panels.inputs(), panels.outputs()),
            Self::Bf16(panels) => (panels.inputs(), panels.outputs()),
        }
    }
}

/// Tasks per pool thread, so that a core slowed by anything else is balanced by the others taking its panels.
#[cfg(target_arch = "x86_64")]
const TASKS_PER_THREAD: usize = 4;
/// Inputs with more rows than this are split by rows ([`PanelProduct::multiply_rows`]).
#[cfg(target_arch = "x86_64")]
const LONG_ROWS: usize = 4096;
/// Rows per task of a long input.
#[cfg(target_arch = "x86_64")]
const ROW_TASK: usize = 1024;

#[cfg(target_arch = "x86_64")]
impl PanelProduct {
    /// `[rows, outputs]`: row `r` is `x[r·x_stride .. r·x_stride + inputs] · W` (rows overlap when `x_stride` is
    /// below `inputs`). `x` must hold every row, and `x_stride` be even for bf16 panels (whose `inputs` are even).
    ///
    /// Up to [`LONG_ROWS`] rows (a transformer's tokens) the tasks share out the panels, and `bf16dot`'s inputs are
    /// rounded once for all of them; longer inputs (a VAE layer's samples) go in tasks of [`ROW_TASK`] rows and all
    /// panels, each rounding only its own rows: every core has work whatever the width, and no rounded copy of the
    /// whole input is ever held.
    fn multiply_rows(&self, x: &[f32], x_stride: usize, rows: usize) -> candle_core::Result<Vec<f32>> {
        let (inputs, outputs) = self.dims();
        let end = |rows: usize| if rows == 0 { 0 } else { (rows - 1) * x_stride + inputs };
        if x.len() < end(rows) || (matches!(self, Self::Bf16(_)) && !x_stride.is_multiple_of(2)) {
            candle_core::bail!("panel-matmul: {rows} rows {x_stride} apart of {inputs} inputs in {} floats", x.len())
        }
        let prepare = |x: &[f32]| match self {
            Self::Bf16(packed) => packed.prepare(x),
            Self::F32(_) => None,
        };
        let panels = outputs / PANEL;
        let (row_task, per_task) = if rows > LONG_ROWS {
            (ROW_TASK, panels)
        } else {
            (rows.max(1), panels.div_ceil(TASKS_PER_THREAD * rayon::current_num_threads().max(1)))
        };
        let shared = if rows > LONG_ROWS { None } else { prepare(&x[..end(rows)]) };
        let shared = shared.as_deref();
        let fill = |out: &mut [MaybeUninit<f32>]| {
            let dst = SendPtr(out.as_mut_ptr().cast());
            rayon::scope(|scope| {
                for r0 in (0..rows).step_by(row_task) {
                    for p0 in (0..panels).step_by(per_task) {
                        let dst = &dst;
                        scope.spawn(move |_| {
                            let n = row_task.min(rows - r0);
                            let x = &x[r0 * x_stride..][..end(n)];
                            let own = if shared.is_none() { prepare(x) } else { None };
                            let prepared = shared.or(own.as_deref());
                            let (tasks, out) = (p0..(p0 + per_task).min(panels), dst.0.wrapping_add(r0 * outputs));
                            // SAFETY: `x` holds `n` rows of `inputs` floats `x_stride` apart (checked above; and
                            // `prepared` holds them as pairs when the bf16 kernel reads them), `out` is `[rows,
                            // outputs]` and alive for the scope; each task writes only the columns of its own
                            // panels in its own rows.
                            unsafe {
                                match self {
                                    Self::F32(packed) => packed.multiply(x.as_ptr(), x_stride, n, tasks, out, outputs),
                                    Self::Bf16(packed) => {
                                        packed.multiply(x.as_ptr(), x_stride, prepared, n, tasks, out, outputs)
                                    }
                                }
                            }
                        });
                    }
                }
            });
            Ok(())
        };
        // SAFETY: the tasks together write every column of every row: all `rows · outputs` values.
        unsafe { written(rows * outputs, fill) }
    }
}

#[cfg(target_arch = "x86_64")]
impl candle_core::CustomOp1 for PanelProduct {
    fn name(&self) -> &'static str {
        "panel-matmul"
    }

    fn cpu_fwd(&self, x: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (inputs, outputs) = self.dims();
        let dims = layout.shape().dims();
        if dims.last() != Some(&inputs) {
            candle_core::bail!("panel-matmul: input {:?} does not end in the weight's {inputs} inputs", dims)
        }
        let x = f32_slice(x, layout, self.name())?;
        let out = self.multiply_rows(x, inputs, x.len() / inputs)?;
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("checked above") = outputs;
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }
}

/// The windows of a convolution times a weight in panels: for rows `[len, width]`, output row `t` is the `taps`
/// rows from `t` on, read as one row of `taps·width` inputs (an overlapping view: nothing is copied), times the
/// panels `[taps·width, outputs]`. Gives `[windows, outputs]`.
#[cfg(target_arch = "x86_64")]
pub struct WindowProduct<'a> {
    /// The weight, `taps·width` inputs.
    pub panels: &'a PanelProduct,
    /// Output rows.
    pub windows: usize,
}

#[cfg(target_arch = "x86_64")]
impl candle_core::CustomOp1 for WindowProduct<'_> {
    fn name(&self) -> &'static str {
        "window-panel-matmul"
    }

    fn cpu_fwd(&self, x: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (len, width) = layout.shape().dims2()?;
        let (inputs, outputs) = self.panels.dims();
        if width == 0 || !inputs.is_multiple_of(width) || len < self.windows + inputs / width - 1 {
            candle_core::bail!("{}: {len} rows of {width} hold no {} windows of {inputs}", self.name(), self.windows)
        }
        let out = self.panels.multiply_rows(f32_slice(x, layout, self.name())?, width, self.windows)?;
        Ok((CpuStorage::F32(out), Shape::from((self.windows, outputs))))
    }
}

/// The row-major transpose of a row-major `[rows, cols]` matrix, copied in cache-sized tiles (a strided tensor
/// copy walks the source column by column, several times slower on the multi-megabyte weights).
pub fn transpose(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
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
pub struct ColumnSplitMatmul;

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
