//! Matrix products on AVX-512 against a right-hand side packed into panels (docs/acestep-model.md §14, CPU fast path):
//! the CPU f32 linear layers (weights packed once at load) and attention (keys and values packed per call).
//!
//! The right-hand side `[inputs, outputs]` is stored as panels of [`PANEL`] output columns, each panel
//! `[inputs, PANEL]` contiguous, so the kernel streams a panel with aligned loads and reads the left-hand side
//! straight from its row-major rows: no packing copy of it (a general GEMM packs both operands every time, which
//! costs as much as the arithmetic at the few hundred rows a transformer sees here). Within a panel, blocks of
//! [`SHALLOW`] or [`DEEP`] input features keep the panel slice in the core's caches while every row block of the
//! input sweeps it, and each row block prefetches its share of the next slice into L2 (weights stream from
//! memory once per call: without the prefetch the first row block waits on memory, 10–20 % of the time at
//! 70–125 rows). Every output element is one fused multiply-add chain in input order.

use std::arch::x86_64::{__m512, _mm512_fmadd_ps, _mm512_load_ps, _mm512_loadu_ps, _mm_prefetch, _MM_HINT_T1};
use std::arch::x86_64::{_mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps};
use std::ops::Range;

/// Output columns per panel: four AVX-512 registers of f32.
pub const PANEL: usize = 64;
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
/// Features per iteration of the kernel's inner loop (measured on 2 cores: the unrolled, branch-free loop is
/// 5–15 % faster than one feature per iteration with a prefetch test in it).
const UNROLL: usize = 4;
/// Floats per 64-byte cache line, the panels' alignment.
const LINE: usize = 16;

/// Whether this CPU runs the panel kernel (AVX-512F, unless `RETAKE_CPU_ISA` rules it out: [`super::isa`]).
pub fn available() -> bool {
    super::isa::avx512f()
}

/// A right-hand side `[inputs, outputs]` packed into panels; `outputs` is a whole number of panels.
#[derive(Debug)]
pub struct PanelMatrix {
    /// Panel `p`, feature `i`, column `c` at `offset + (p·inputs + i)·PANEL + c`.
    values: Vec<f32>,
    /// Start of the first panel in `values`, aligned to a cache line.
    offset: usize,
    inputs: usize,
    outputs: usize,
}

impl PanelMatrix {
    /// Zeros, or `None` where the kernel does not apply (no AVX-512, no inputs, or `outputs` not a whole number of
    /// panels).
    fn zeroed(inputs: usize, outputs: usize) -> Option<Self> {
        if outputs == 0 || !outputs.is_multiple_of(PANEL) || inputs == 0 || !available() {
            return None;
        }
        let values = vec![0f32; outputs * inputs + LINE];
        let offset = values.as_ptr().align_offset(LINE * size_of::<f32>());
        (offset < LINE).then_some(Self { values, offset, inputs, outputs })
    }

    /// The packed values, `[panels, inputs, PANEL]`.
    fn packed_mut(&mut self) -> &mut [f32] {
        &mut self.values[self.offset..self.offset + self.inputs * self.outputs]
    }

    /// Packs the transpose of `rows` rows of `inputs` values, `stride` apart in `src` (a linear layer's `[out, in]`
    /// weight, or an attention's keys): output column `o` is row `o`; columns from `rows` up to `outputs` are zero.
    pub fn from_rows(src: &[f32], stride: usize, rows: usize, inputs: usize, outputs: usize) -> Option<Self> {
        let mut m = Self::zeroed(inputs, outputs)?;
        const TILE: usize = 64;
        for (panel, dst) in m.packed_mut().chunks_exact_mut(inputs * PANEL).enumerate() {
            for i0 in (0..inputs).step_by(TILE) {
                for c in 0..PANEL.min(rows.saturating_sub(panel * PANEL)) {
                    let row = &src[(panel * PANEL + c) * stride..][..inputs];
                    for i in i0..(i0 + TILE).min(inputs) {
                        dst[i * PANEL + c] = row[i];
                    }
                }
            }
        }
        Some(m)
    }

