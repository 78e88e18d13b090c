//! The CPU f32 product `x·Wᵀ` on AVX-512 over weights packed once at load (spec §14, CPU fast path).
//!
//! The weight is stored as panels of [`PANEL`] output columns, each panel `[in, PANEL]` contiguous, so the
//! kernel streams a panel with aligned loads and reads the activations straight from their row-major rows: no
//! packing copy per call (a general GEMM packs both operands every time, which costs as much as the arithmetic at
//! the few hundred rows a transformer sees here). Each thread owns a run of panels; within a panel, blocks of
//! [`SHALLOW`] or [`DEEP`] input features keep the panel slice in the core's caches while every row block of the input sweeps
//! it, and each row block prefetches its share of the next slice into L2 (the weights stream from memory once
//! per call: without the prefetch the first row block waits on memory, 10–20 % of the time at 70–125 rows).
//! Every output element is one fused multiply-add chain in input order.

use std::arch::x86_64::{__m512, _mm512_fmadd_ps, _mm512_load_ps, _mm512_loadu_ps, _mm_prefetch, _MM_HINT_T1};
use std::arch::x86_64::{_mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps};

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};

use super::{f32_slice, SendPtr};

/// Output columns per panel: four AVX-512 registers of f32.
pub(super) const PANEL: usize = 64;
/// Input rows per register tile (4 × `ROWS` accumulators plus 4 weight registers fit the 32 vector registers).
const ROWS: usize = 6;
/// Input features per pass over a panel for up to [`FEW_ROWS`] rows: a 32 KiB panel slice, which stays in L1
/// while every row block uses it.
const SHALLOW: usize = 128;
/// Input features per pass over a panel for more rows: a 256 KiB slice in L2, so each output tile is loaded and
/// stored fewer times (measured with cold weights on 2 cores: the shallow pass is 5–15 % faster at 70–125 rows,
/// the deep one 5–20 % faster at 375–750).
const DEEP: usize = 1024;
/// See [`SHALLOW`].
const FEW_ROWS: usize = 256;
/// Input rows per pass over the panels, so that long inputs are not re-read from memory for every panel.
const ROW_BLOCK: usize = 512;
/// Tasks per pool thread, so that a core slowed by anything else is balanced by the others taking its panels.
const TASKS_PER_THREAD: usize = 4;
/// Floats per 64-byte cache line, the panels' alignment.
const LINE: usize = 16;

/// A `[out, in]` weight packed into panels for [`PanelWeight::cpu_fwd`].
#[derive(Debug)]
pub(super) struct PanelWeight {
    /// Panel `p`, feature `i`, column `c` at `offset + (p·inputs + i)·PANEL + c`.
    values: Vec<f32>,
    /// Start of the first panel in `values`, aligned to a cache line.
    offset: usize,
    inputs: usize,
    outputs: usize,
}

impl PanelWeight {
    /// Packs the row-major `[outputs, inputs]` `weight`, or `None` where this kernel does not apply (no AVX-512 on
    /// this CPU, or `outputs` not a whole number of panels).
    pub(super) fn pack(weight: &[f32], outputs: usize, inputs: usize) -> Option<Self> {
        if outputs == 0 || !outputs.is_multiple_of(PANEL) || inputs == 0 || !std::is_x86_feature_detected!("avx512f") {
            return None;
        }
        let mut values = vec![0f32; outputs * inputs + LINE];
        let offset = values.as_ptr().align_offset(LINE * size_of::<f32>());
        if offset >= LINE {
            return None;
        }
        let packed = &mut values[offset..offset + outputs * inputs];
        const TILE: usize = 64;
        for panel in 0..outputs / PANEL {
            let dst = &mut packed[panel * inputs * PANEL..(panel + 1) * inputs * PANEL];
            for i0 in (0..inputs).step_by(TILE) {
                for c in 0..PANEL {
                    let row = &weight[(panel * PANEL + c) * inputs..(panel * PANEL + c + 1) * inputs];
                    for i in i0..(i0 + TILE).min(inputs) {
                        dst[i * PANEL + c] = row[i];
                    }
                }
            }
        }
        Some(Self { values, offset, inputs, outputs })
    }

    /// Bytes of the packed weight.
    pub(super) fn bytes(&self) -> u64 {
        (self.inputs * self.outputs * size_of::<f32>()) as u64
    }

