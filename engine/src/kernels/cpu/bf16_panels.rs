//! Products against bf16 weights packed into panels (docs/acestep-model.md §14, CPU fast path): the CPU linear
//! layers in bf16 precision keep their weights in bf16, half the memory of f32, and multiply them with f32
//! accumulation. The panels are laid out like the f32 ones (`super::panels`: [`PANEL`] output columns per panel,
//! walked by the same [`Walk`]) except that each panel row holds two consecutive input features interleaved per
//! column — `[feature 2k of column c, feature 2k+1 of column c]` — which is the operand layout of AVX512-BF16's
//! `vdpbf16ps` and lets the widening kernels split a 32-bit lane into its two features with one shift or mask.
//!
//! Three kernels read the same panels ([`Bf16Kernel`]):
//! - `bf16dot`: `vdpbf16ps` (AVX512-BF16) on the left-hand side rounded to bf16 once per call; two products per
//!   lane and instruction, summed in f32 (the rounding of the inputs is the only difference from f32);
//! - `widen-avx512` and `widen-avx2`: the weights widened to f32 in registers and multiplied by the f32 inputs in
//!   the f32 kernel's order, so on a checkpoint stored in bf16 they give the f32 path's results bit for bit.

use std::arch::x86_64::{__m256, __m512, __m512bh, __m512i, _mm512_cvtne2ps_pbh, _mm512_dpbf16_ps, _mm512_set1_epi32};
use std::arch::x86_64::{_mm256_and_si256, _mm256_castsi256_ps, _mm256_fmadd_ps, _mm256_load_si256};
use std::arch::x86_64::{_mm256_loadu_ps, _mm256_set1_epi32, _mm256_set1_ps, _mm256_setzero_ps, _mm256_slli_epi32};
use std::arch::x86_64::{_mm256_storeu_ps, _mm512_and_si512, _mm512_castsi512_ps, _mm512_fmadd_ps};
use std::arch::x86_64::{_mm512_load_si512, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps};
use std::arch::x86_64::{_mm512_slli_epi32, _mm512_storeu_ps};
use std::arch::x86_64::{_mm512_storeu_si512, _mm_prefetch, _MM_HINT_T1};
use std::ops::Range;

use super::isa::ISA_ENV;
use super::panels::{TileAt, Walk, PANEL};

/// The environment variable that forces a kernel (tests, benchmarks): `bf16dot`, `widen-avx512` or `widen-avx2`.
pub const KERNEL_ENV: &str = "RETAKE_CPU_KERNEL";
/// bf16 values per 64-byte cache line, the panels' alignment.
const LINE: usize = 32;
/// bf16 values of one panel row: [`PANEL`] columns × two features.
const PAIR_ROW: usize = 2 * PANEL;
/// The high half of a 32-bit lane: the odd feature of a pair, as f32 bits.
const HIGH: i32 = 0xFFFF_0000u32 as i32;

/// How bf16 panels are multiplied (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bf16Kernel {
    /// `vdpbf16ps` (AVX512-BF16), 6 rows × 64 columns per register tile.
    Dot,
    /// Widening in AVX-512 registers, 4 rows × 64 columns.
    WidenAvx512,
    /// Widening in AVX2 registers, 2 rows × 32 columns.
    WidenAvx2,
}

impl Bf16Kernel {
    /// Every kernel, fastest first.
    pub const ALL: [Self; 3] = [Self::Dot, Self::WidenAvx512, Self::WidenAvx2];

