//! Snake1d of the Oobleck VAE (spec §8): `y = x + sin²(e^α·x) / (e^β + 1e-9)` per channel, in f32. On the CPU it
//! is one fused, multi-threaded pass that also adds the previous conv's bias and the next conv's zero padding.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};

use crate::error::{EngineError, Result};
use crate::model::weights::Weights;

/// A Snake1d with `e^α` and `1/(e^β + 1e-9)` precomputed at load.
pub(super) struct Snake {
    /// `[3, channels]` f32: `e^α`, `1/(e^β + 1e-9)`, and the bias of the conv before (zeros if none).
    params: Tensor,
}

impl Snake {
    /// Loads `alpha` / `beta` (`[1, channels, 1]`, log scale) under `vb`. `input_bias` (`[channels]`) is added to
    /// the input first: the bias of the preceding conv, moved here to save a pass over the activations.
    pub fn load(vb: &Weights, channels: usize, input_bias: Option<Tensor>) -> Result<Self> {
        let param = |name: &str| -> Result<Tensor> {
            Ok(vb.get_as(&[1, channels, 1], name, DType::F32)?.reshape(channels)?.exp()?)
        };
        let bias = match input_bias {
            Some(b) => b.to_dtype(DType::F32)?,
            None => Tensor::zeros(channels, DType::F32, vb.device())?,
        };
        let params = Tensor::stack(&[param("alpha")?, (param("beta")? + 1e-9)?.recip()?, bias], 0)?;
        Ok(Self { params })
    }

    /// `[len, channels]` → `[pad_left + len + pad_right, channels]`: Snake of `x + bias`, framed by zero rows.
    pub fn forward(&self, x: &Tensor, pad_left: usize, pad_right: usize) -> Result<Tensor> {
        let channels = self.params.dim(1)?;
        if x.dims2()?.1 != channels {
            return Err(EngineError::TensorShape {
                name: "snake input".into(),
                expected: vec![x.dim(0)?, channels],
                found: x.dims().to_vec(),
            });
        }
        if x.device().is_cpu() {
            let op = FusedSnake { pad_left, pad_right };
            return Ok(x.to_dtype(DType::F32)?.contiguous()?.apply_op2_no_bwd(&self.params, &op)?);
        }
        let row = |i: usize| self.params.narrow(0, i, 1);
        let y = x.to_dtype(DType::F32)?.broadcast_add(&row(2)?)?;
        let wave = y.broadcast_mul(&row(0)?)?.sin()?.sqr()?.broadcast_mul(&row(1)?)?;
        Ok((y + wave)?.pad_with_zeros(0, pad_left, pad_right)?)
    }
}

/// The CPU kernel behind [`Snake::forward`].
struct FusedSnake {
    pad_left: usize,
    pad_right: usize,
}

/// Below this many values a thread costs more than it saves.
const MIN_VALUES_PER_THREAD: usize = 1 << 15;

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
        let (CpuStorage::F32(x), CpuStorage::F32(params)) = (x, params) else {
            candle_core::bail!("fused-snake takes f32 activations and parameters")
        };
        let (Some((x_start, x_end)), Some((p_start, _))) =
            (x_layout.contiguous_offsets(), params_layout.contiguous_offsets())
        else {
            candle_core::bail!("fused-snake takes contiguous tensors")
        };
        let (alpha, rest) = params[p_start..p_start + 3 * channels].split_at(channels);
        let (inv_beta, bias) = rest.split_at(channels);
        let total_rows = self.pad_left + rows + self.pad_right;
        let mut out = vec![0f32; total_rows * channels];
        let body = &mut out[self.pad_left * channels..(self.pad_left + rows) * channels];
        let x = &x[x_start..x_end];
        let threads = candle_core::utils::get_num_threads().min(x.len() / MIN_VALUES_PER_THREAD).max(1);
        let chunk = rows.div_ceil(threads).max(1) * channels;
        std::thread::scope(|scope| {
            for (xs, ys) in x.chunks(chunk).zip(body.chunks_mut(chunk)) {
                scope.spawn(move || snake_rows(xs, ys, alpha, inv_beta, bias));
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((total_rows, channels))))
    }
}

/// Snake over whole rows of `channels = alpha.len()` values; the inner loop vectorises.
fn snake_rows(x: &[f32], out: &mut [f32], alpha: &[f32], inv_beta: &[f32], bias: &[f32]) {
    let channels = alpha.len();
    for (xs, ys) in x.chunks_exact(channels).zip(out.chunks_exact_mut(channels)) {
        for ((((y, &x), &a), &ib), &b) in ys.iter_mut().zip(xs).zip(alpha).zip(inv_beta).zip(bias) {
            let v = x + b;
            *y = v + sin_squared(a * v) * ib;
        }
    }
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
    use candle_core::Device;

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
    fn fused_cpu_snake_equals_the_composed_formula_with_bias_and_padding() {
        let (rows, channels) = (70_001, 3);
        let weights = Weights::random(11, DType::F32, &Device::Cpu);
        let bias = Tensor::new(&[0.5f32, -1.0, 2.0], &Device::Cpu).unwrap();
        let snake = Snake::load(&weights.pp("snake"), channels, Some(bias.clone())).unwrap();
        let values: Vec<f32> = (0..rows * channels).map(|i| ((i % 997) as f32 - 498.0) * 0.01).collect();
        let x = Tensor::from_vec(values, (rows, channels), &Device::Cpu).unwrap();
        let got = snake.forward(&x, 2, 5).unwrap();
        assert_eq!(got.dims(), [rows + 7, channels]);
        let alpha = weights.pp("snake").get(&[1, channels, 1], "alpha").unwrap().reshape((1, channels)).unwrap();
        let beta = weights.pp("snake").get(&[1, channels, 1], "beta").unwrap().reshape((1, channels)).unwrap();
        let y = x.broadcast_add(&bias).unwrap();
        let wave = y.broadcast_mul(&alpha.exp().unwrap()).unwrap().sin().unwrap().sqr().unwrap();
        let expected = (&y + wave.broadcast_div(&(beta.exp().unwrap() + 1e-9).unwrap()).unwrap()).unwrap();
        let body = got.narrow(0, 2, rows).unwrap();
        let diff = (body - expected).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
        let edges = Tensor::cat(&[got.narrow(0, 0, 2).unwrap(), got.narrow(0, rows + 2, 5).unwrap()], 0).unwrap();
        assert_eq!(edges.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
    }
}