    /// Packs `rows` rows of `outputs` values, `stride` apart in `src` (an attention's values), as the first `rows`
    /// of `inputs` features; features from `rows` up to `inputs` are zero.
    pub fn from_columns(src: &[f32], stride: usize, rows: usize, inputs: usize, outputs: usize) -> Option<Self> {
        let mut m = Self::zeroed(inputs, outputs)?;
        for (panel, dst) in m.packed_mut().chunks_exact_mut(inputs * PANEL).enumerate() {
            for (i, line) in dst.chunks_exact_mut(PANEL).take(rows).enumerate() {
                line.copy_from_slice(&src[i * stride + panel * PANEL..][..PANEL]);
            }
        }
        Some(m)
    }

    /// `[inputs]`: the width of a left-hand-side row.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// `[outputs]`.
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// Bytes of the packed values.
    pub fn bytes(&self) -> u64 {
        (self.inputs * self.outputs * size_of::<f32>()) as u64
    }

    /// `out[r, c] = Σ_i x[r, i] · self[i, c]` for `rows` rows and the columns of `panels`.
    ///
    /// # Safety
    /// Row `r` of `x` is `inputs` readable floats at `x + r·x_stride`, row `r` of `out` has the columns of `panels`
    /// writable at `out + r·out_stride`, and no other thread touches those outputs meanwhile. (AVX-512F is
    /// available: a `PanelMatrix` exists only then.)
    pub unsafe fn multiply(
        &self,
        x: *const f32,
        x_stride: usize,
        rows: usize,
        panels: Range<usize>,
        out: *mut f32,
        out_stride: usize,
    ) {
        let packed = &self.values[self.offset..];
        let walk = Walk { inputs: self.inputs, rows, tile_rows: ROWS, lines_per_feature: PANEL / LINE, scale: 1 };
        walk.for_each_tile(panels, |at| {
            let w = packed[(at.panel * self.inputs + at.feature) * PANEL..].as_ptr();
            let tile = Tile {
                x: x.wrapping_add(at.row * x_stride + at.feature),
                x_stride,
                w,
                depth: at.depth,
                out: out.wrapping_add(at.row * out_stride + at.panel * PANEL),
                out_stride,
                accumulate: at.feature > 0,
                // The next slice (of this panel or the next one) follows this one in memory.
                prefetch: w.wrapping_add(at.depth * PANEL + at.prefetch_from * LINE),
                prefetch_lines: at.prefetch_lines,
            };
            // SAFETY: the caller's contract; the tile stays inside `x`, the panel and `out`.
            unsafe {
                match at.rows {
                    1 => tile.run::<1>(),
                    2 => tile.run::<2>(),
                    3 => tile.run::<3>(),
                    4 => tile.run::<4>(),
                    5 => tile.run::<5>(),
                    _ => tile.run::<ROWS>(),
                }
            }
        });
    }
}

/// The order in which a product against packed panels visits its register tiles, shared by the f32 panels here
/// and the bf16 ones (`super::bf16_panels`): row blocks of [`ROW_BLOCK`], then panels, then slices of
/// [`SHALLOW`] or [`DEEP`] features (times `scale`), then tiles of `tile_rows` rows.
pub(crate) struct Walk {
    /// Features of a left-hand-side row.
    pub inputs: usize,
    /// Rows of the left-hand side.
    pub rows: usize,
    /// Rows per register tile.
    pub tile_rows: usize,
    /// Cache lines a panel holds per feature.
    pub lines_per_feature: usize,
    /// Multiplies the features per slice, so that a slice of narrower values spans as many bytes (a multiple of
    /// the features a kernel step takes).
    pub scale: usize,
}

/// Where one register tile lies (see [`Walk`]).
pub(crate) struct TileAt {
    /// First row.
    pub row: usize,
    /// Rows, up to `tile_rows`.
    pub rows: usize,
    pub panel: usize,
    /// First feature of the slice.
    pub feature: usize,
    /// Features in the slice.
    pub depth: usize,
    /// The tile's share of the next slice to prefetch: lines `prefetch_from..prefetch_from + prefetch_lines` past
    /// the end of this slice.
    pub prefetch_from: usize,
    pub prefetch_lines: usize,
}