    /// The name [`KERNEL_ENV`] takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Dot => "bf16dot",
            Self::WidenAvx512 => "widen-avx512",
            Self::WidenAvx2 => "widen-avx2",
        }
    }

    /// Whether this CPU runs the kernel (and `RETAKE_CPU_ISA` allows it: [`super::isa`]).
    pub fn supported(self) -> bool {
        match self {
            Self::Dot => super::isa::avx512_bf16(),
            Self::WidenAvx512 => super::isa::avx512f(),
            Self::WidenAvx2 => std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"),
        }
    }

    /// The kernel [`KERNEL_ENV`] names, else the fastest this CPU runs; `Ok(None)` when it runs none (the layer
    /// then keeps an f32 copy). An unknown name, or a kernel this CPU lacks, is an error naming the choices.
    pub fn selected() -> Result<Option<Self>, String> {
        Self::choose(std::env::var(KERNEL_ENV).ok().as_deref())
    }

    /// [`Bf16Kernel::selected`] for the value `forced` of [`KERNEL_ENV`] (unset or empty: the fastest).
    pub fn choose(forced: Option<&str>) -> Result<Option<Self>, String> {
        let names = || Self::ALL.map(Self::name).join(", ");
        match forced.map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(Self::ALL.into_iter().find(|k| k.supported())),
            Some(name) => match Self::ALL.into_iter().find(|k| k.name() == name) {
                Some(kernel) if kernel.supported() => Ok(Some(kernel)),
                Some(kernel) => Err(format!(
                    "{KERNEL_ENV}={name}: this CPU lacks the instructions of the {} kernel (or {ISA_ENV} rules them \
                     out); choose one it runs ({}) or unset {KERNEL_ENV}",
                    kernel.name(),
                    Self::ALL.into_iter().filter(|k| k.supported()).map(Self::name).collect::<Vec<_>>().join(", ")
                )),
                None => Err(format!("{KERNEL_ENV}={name} is not a CPU kernel; use one of {} or unset it", names())),
            },
        }
    }

    /// Rows per register tile.
    fn tile_rows(self) -> usize {
        match self {
            Self::Dot => 6,
            Self::WidenAvx512 => 4,
            Self::WidenAvx2 => 2,
        }
    }
}

/// A right-hand side `[inputs, outputs]` of bf16 values packed into pair-interleaved panels; `inputs` is even and
/// `outputs` a whole number of panels.
#[derive(Debug)]
pub struct Bf16Panels {
    /// Panel `p`, pair `k`, column `c`, feature `2k + e` at `offset + (p·inputs/2 + k)·2·PANEL + 2c + e`, as bits.
    values: Vec<u16>,
    /// Start of the first panel in `values`, aligned to a cache line.
    offset: usize,
    inputs: usize,
    outputs: usize,
    kernel: Bf16Kernel,
}

impl Bf16Panels {
    /// Packs the transpose of a linear layer's weight `[rows, inputs]` given as bf16 bits, row-major, for `kernel`:
    /// output column `o` is row `o`; columns from `rows` up to `outputs` are zero. `None` where the panels do not
    /// apply (the CPU lacks the kernel, no inputs or an odd number of them, `outputs` not a whole number of panels
    /// or below `rows`).
    pub fn from_rows(src: &[u16], rows: usize, inputs: usize, outputs: usize, kernel: Bf16Kernel) -> Option<Self> {
        if !Self::applies(rows, inputs, outputs) || src.len() < rows * inputs || !kernel.supported() {
            return None;
        }
        let mut values = vec![0u16; outputs * inputs + LINE];
        let offset = values.as_ptr().align_offset(LINE * size_of::<u16>());
        if offset >= LINE {
            return None;
        }
        let packed = &mut values[offset..offset + outputs * inputs];
        const TILE: usize = 64;
        for (panel, dst) in packed.chunks_exact_mut(inputs * PANEL).enumerate() {
            for i0 in (0..inputs).step_by(TILE) {
                for c in 0..PANEL.min(rows.saturating_sub(panel * PANEL)) {
                    let row = &src[(panel * PANEL + c) * inputs..][..inputs];
                    for i in i0..(i0 + TILE).min(inputs) {
                        dst[(i / 2) * PAIR_ROW + 2 * c + i % 2] = row[i];
                    }
                }
            }
        }
        Some(Self { values, offset, inputs, outputs, kernel })
    }

    /// Whether panels of `outputs` columns take a weight of `rows` rows of `inputs` (see
    /// [`Bf16Panels::from_rows`]): the shape alone, not the CPU.
    pub fn applies(rows: usize, inputs: usize, outputs: usize) -> bool {
        outputs > 0 && outputs.is_multiple_of(PANEL) && rows <= outputs && inputs > 0 && inputs.is_multiple_of(2)
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
        (self.inputs * self.outputs * size_of::<u16>()) as u64
    }

    /// The kernel these panels are multiplied by.
    pub fn kernel(&self) -> Bf16Kernel {
        self.kernel
    }