    /// Panels `panels` of the product for every input row into `out` (`[rows, outputs]` row-major).
    ///
    /// # Safety
    /// AVX-512F is available (checked in [`PanelWeight::pack`]), `x` holds `rows × inputs` floats, `out` points to
    /// `rows × outputs` writable floats, and no other thread writes the columns of `panels` meanwhile.
    unsafe fn sweep(&self, x: &[f32], rows: usize, panels: std::ops::Range<usize>, out: *mut f32) {
        let packed = &self.values[self.offset..];
        let block = if rows <= FEW_ROWS { SHALLOW } else { DEEP };
        for r0 in (0..rows).step_by(ROW_BLOCK) {
            let r1 = (r0 + ROW_BLOCK).min(rows);
            for panel in panels.clone() {
                for i0 in (0..self.inputs).step_by(block) {
                    let depth = block.min(self.inputs - i0);
                    let w = packed[(panel * self.inputs + i0) * PANEL..].as_ptr();
                    // The next slice (of this panel or the next one) follows this one in memory.
                    let next = w.wrapping_add(depth * PANEL);
                    let share = (depth * PANEL / LINE).div_ceil((r1 - r0).div_ceil(ROWS)).min(depth);
                    for (t, r) in (r0..r1).step_by(ROWS).enumerate() {
                        let tile = Tile {
                            x: x[r * self.inputs + i0..].as_ptr(),
                            x_stride: self.inputs,
                            w,
                            depth,
                            out: unsafe { out.add(r * self.outputs + panel * PANEL) },
                            out_stride: self.outputs,
                            accumulate: i0 > 0,
                            prefetch: next.wrapping_add(t * share * LINE),
                            prefetch_lines: share,
                        };
                        // SAFETY: the caller's contract; the tile stays inside `x`, the panel and `out`.
                        unsafe {
                            match r1 - r {
                                1 => tile.run::<1>(),
                                2 => tile.run::<2>(),
                                3 => tile.run::<3>(),
                                4 => tile.run::<4>(),
                                5 => tile.run::<5>(),
                                _ => tile.run::<ROWS>(),
                            }
                        }
                    }
                }
            }
        }
    }
}

impl CustomOp1 for PanelWeight {
    fn name(&self) -> &'static str {
        "panel-matmul"
    }

    fn cpu_fwd(&self, x: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = layout.shape().dims();
        if dims.last() != Some(&self.inputs) {
            candle_core::bail!("panel-matmul: input {:?} does not end in the weight's {} inputs", dims, self.inputs)
        }
        let x = f32_slice(x, layout, self.name())?;
        let rows = x.len() / self.inputs;
        let mut out = vec![0f32; rows * self.outputs];
        let panels = self.outputs / PANEL;
        let per_task = panels.div_ceil(TASKS_PER_THREAD * rayon::current_num_threads().max(1));
        let dst = SendPtr(out.as_mut_ptr());
        rayon::scope(|scope| {
            for p0 in (0..panels).step_by(per_task) {
                let dst = &dst;
                // SAFETY: `pack` checked AVX-512F; `x` is `[rows, inputs]`, `out` is `[rows, outputs]` and alive
                // for the scope; each task writes only the columns of its own panels.
                scope.spawn(move |_| unsafe { self.sweep(x, rows, p0..(p0 + per_task).min(panels), dst.0) });
            }
        });
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("checked above") = self.outputs;
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }
}

/// One register tile: up to [`ROWS`] input rows × one panel's [`PANEL`] columns over `depth` features.
struct Tile {
    /// First row's first feature; row `r` starts `r · x_stride` later.
    x: *const f32,
    x_stride: usize,
    /// The panel at the first feature, `[depth, PANEL]`, cache-line aligned.
    w: *const f32,
    depth: usize,
    /// First row's first column of the output; row `r` starts `r · out_stride` later.
    out: *mut f32,
    out_stride: usize,
    /// Add to what `out` holds (a later block of features) instead of overwriting it.
    accumulate: bool,
    /// Cache lines from here on to prefetch into L2, one per feature (addresses may lie past the weights: a
    /// prefetch never faults).
    prefetch: *const f32,
    prefetch_lines: usize,
}

impl Tile {
    /// `out[r, c] (+)= Σ_i x[r, i] · w[i, c]` for `R` rows, the sum in feature order.
    ///
    /// # Safety
    /// AVX-512F is available and the pointers cover `R` rows of `depth` features, the `[depth, PANEL]` panel and
    /// `R` rows of `PANEL` outputs.
    #[target_feature(enable = "avx512f")]
    unsafe fn run<const R: usize>(&self) {
        let mut acc = [[_mm512_setzero_ps(); 4]; R];
        // SAFETY (whole body): the pointer ranges named in the contract.
        unsafe {
            if self.accumulate {
                for (r, row) in acc.iter_mut().enumerate() {
                    for (j, v) in row.iter_mut().enumerate() {
                        *v = _mm512_loadu_ps(self.out.add(r * self.out_stride + j * LINE));
                    }
                }
            }
            for i in 0..self.depth {
                if i < self.prefetch_lines {
                    _mm_prefetch::<_MM_HINT_T1>(self.prefetch.wrapping_add(i * LINE).cast());
                }
                let w = self.w.add(i * PANEL);
                let w: [__m512; 4] = [
                    _mm512_load_ps(w),
                    _mm512_load_ps(w.add(LINE)),
                    _mm512_load_ps(w.add(2 * LINE)),
                    _mm512_load_ps(w.add(3 * LINE)),
                ];
                for (r, row) in acc.iter_mut().enumerate() {
                    let x = _mm512_set1_ps(*self.x.add(r * self.x_stride + i));
                    for (v, w) in row.iter_mut().zip(w) {
                        *v = _mm512_fmadd_ps(x, w, *v);
                    }
                }
            }
            for (r, row) in acc.iter().enumerate() {
                for (j, v) in row.iter().enumerate() {
                    _mm512_storeu_ps(self.out.add(r * self.out_stride + j * LINE), *v);
                }
            }
        }
    }
}