impl Walk {
    /// Calls `tile` for every register tile of `rows` rows × `panels`, in order.
    pub fn for_each_tile(&self, panels: Range<usize>, mut tile: impl FnMut(TileAt)) {
        let block = self.scale * if self.rows <= FEW_ROWS { SHALLOW } else { DEEP };
        for r0 in (0..self.rows).step_by(ROW_BLOCK) {
            let r1 = (r0 + ROW_BLOCK).min(self.rows);
            let tiles = (r1 - r0).div_ceil(self.tile_rows);
            for panel in panels.clone() {
                for i0 in (0..self.inputs).step_by(block) {
                    let depth = block.min(self.inputs - i0);
                    // Each row block prefetches its share of the next slice, one line per feature at most.
                    let share = (depth * self.lines_per_feature).div_ceil(tiles).min(depth);
                    for (t, r) in (r0..r1).step_by(self.tile_rows).enumerate() {
                        tile(TileAt {
                            row: r,
                            rows: (r1 - r).min(self.tile_rows),
                            panel,
                            feature: i0,
                            depth,
                            prefetch_from: t * share,
                            prefetch_lines: share,
                        });
                    }
                }
            }
        }
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
        let rows: [*const f32; R] = std::array::from_fn(|r| self.x.wrapping_add(r * self.x_stride));
        // SAFETY (whole body): the pointer ranges named in the contract.
        unsafe {
            if self.accumulate {
                for (r, row) in acc.iter_mut().enumerate() {
                    for (j, v) in row.iter_mut().enumerate() {
                        *v = _mm512_loadu_ps(self.out.add(r * self.out_stride + j * LINE));
                    }
                }
            }
            // Two branch-free sweeps: the features that also prefetch a line, then the rest.
            let prefetched = self.prefetch_lines.min(self.depth);
            self.sweep::<R, true>(&mut acc, &rows, 0..prefetched);
            self.sweep::<R, false>(&mut acc, &rows, prefetched..self.depth);
            for (r, row) in acc.iter().enumerate() {
                for (j, v) in row.iter().enumerate() {
                    _mm512_storeu_ps(self.out.add(r * self.out_stride + j * LINE), *v);
                }
            }
        }
    }

    /// Adds features `features` to the accumulators, [`UNROLL`] per loop iteration, prefetching one line per
    /// feature when `PREFETCH`.
    ///
    /// # Safety
    /// As [`Tile::run`], for features inside `0..depth`.
    #[inline(always)]
    unsafe fn sweep<const R: usize, const PREFETCH: bool>(
        &self,
        acc: &mut [[__m512; 4]; R],
        rows: &[*const f32; R],
        features: Range<usize>,
    ) {
        let mut i = features.start;
        // SAFETY: the caller's contract.
        unsafe {
            while i + UNROLL <= features.end {
                for u in 0..UNROLL {
                    self.feature::<R, PREFETCH>(acc, rows, i + u);
                }
                i += UNROLL;
            }
            for i in i..features.end {
                self.feature::<R, PREFETCH>(acc, rows, i);
            }
        }
    }

    /// Adds feature `i`: `acc[r] += x[r, i] · w[i, ..]`.
    ///
    /// # Safety
    /// As [`Tile::run`], for `i < depth`.
    #[inline(always)]
    unsafe fn feature<const R: usize, const PREFETCH: bool>(
        &self,
        acc: &mut [[__m512; 4]; R],
        rows: &[*const f32; R],
        i: usize,
    ) {
        // SAFETY: the caller's contract; a prefetch never faults.
        unsafe {
            if PREFETCH {
                _mm_prefetch::<_MM_HINT_T1>(self.prefetch.wrapping_add(i * LINE).cast());
            }
            let w = self.w.add(i * PANEL);
            let w: [__m512; 4] = [
                _mm512_load_ps(w),
                _mm512_load_ps(w.add(LINE)),
                _mm512_load_ps(w.add(2 * LINE)),
                _mm512_load_ps(w.add(3 * LINE)),
            ];
            for (row, x) in acc.iter_mut().zip(rows) {
                let x = _mm512_set1_ps(*x.add(i));
                for (v, w) in row.iter_mut().zip(w) {
                    *v = _mm512_fmadd_ps(x, w, *v);
                }
            }
        }
    }
}