    /// The left-hand side as the kernel reads it: for `bf16dot`, the `rows` rows of `x` (`inputs` values each,
    /// contiguous) rounded to bf16 pairs, once for every task of a call; `None` for the widening kernels, which read
    /// `x` itself.
    pub fn prepare(&self, x: &[f32]) -> Option<Vec<u32>> {
        (self.kernel == Bf16Kernel::Dot).then(|| {
            let mut pairs = vec![0u32; x.len() / 2];
            // SAFETY: `bf16dot` panels exist only where the CPU has AVX512-BF16 (checked at packing).
            unsafe { round_pairs(x, &mut pairs) };
            pairs
        })
    }

    /// `out[r, c] = Σ_i x[r, i] · self[i, c]` for `rows` rows and the columns of `panels`, where `prepared` is
    /// [`Bf16Panels::prepare`] of the floats `x` points into. Rows may overlap (`x_stride` below `inputs`: the
    /// windows of a convolution).
    ///
    /// # Safety
    /// `x_stride` is even, row `r` of `x` is `inputs` readable floats at `x + r·x_stride` (and `prepared` holds
    /// them as pairs, from `x` on, when the kernel is `bf16dot`), row `r` of `out` has the columns of `panels`
    /// writable at `out + r·out_stride`, and no other thread touches those outputs meanwhile. (The kernel runs on
    /// this CPU: checked at packing.)
    #[allow(clippy::too_many_arguments)] // the f32 panels' `multiply` plus the pairs
    pub unsafe fn multiply(
        &self,
        x: *const f32,
        x_stride: usize,
        prepared: Option<&[u32]>,
        rows: usize,
        panels: Range<usize>,
        out: *mut f32,
        out_stride: usize,
    ) {
        let packed = &self.values[self.offset..];
        let walk = Walk {
            inputs: self.inputs,
            rows,
            tile_rows: self.kernel.tile_rows(),
            lines_per_feature: PANEL / LINE,
            scale: 2,
        };
        let pairs = prepared.map_or(std::ptr::null(), <[u32]>::as_ptr);
        walk.for_each_tile(panels, |at: TileAt| {
            let w = packed[(at.panel * self.inputs + at.feature) * PANEL..].as_ptr();
            let tile = PairTile {
                x: x.wrapping_add(at.row * x_stride + at.feature),
                pairs: pairs.wrapping_add((at.row * x_stride + at.feature) / 2),
                x_stride,
                w,
                steps: at.depth / 2,
                out: out.wrapping_add(at.row * out_stride + at.panel * PANEL),
                out_stride,
                accumulate: at.feature > 0,
                prefetch: w.wrapping_add(at.depth * PANEL + at.prefetch_from * LINE),
                prefetch_lines: at.prefetch_lines,
            };
            // SAFETY: the caller's contract; the tile stays inside `x` (or its pairs), the panel and `out`, and the
            // kernel was checked at packing.
            unsafe {
                match (self.kernel, at.rows) {
                    (Bf16Kernel::Dot, 1) => tile.dot::<1>(),
                    (Bf16Kernel::Dot, 2) => tile.dot::<2>(),
                    (Bf16Kernel::Dot, 3) => tile.dot::<3>(),
                    (Bf16Kernel::Dot, 4) => tile.dot::<4>(),
                    (Bf16Kernel::Dot, 5) => tile.dot::<5>(),
                    (Bf16Kernel::Dot, _) => tile.dot::<6>(),
                    (Bf16Kernel::WidenAvx512, 1) => tile.widen512::<1>(),
                    (Bf16Kernel::WidenAvx512, 2) => tile.widen512::<2>(),
                    (Bf16Kernel::WidenAvx512, 3) => tile.widen512::<3>(),
                    (Bf16Kernel::WidenAvx512, _) => tile.widen512::<4>(),
                    (Bf16Kernel::WidenAvx2, 1) => tile.widen256::<1>(),
                    (Bf16Kernel::WidenAvx2, _) => tile.widen256::<2>(),
                }
            }
        });
    }
}

/// The bf16 nearest to `v` (ties to even), as bits; NaN stays a quiet NaN.
pub fn bf16_bits(v: f32) -> u16 {
    let bits = v.to_bits();
    if v.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) as u16
}

