//! Snake1d of the Oobleck VAE (docs/acestep-model.md §8): `y = x + sin²(e^α·x) / (e^β + 1e-9)` per channel, in f32. On
//! the CPU it is one fused, multi-threaded pass that also adds the previous conv's bias and the next conv's zero
//! padding.

use candle_core::{DType, Tensor};

use crate::error::{EngineError, Result};
use crate::kernels::cpu::snake_residual::FusedSnake;
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
        let x = x.to_dtype(DType::F32)?;
        if x.device().is_cpu() {
            let op = FusedSnake { pad_left, pad_right };
            return Ok(x.contiguous()?.apply_op2_no_bwd(&self.params, &op)?);
        }
        self.forward_composed(&x, pad_left, pad_right)
    }

    /// [`Snake::forward`] from candle ops (any device; GPUs run this), for an f32 `x`. Each step's input is
    /// dropped as soon as its output exists, so at most three activations of this size are alive beside `x`
    /// (the activation headroom counts on it).
    fn forward_composed(&self, x: &Tensor, pad_left: usize, pad_right: usize) -> Result<Tensor> {
        let row = |i: usize| self.params.narrow(0, i, 1);
        let y = x.broadcast_add(&row(2)?)?;
        let mut wave = y.broadcast_mul(&row(0)?)?;
        wave = wave.sin()?;
        wave = wave.sqr()?;
        wave = wave.broadcast_mul(&row(1)?)?;
        let sum = (y + wave)?;
        Ok(sum.pad_with_zeros(0, pad_left, pad_right)?)
    }
}

crate::model::resident::resident_fields!(Snake { params });

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn fused_cpu_snake_equals_the_pytorch_formula_and_the_gpu_path() {
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
        let composed = snake.forward_composed(&x, 2, 5).unwrap();
        let diff = (got - composed).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
    }
}
