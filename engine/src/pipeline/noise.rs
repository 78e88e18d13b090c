//! The initial noise: injected by the caller (parity tests) or drawn from a seeded Gaussian RNG.

use candle_core::{DType, Device, Tensor};

use crate::error::{EngineError, Result};
use crate::model::weights::splitmix64;

/// `[1, frames, channels]` standard-normal noise: the request's own tensor when given (checked for shape and
/// finiteness), otherwise deterministic Box–Muller draws from `seed`.
pub fn initial_noise(
    injected: Option<&Tensor>,
    seed: u64,
    frames: usize,
    channels: usize,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    if let Some(noise) = injected {
        if noise.dims() != [1, frames, channels] {
            return Err(EngineError::TensorShape {
                name: "injected noise".into(),
                expected: vec![1, frames, channels],
                found: noise.dims().to_vec(),
            });
        }
        let finite = noise.to_dtype(DType::F32)?.abs()?.max_all()?.to_scalar::<f32>()?.is_finite();
        if !finite {
            return Err(EngineError::NonFinite { what: "the injected noise".into() });
        }
        return Ok(noise.to_dtype(dtype)?.to_device(device)?);
    }
    let mut state = seed;
    let mut uniform = || ((splitmix64(&mut state) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let n = frames * channels;
    let mut values = Vec::with_capacity(n + 1);
    while values.len() < n {
        let (u1, u2) = (uniform(), uniform());
        let radius = (-2.0 * u1.ln()).sqrt();
        let angle = std::f64::consts::TAU * u2;
        values.push((radius * angle.cos()) as f32);
        values.push((radius * angle.sin()) as f32);
    }
    values.truncate(n);
    Ok(Tensor::from_vec(values, (1, frames, channels), device)?.to_dtype(dtype)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_noise_is_reproducible_and_standard_normal() {
        let a = initial_noise(None, 42, 500, 64, DType::F32, &Device::Cpu).unwrap();
        let b = initial_noise(None, 42, 500, 64, DType::F32, &Device::Cpu).unwrap();
        let c = initial_noise(None, 43, 500, 64, DType::F32, &Device::Cpu).unwrap();
        let v: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(v, b.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        assert_ne!(v, c.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len() as f32;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "mean {mean} var {var}");
    }

    #[test]
    fn injected_noise_of_the_wrong_shape_is_rejected() {
        let noise = Tensor::zeros((1, 10, 64), DType::F32, &Device::Cpu).unwrap();
        let err = initial_noise(Some(&noise), 0, 11, 64, DType::F32, &Device::Cpu).unwrap_err();
        assert!(matches!(err, EngineError::TensorShape { .. }), "{err}");
    }
}
