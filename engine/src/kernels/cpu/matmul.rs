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
        let rows = x.len() / inputs;
        let panels = outputs / PANEL;
        let per_task = panels.div_ceil(TASKS_PER_THREAD * rayon::current_num_threads().max(1));
        let prepared = match self {
            Self::Bf16(packed) => packed.prepare(x),
            Self::F32(_) => None,
        };
        let prepared = prepared.as_deref();
        let fill = |out: &mut [MaybeUninit<f32>]| {
            let dst = SendPtr(out.as_mut_ptr().cast());
            rayon::scope(|scope| {
                for p0 in (0..panels).step_by(per_task) {
                    let dst = &dst;
                    scope.spawn(move |_| {
                        let (x, tasks) = (x.as_ptr(), p0..(p0 + per_task).min(panels));
                        // SAFETY: `x` is `[rows, inputs]` (and `prepared` holds it as pairs when the bf16 kernel
                        // reads them), `out` is `[rows, outputs]` and alive for the scope; each task writes only the
                        // columns of its own panels.
                        unsafe {
                            match self {
                                Self::F32(packed) => packed.multiply(x, inputs, rows, tasks, dst.0, outputs),
                                Self::Bf16(packed) => packed.multiply(x, prepared, rows, tasks, dst.0, outputs),
                            }
                        }
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