/// `pairs[k] = bf16(x[2k]) | bf16(x[2k + 1]) << 16` for every `k` of `pairs`, 32 floats per `vcvtne2ps2bf16`
/// (round to nearest even, as [`bf16_bits`], except that the instruction flushes subnormal floats to zero: a
/// left-hand side that small adds nothing an f32 accumulator keeps beside the products of normal values).
///
/// # Safety
/// AVX512-BF16 is available and `x` holds at least `2 · pairs.len()` floats.
#[target_feature(enable = "avx512bf16,avx512f")]
unsafe fn round_pairs(x: &[f32], pairs: &mut [u32]) {
    let whole = pairs.len() / 16 * 16;
    for (dst, src) in pairs[..whole].chunks_exact_mut(16).zip(x.chunks_exact(32)) {
        // SAFETY: 32 floats in, 16 pairs (64 bytes) out; AVX512-BF16 per the contract.
        unsafe {
            let (low, high) = (_mm512_loadu_ps(src.as_ptr()), _mm512_loadu_ps(src.as_ptr().add(16)));
            // The first operand fills the upper half: features 16..32 of the 32.
            let rounded: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(high, low));
            _mm512_storeu_si512(dst.as_mut_ptr().cast(), rounded);
        }
    }
    for (k, dst) in pairs.iter_mut().enumerate().skip(whole) {
        *dst = bf16_bits(x[2 * k]) as u32 | (bf16_bits(x[2 * k + 1]) as u32) << 16;
    }
}

/// One register tile of up to 6 rows × one panel over `2·steps` features.
struct PairTile {
    /// First row's first feature (widening kernels); row `r` starts `r · x_stride` later.
    x: *const f32,
    /// The same as bf16 pairs (`bf16dot`); row `r` starts `r · x_stride / 2` later.
    pairs: *const u32,
    x_stride: usize,
    /// The panel at the first pair, `[steps, 2·PANEL]`, cache-line aligned.
    w: *const u16,
    steps: usize,
    /// First row's first column of the output; row `r` starts `r · out_stride` later.
    out: *mut f32,
    out_stride: usize,
    /// Add to what `out` holds (a later slice of features) instead of overwriting it.
    accumulate: bool,
    /// Cache lines from here on to prefetch into L2, one per pair (a prefetch never faults).
    prefetch: *const u16,
    prefetch_lines: usize,
}

impl PairTile {
    /// Prefetches the line of step `k` when it is one of this tile's share.
    #[inline(always)]
    fn prefetch(&self, k: usize) {
        if k < self.prefetch_lines {
            // SAFETY: a prefetch never faults.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(self.prefetch.wrapping_add(k * LINE).cast()) };
        }
    }

