//! CPU kernels for the VAE's elementwise steps (docs/acestep-model.md §8, §14): Snake fused with a bias and zero
//! padding, and the residual add fused with a bias; each is one multi-threaded pass over channels-last rows.

use candle_core::{CpuStorage, CustomOp2, InplaceOp3, Layout, Shape};

use crate::kernels::storage::f32_slice;

/// Below this many values a thread costs more than it saves.
const MIN_VALUES_PER_THREAD: usize = 1 << 15;

/// `[rows, C]` → `[pad_left + rows + pad_right, C]`: `y = v + sin²(a·v)·ib` with `v = x + bias`, zero rows around.
/// The second operand is `[3, C]`: `a = e^α`, `ib = 1/(e^β + 1e-9)`, `bias`.
pub struct FusedSnake {
    /// Zero rows before the output.
    pub pad_left: usize,
    /// Zero rows after the output.
    pub pad_right: usize,
}

impl CustomOp2 for FusedSnake {
    fn name(&self) -> &'static str {
        "fused-snake"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        params: &CpuStorage,
        params_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, channels) = x_layout.shape().dims2()?;
        let x = f32_slice(x, x_layout, "fused-snake")?;
        let params = f32_slice(params, params_layout, "fused-snake")?;
        if params.len() != 3 * channels {
            candle_core::bail!("fused-snake takes [3, {channels}] parameters, got {} values", params.len())
        }
        let (alpha, rest) = params.split_at(channels);
        let (inv_beta, bias) = rest.split_at(channels);
        let total_rows = self.pad_left + rows + self.pad_right;
        let mut out = vec![0f32; total_rows * channels];
        let body = &mut out[self.pad_left * channels..(self.pad_left + rows) * channels];
        for_row_chunks(body, channels, |first, ys| {
            let xs = &x[first * channels..first * channels + ys.len()];
            for (xs, ys) in xs.chunks_exact(channels).zip(ys.chunks_exact_mut(channels)) {
                for ((((y, &x), &a), &ib), &b) in ys.iter_mut().zip(xs).zip(alpha).zip(inv_beta).zip(bias) {
                    let v = x + b;
                    *y = v + sin_squared(a * v) * ib;
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((total_rows, channels))))
    }
}

/// `h ← x + h + bias` in place, for `h`, `x` `[rows, C]` and `bias` `[C]`: the residual sum takes the place of
/// the branch output, so no third activation of the level's size is allocated.
pub struct ResidualAdd;

impl InplaceOp3 for ResidualAdd {
    fn name(&self) -> &'static str {
        "residual-add"
    }

    fn cpu_fwd(
        &self,
        h: &mut CpuStorage,
        h_layout: &Layout,
        x: &CpuStorage,
        x_layout: &Layout,
        bias: &CpuStorage,
        bias_layout: &Layout,
    ) -> candle_core::Result<()> {
        let (rows, channels) = h_layout.shape().dims2()?;
        if x_layout.shape().dims2()? != (rows, channels) || bias_layout.shape().elem_count() != channels {
            candle_core::bail!(
                "residual-add shapes differ: {:?}, {:?}, {:?}",
                h_layout.shape(),
                x_layout.shape(),
                bias_layout.shape()
            )
        }
        let (x, bias) = (f32_slice(x, x_layout, "residual-add")?, f32_slice(bias, bias_layout, "residual-add")?);
        let CpuStorage::F32(h) = h else { candle_core::bail!("residual-add takes f32 tensors") };
        let Some((start, end)) = h_layout.contiguous_offsets() else {
            candle_core::bail!("residual-add takes contiguous tensors")
        };
        for_row_chunks(&mut h[start..end], channels, |first, ys| {
            let xs = &x[first * channels..first * channels + ys.len()];
            for (xs, ys) in xs.chunks_exact(channels).zip(ys.chunks_exact_mut(channels)) {
                for ((y, &x), &b) in ys.iter_mut().zip(xs).zip(bias) {
                    *y = x + *y + b;
                }
            }
        });
        Ok(())
    }
}

/// Splits `out` (whole rows of `channels`) into one chunk per thread and runs `f(first_row, chunk)` on each.
fn for_row_chunks(out: &mut [f32], channels: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let rows = out.len() / channels.max(1);
    let threads = candle_core::utils::get_num_threads().min(out.len() / MIN_VALUES_PER_THREAD).max(1);
    if threads == 1 {
        return f(0, out);
    }
    let chunk_rows = rows.div_ceil(threads);
    std::thread::scope(|scope| {
        for (i, chunk) in out.chunks_mut(chunk_rows * channels).enumerate() {
            let f = &f;
            scope.spawn(move || f(i * chunk_rows, chunk));
        }
    });
}

/// `sin²(z)` in f32, branch-free so it vectorises: `z = k·π/2 + r` with `|r| ≤ π/4` (three-part Cody–Waite
/// reduction), then `sin²(z)` is `sin²(r)` for even `k` and `1 − sin²(r)` for odd `k`, with `sin(r)` from the
/// Cephes minimax polynomial. Absolute error < 3e-7 for `|z|` up to 1e3 (grows slowly past ~1e4, where f32 `z`
/// itself is coarse); the result is always in [0, 1] (NaN stays NaN).
#[inline(always)]
fn sin_squared(z: f32) -> f32 {
    // Adding 1.5·2^23 rounds to an integer, which then sits in the low mantissa bits (its parity in bit 0).
    const ROUND: f32 = 12_582_912.0;
    const PIO2_1: f32 = 1.570_312_5;
    const PIO2_2: f32 = 4.837_513e-4;
    const PIO2_3: f32 = 7.549_79e-8;
    let shifted = z * std::f32::consts::FRAC_2_PI + ROUND;
    let k = shifted - ROUND;
    let odd = (shifted.to_bits() & 1) as f32;
    // |r| exceeds π/4 by rounding only (≈1e-7); the clamp matters only where `k` is past 2^22.
    let r = (((z - k * PIO2_1) - k * PIO2_2) - k * PIO2_3).clamp(-1.0, 1.0);
    let r2 = r * r;
    let s = r + r * r2 * (-1.666_665_5e-1 + r2 * (8.332_161e-3 + r2 * -1.951_529_6e-4));
    let s2 = s * s;
    (s2 + odd * (1.0 - 2.0 * s2)).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    #[test]
    fn sin_squared_is_accurate_over_the_activation_range() {
        let mut worst = 0f64;
        for i in -2_000_000..=2_000_000 {
            let z = i as f32 * 5e-4;
            let exact = f64::from(z).sin().powi(2);
            worst = worst.max((f64::from(sin_squared(z)) - exact).abs());
        }
        assert!(worst < 3e-7, "max error {worst}");
        for z in [1e5f32, -3.3e6, 1e9, f32::MAX] {
            assert!((0.0..=1.0).contains(&sin_squared(z)), "{z}");
        }
        assert!(sin_squared(f32::NAN).is_nan());
    }

    #[test]
    fn residual_add_writes_both_inputs_and_the_bias_over_the_branch_across_threads() {
        let (rows, channels) = (40_001, 3);
        let x =
            Tensor::arange(0f32, (rows * channels) as f32, &Device::Cpu).unwrap().reshape((rows, channels)).unwrap();
        let h = (x.affine(0.5, -1.0).unwrap()).sin().unwrap();
        let bias = Tensor::new(&[1f32, -2.0, 0.25], &Device::Cpu).unwrap();
        let expected = (&x + &h).unwrap().broadcast_add(&bias).unwrap();
        h.inplace_op3(&x, &bias, &ResidualAdd).unwrap();
        let diff = (h - expected).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }
}
