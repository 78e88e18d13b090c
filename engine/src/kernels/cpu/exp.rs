//! e^x sixteen lanes at a time on AVX-512, and the two CPU loops built on it (docs/acestep-model.md §14, CPU fast
//! path): a softmax row and the SwiGLU gating `silu(gate) · up`. The attention's and the MLP's exponentials were one
//! scalar libm call per element. Without AVX-512 both loops run the scalar form.
//!
//! The exponential is the Cephes single-precision one (relative error below 2·10⁻⁷): `x = n·ln 2 + r` with
//! `|r| ≤ ln 2 / 2`, a degree-6 polynomial for e^r, and `vscalefps` for the 2^n, which also flushes results below
//! f32's range to zero. NaN stays NaN.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{
    __m512, _mm512_add_ps, _mm512_div_ps, _mm512_fmadd_ps, _mm512_fnmadd_ps, _mm512_loadu_ps, _mm512_mask_storeu_ps,
    _mm512_maskz_loadu_ps, _mm512_max_ps, _mm512_min_ps, _mm512_mul_ps, _mm512_reduce_add_ps, _mm512_reduce_max_ps,
    _mm512_roundscale_ps, _mm512_scalef_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps, _mm512_sub_ps,
    _MM_FROUND_NO_EXC, _MM_FROUND_TO_NEAREST_INT,
};

/// Lanes of an AVX-512 register of f32.
#[cfg(target_arch = "x86_64")]
const LANES: usize = 16;

/// `row ← softmax(scale · row)`; a row whose exponentials sum to 0 becomes zeros.
pub fn softmax(row: &mut [f32], scale: f32) {
    #[cfg(target_arch = "x86_64")]
    if super::isa::avx512f() {
        // SAFETY: AVX-512F is available.
        return unsafe { softmax_avx512(row, scale) };
    }
    softmax_scalar(row, scale);
}

/// [`softmax`] one element at a time, with libm's e^x.
fn softmax_scalar(row: &mut [f32], scale: f32) {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s * scale));
    let mut sum = 0f32;
    for s in row.iter_mut() {
        *s = (*s * scale - max).exp();
        sum += *s;
    }
    normalise(row, sum);
}

/// `gate ← silu(gate) · up` element by element (`silu(g) = g / (1 + e^−g)`).
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::isa::avx512f() {
        // SAFETY: AVX-512F is available.
        return unsafe { silu_mul_avx512(gate, up) };
    }
    silu_mul_scalar(gate, up);
}

/// [`silu_mul`] one element at a time, with libm's e^x.
fn silu_mul_scalar(gate: &mut [f32], up: &[f32]) {
    for (g, u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// Divides `row` by `sum`, or zeroes it when `sum` is 0.
#[inline]
fn normalise(row: &mut [f32], sum: f32) {
    let inv = if sum > 0.0 { 1.0 / sum } else { 0.0 };
    row.iter_mut().for_each(|p| *p *= inv);
}

/// The lanes of `values[i..]` that exist: all sixteen, or the tail's.
#[cfg(target_arch = "x86_64")]
fn lanes(len: usize, i: usize) -> u16 {
    let n = (len - i).min(LANES);
    if n == LANES {
        u16::MAX
    } else {
        (1u16 << n) - 1
    }
}

/// e^x per lane.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn exp_avx512(x: __m512) -> __m512 {
    // Below −104 the result is under the smallest subnormal, above 88.8 it is infinite (the clamps keep n small
    // enough for r; `max` and `min` pass a NaN in their second operand through).
    let x = _mm512_min_ps(_mm512_set1_ps(128.0), _mm512_max_ps(_mm512_set1_ps(-104.0), x));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(
        x,
        _mm512_set1_ps(std::f32::consts::LOG2_E),
    ));
    // r = x − n·ln 2, with ln 2 split in two for the precision of r.
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm512_set1_ps(1.987_569_1e-4);
    for c in [1.398_2e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0)));
    _mm512_scalef_ps(p, n)
}