    /// `bf16dot`: `out[r, c] (+)= Σ_k x[r, 2k..2k+2] · w[2k..2k+2, c]` with `vdpbf16ps`.
    ///
    /// # Safety
    /// AVX512-BF16 is available and the pointers cover `R` rows of `steps` pairs, the panel and `R` rows of
    /// `PANEL` outputs.
    #[target_feature(enable = "avx512bf16,avx512f")]
    unsafe fn dot<const R: usize>(&self) {
        let rows: [*const u32; R] = std::array::from_fn(|r| self.pairs.wrapping_add(r * self.x_stride / 2));
        // SAFETY (whole body): the pointer ranges named in the contract.
        unsafe {
            let mut acc = self.load_512::<R>();
            for k in 0..self.steps {
                self.prefetch(k);
                let w = self.w.add(k * PAIR_ROW);
                let w: [__m512bh; 4] =
                    std::array::from_fn(|j| std::mem::transmute(_mm512_load_si512(w.add(j * LINE).cast())));
                for (row, x) in acc.iter_mut().zip(rows) {
                    let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(*x.add(k) as i32));
                    for (v, w) in row.iter_mut().zip(w) {
                        *v = _mm512_dpbf16_ps(*v, x, w);
                    }
                }
            }
            self.store_512(&acc);
        }
    }

    /// `widen-avx512`: the weights widened to f32, `out[r, c] (+)= Σ_i x[r, i] · w[i, c]` in feature order.
    ///
    /// # Safety
    /// AVX-512F is available and the pointers cover `R` rows of `2·steps` features, the panel and `R` rows of
    /// `PANEL` outputs.
    #[target_feature(enable = "avx512f")]
    unsafe fn widen512<const R: usize>(&self) {
        let rows: [*const f32; R] = std::array::from_fn(|r| self.x.wrapping_add(r * self.x_stride));
        // SAFETY (whole body): the pointer ranges named in the contract.
        unsafe {
            let mut acc = self.load_512::<R>();
            for k in 0..self.steps {
                self.prefetch(k);
                let w = self.w.add(k * PAIR_ROW);
                // Each 32-bit lane holds a column's features 2k (low half) and 2k + 1 (high half).
                let wide: [(__m512, __m512); 4] = std::array::from_fn(|j| {
                    let lanes = _mm512_load_si512(w.add(j * LINE).cast());
                    (
                        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(lanes)),
                        _mm512_castsi512_ps(_mm512_and_si512(lanes, _mm512_set1_epi32(HIGH))),
                    )
                });
                for (row, x) in acc.iter_mut().zip(rows) {
                    let (even, odd) = (_mm512_set1_ps(*x.add(2 * k)), _mm512_set1_ps(*x.add(2 * k + 1)));
                    for (v, (we, wo)) in row.iter_mut().zip(wide) {
                        *v = _mm512_fmadd_ps(odd, wo, _mm512_fmadd_ps(even, we, *v));
                    }
                }
            }
            self.store_512(&acc);
        }
    }

    /// The output tile to add to (zeros for the first slice of features).
    ///
    /// # Safety
    /// AVX-512F is available and `out` covers `R` rows of `PANEL` values.
    #[target_feature(enable = "avx512f")]
    unsafe fn load_512<const R: usize>(&self) -> [[__m512; 4]; R] {
        std::array::from_fn(|r| {
            std::array::from_fn(|j| {
                if self.accumulate {
                    // SAFETY: the caller's contract.
                    unsafe { _mm512_loadu_ps(self.out.add(r * self.out_stride + j * 16)) }
                } else {
                    _mm512_setzero_ps()
                }
            })
        })
    }

    /// Writes the output tile.
    ///
    /// # Safety
    /// As [`PairTile::load_512`].
    #[target_feature(enable = "avx512f")]
    unsafe fn store_512<const R: usize>(&self, acc: &[[__m512; 4]; R]) {
        for (r, row) in acc.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                // SAFETY: the caller's contract.
                unsafe { _mm512_storeu_ps(self.out.add(r * self.out_stride + j * 16), *v) };
            }
        }
    }

    /// `widen-avx2`: as [`PairTile::widen512`] in 256-bit registers, one half of the panel (32 columns) at a time.
    ///
    /// # Safety
    /// AVX2 and FMA are available and the pointers cover `R` rows of `2·steps` features, the panel and `R` rows of
    /// `PANEL` outputs.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn widen256<const R: usize>(&self) {
        let rows: [*const f32; R] = std::array::from_fn(|r| self.x.wrapping_add(r * self.x_stride));
        // SAFETY (whole body): the pointer ranges named in the contract.
        unsafe {
            for half in 0..2 {
                // `acc[j][r]`: columns `8j..8j + 8` of the half, row `r` (16 registers: the weights one group of
                // columns at a time).
                let column = |j: usize, r: usize| self.out.add(r * self.out_stride + half * PANEL / 2 + j * 8);
                let mut acc: [[__m256; R]; 4] = std::array::from_fn(|j| {
                    std::array::from_fn(|r| {
                        if self.accumulate {
                            _mm256_loadu_ps(column(j, r))
                        } else {
                            _mm256_setzero_ps()
                        }
                    })
                });
                for k in 0..self.steps {
                    if half == 0 {
                        self.prefetch(k);
                    }
                    let even: [__m256; R] = std::array::from_fn(|r| _mm256_set1_ps(*rows[r].add(2 * k)));
                    let odd: [__m256; R] = std::array::from_fn(|r| _mm256_set1_ps(*rows[r].add(2 * k + 1)));
                    let w = self.w.add(k * PAIR_ROW + half * PANEL);
                    for (j, group) in acc.iter_mut().enumerate() {
                        let lanes = _mm256_load_si256(w.add(j * 16).cast());
                        let (we, wo) = (
                            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(lanes)),
                            _mm256_castsi256_ps(_mm256_and_si256(lanes, _mm256_set1_epi32(HIGH))),
                        );
                        for (v, (e, o)) in group.iter_mut().zip(even.iter().zip(&odd)) {
                            *v = _mm256_fmadd_ps(*o, wo, _mm256_fmadd_ps(*e, we, *v));
                        }
                    }
                }
                for (j, group) in acc.iter().enumerate() {
                    for (r, v) in group.iter().enumerate() {
                        _mm256_storeu_ps(column(j, r), *v);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic value in about ±1 for element `i` of stream `seed`.
    fn value(seed: u64, i: usize) -> f32 {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i as u64;
        ((crate::model::weights::splitmix64(&mut state) >> 40) as f32 / (1u64 << 23) as f32) - 1.0
    }

    /// `x` `[rows, inputs]` in f32, a weight `[outputs, inputs]` as bf16 bits, and the f64 product of `x` (rounded
    /// to bf16 when `round_x`) by the weight's transpose.
    fn case(rows: usize, inputs: usize, outputs: usize, round_x: bool) -> (Vec<f32>, Vec<u16>, Vec<f64>) {
        let x: Vec<f32> = (0..rows * inputs).map(|i| value(1, i)).collect();
        let w: Vec<u16> = (0..outputs * inputs).map(|i| bf16_bits(value(2, i))).collect();
        let widen = |b: u16| f32::from_bits((b as u32) << 16) as f64;
        let lhs = |v: f32| if round_x { widen(bf16_bits(v)) } else { v as f64 };
        let want = (0..rows * outputs)
            .map(|e| {
                let (r, o) = (e / outputs, e % outputs);
                (0..inputs).map(|i| lhs(x[r * inputs + i]) * widen(w[o * inputs + i])).sum()
            })
            .collect();
        (x, w, want)
    }

    fn multiply(panels: &Bf16Panels, x: &[f32], rows: usize) -> Vec<f32> {
        let prepared = panels.prepare(x);
        let mut out = vec![f32::NAN; rows * panels.outputs()];
        // SAFETY: `x` is `[rows, inputs]`, `out` is `[rows, outputs]`, one thread.
        unsafe {
            panels.multiply(
                x.as_ptr(),
                panels.inputs(),
                prepared.as_deref(),
                rows,
                0..panels.outputs() / PANEL,
                out.as_mut_ptr(),
                panels.outputs(),
            )
        };
        out
    }

    #[test]
    fn every_kernel_this_cpu_runs_matches_an_f64_product_of_the_bf16_weights() {
        let kernels: Vec<Bf16Kernel> = Bf16Kernel::ALL.into_iter().filter(|k| k.supported()).collect();
        assert!(!kernels.is_empty(), "this x86-64 CPU has neither AVX2 nor AVX-512");
        // One and several panels; several feature slices (> 256 inputs, > 2048 above 256 rows) and row blocks
        // (> 512 rows); every remainder of the 6-, 4- and 2-row tiles.
        for (rows, inputs, outputs) in [(1, 2, 64), (5, 6, 128), (13, 2200, 64), (125, 300, 192), (515, 20, 64)] {
            for &kernel in &kernels {
                let (x, w, want) = case(rows, inputs, outputs, kernel == Bf16Kernel::Dot);
                let panels = Bf16Panels::from_rows(&w, outputs, inputs, outputs, kernel).unwrap();
                assert_eq!(panels.bytes(), (inputs * outputs * 2) as u64);
                let got = multiply(&panels, &x, rows);
                for (e, (g, want)) in got.iter().zip(&want).enumerate() {
                    let bound = 1e-5 * (1.0 + want.abs()) * (inputs as f64).sqrt();
                    assert!(
                        (*g as f64 - want).abs() <= bound,
                        "{kernel:?} {rows}x{inputs}x{outputs} [{e}]: {g} {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn widening_kernels_equal_the_f32_panels_bit_for_bit_on_bf16_weights() {
        use super::super::panels::PanelMatrix;
        let (rows, inputs, outputs) = (70, 1100, 128);
        let (x, w, _) = case(rows, inputs, outputs, false);
        let widened: Vec<f32> = w.iter().map(|&b| f32::from_bits((b as u32) << 16)).collect();
        let Some(f32_panels) = PanelMatrix::from_rows(&widened, inputs, outputs, inputs, outputs) else {
            return; // No AVX-512: the f32 panels do not exist to compare with (the f64 test covers AVX2).
        };
        let mut want = vec![0f32; rows * outputs];
        // SAFETY: `x` is `[rows, inputs]`, `want` is `[rows, outputs]`, one thread.
        unsafe { f32_panels.multiply(x.as_ptr(), inputs, rows, 0..outputs / PANEL, want.as_mut_ptr(), outputs) };
        for kernel in [Bf16Kernel::WidenAvx512, Bf16Kernel::WidenAvx2].into_iter().filter(|k| k.supported()) {
            let panels = Bf16Panels::from_rows(&w, outputs, inputs, outputs, kernel).unwrap();
            let got = multiply(&panels, &x, rows);
            assert!(got.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits()), "{kernel:?}");
        }
    }

    #[test]
    fn rows_short_of_the_panel_are_zero_columns_and_odd_or_ragged_shapes_are_refused() {
        let kernel = Bf16Kernel::ALL.into_iter().find(|k| k.supported()).unwrap();
        let (x, w, want) = case(3, 4, 40, kernel == Bf16Kernel::Dot);
        let panels = Bf16Panels::from_rows(&w, 40, 4, 64, kernel).unwrap();
        let got = multiply(&panels, &x, 3);
        for r in 0..3 {
            for c in 0..64 {
                let want = if c < 40 { want[r * 40 + c] as f32 } else { 0.0 };
                assert!((got[r * 64 + c] - want).abs() <= 1e-5, "[{r}, {c}]");
            }
        }
        assert!(Bf16Panels::from_rows(&w, 40, 3, 64, kernel).is_none(), "odd inputs");
        assert!(Bf16Panels::from_rows(&w, 40, 4, 100, kernel).is_none(), "not whole panels");
        assert!(Bf16Panels::from_rows(&w, 40, 4, 0, kernel).is_none(), "no outputs");
        assert!(Bf16Panels::from_rows(&w[..10], 40, 4, 64, kernel).is_none(), "too few weights");
    }

    #[test]
    fn the_forced_kernel_is_taken_by_name_and_a_wrong_name_is_an_error_naming_the_choices() {
        assert_eq!(Bf16Kernel::choose(None).unwrap(), Bf16Kernel::ALL.into_iter().find(|k| k.supported()));
        assert_eq!(Bf16Kernel::choose(Some("")).unwrap(), Bf16Kernel::choose(None).unwrap());
        for kernel in Bf16Kernel::ALL {
            match Bf16Kernel::choose(Some(kernel.name())) {
                Ok(chosen) => assert!(kernel.supported() && chosen == Some(kernel)),
                Err(e) => assert!(!kernel.supported() && e.contains(kernel.name()) && e.contains(KERNEL_ENV), "{e}"),
            }
        }
        let err = Bf16Kernel::choose(Some("amx")).unwrap_err();
        assert!(err.contains("RETAKE_CPU_KERNEL=amx") && err.contains("bf16dot, widen-avx512, widen-avx2"), "{err}");
    }

    #[test]
    fn the_vector_rounding_of_the_left_hand_side_equals_the_scalar_one_on_normal_floats() {
        if !Bf16Kernel::Dot.supported() {
            return; // `vcvtne2ps2bf16` needs AVX512-BF16; the widening kernels read the floats themselves.
        }
        // Ties both ways, negatives, infinities, a NaN, and a remainder past the last 32 floats.
        let special = [1.0 + 1.0 / 256.0, 1.0 + 3.0 / 256.0, -2.5e-3, f32::INFINITY, f32::NEG_INFINITY, 65504.0];
        let mut x: Vec<f32> = (0..70).map(|i| value(3, i) * 1e3).collect();
        x[..special.len()].copy_from_slice(&special);
        x[40] = f32::NAN;
        let mut pairs = vec![0u32; x.len() / 2];
        // SAFETY: AVX512-BF16 checked above; `x` holds `2 · pairs.len()` floats.
        unsafe { round_pairs(&x, &mut pairs) };
        for (k, pair) in pairs.iter().enumerate() {
            for (half, v) in [(*pair as u16, x[2 * k]), ((*pair >> 16) as u16, x[2 * k + 1])] {
                if v.is_nan() {
                    assert!(f32::from_bits((half as u32) << 16).is_nan(), "NaN at {k}");
                } else {
                    assert_eq!(half, bf16_bits(v), "{v} at pair {k}");
                }
            }
        }
    }

    #[test]
    fn rounding_to_bf16_is_to_nearest_even() {
        assert_eq!(bf16_bits(1.0), 0x3F80);
        // 1 + 2⁻⁸ lies halfway between 1 and 1 + 2⁻⁷: ties to the even 1.
        assert_eq!(bf16_bits(1.0 + 1.0 / 256.0), 0x3F80);
        assert_eq!(bf16_bits(1.0 + 3.0 / 256.0), 0x3F82);
        assert_eq!(bf16_bits(-2.0), 0xC000);
        assert!(f32::from_bits((bf16_bits(f32::NAN) as u32) << 16).is_nan());
    }
}