/// [`softmax`] sixteen lanes at a time.
///
/// # Safety
/// AVX-512F is available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn softmax_avx512(row: &mut [f32], scale: f32) {
    let (len, ptr) = (row.len(), row.as_mut_ptr());
    let scale_v = _mm512_set1_ps(scale);
    // SAFETY (whole body): every access covers lanes `i..i + 16` of `row`, masked to its length.
    unsafe {
        let mut max = _mm512_set1_ps(f32::NEG_INFINITY);
        for i in (0..len).step_by(LANES) {
            let s = _mm512_mul_ps(_mm512_maskz_loadu_ps(lanes(len, i), ptr.add(i)), scale_v);
            // Masked-off lanes load 0: keep them out of the maximum.
            let s = if lanes(len, i) == u16::MAX { s } else { masked_or(s, lanes(len, i), f32::NEG_INFINITY) };
            max = _mm512_max_ps(max, s);
        }
        let max = _mm512_set1_ps(_mm512_reduce_max_ps(max));
        let mut sum = _mm512_setzero_ps();
        for i in (0..len).step_by(LANES) {
            let mask = lanes(len, i);
            let s = _mm512_sub_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(mask, ptr.add(i)), scale_v), max);
            let e = exp_avx512(s);
            _mm512_mask_storeu_ps(ptr.add(i), mask, e);
            sum = _mm512_add_ps(sum, masked_or(e, mask, 0.0));
        }
        normalise(row, _mm512_reduce_add_ps(sum));
    }
}

/// `v` in the lanes of `mask`, `fill` in the others.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn masked_or(v: __m512, mask: u16, fill: f32) -> __m512 {
    std::arch::x86_64::_mm512_mask_blend_ps(mask, _mm512_set1_ps(fill), v)
}

/// [`silu_mul`] sixteen lanes at a time.
///
/// # Safety
/// AVX-512F is available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn silu_mul_avx512(gate: &mut [f32], up: &[f32]) {
    let len = gate.len().min(up.len());
    let (g_ptr, u_ptr) = (gate.as_mut_ptr(), up.as_ptr());
    let one = _mm512_set1_ps(1.0);
    // SAFETY (whole body): every access covers lanes `i..i + 16` of both slices, masked to `len`.
    unsafe {
        let whole = len - len % LANES;
        for i in (0..whole).step_by(LANES) {
            let g = _mm512_loadu_ps(g_ptr.add(i));
            let e = exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), g));
            let y = _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, e)), _mm512_loadu_ps(u_ptr.add(i)));
            _mm512_storeu_ps(g_ptr.add(i), y);
        }
        if whole < len {
            let mask = lanes(len, whole);
            let g = _mm512_maskz_loadu_ps(mask, g_ptr.add(whole));
            let e = exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), g));
            let y =
                _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, e)), _mm512_maskz_loadu_ps(mask, u_ptr.add(whole)));
            _mm512_mask_storeu_ps(g_ptr.add(whole), mask, y);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SwiGLU gating loop.
    type SiluMul = fn(&mut [f32], &[f32]);

    /// Both forms of each loop: the one this CPU runs and the scalar one.
    const SILU_MULS: [SiluMul; 2] = [silu_mul, silu_mul_scalar];
    const SOFTMAXES: [fn(&mut [f32], f32); 2] = [softmax, softmax_scalar];

    #[test]
    fn exponentials_match_libm_to_a_few_ulps_and_saturate_at_the_ends() {
        let xs: Vec<f32> = (-2000..=2000).map(|i| i as f32 * 0.0443).chain([-200.0, -104.5, 89.0, 1e30]).collect();
        // A softmax with scale 1 over one element at a time is e^(x − x) = 1: use silu instead, which exposes e^−g.
        let ones = vec![1f32; xs.len()];
        for silu_mul in SILU_MULS {
            let mut row = xs.clone();
            silu_mul(&mut row, &ones);
            for (got, x) in row.iter().zip(&xs) {
                let want = *x as f64 / (1.0 + (-*x as f64).exp());
                let tolerance = 4.0 * f32::EPSILON as f64 * want.abs().max(1e-30);
                assert!((*got as f64 - want).abs() <= tolerance, "silu({x}) = {got}, want {want}");
            }
        }
    }

    #[test]
    fn softmax_matches_the_f64_softmax_for_every_tail_length() {
        for (softmax, len) in SOFTMAXES.into_iter().flat_map(|f| [1, 5, 16, 17, 40, 300].map(|len| (f, len))) {
            let row: Vec<f32> = (0..len).map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.7).collect();
            let mut got = row.clone();
            softmax(&mut got, 0.5);
            let max = row.iter().fold(f64::NEG_INFINITY, |m, &s| m.max(s as f64 * 0.5));
            let e: Vec<f64> = row.iter().map(|&s| (s as f64 * 0.5 - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            for (g, e) in got.iter().zip(&e) {
                assert!((*g as f64 - e / sum).abs() < 1e-6, "length {len}: {g} vs {}", e / sum);
            }
        }
    }

    #[test]
    fn nan_stays_nan() {
        for silu_mul in SILU_MULS {
            let mut gate = [f32::NAN, 1.0];
            silu_mul(&mut gate, &[1.0, 1.0]);
            assert!(gate[0].is_nan() && gate[1].is_finite());
        }
    }
}
