//! Helpers shared by the engine's unit tests.

use candle_core::{Device, Tensor};

/// A deterministic CPU tensor of `shape` with values in [-1, 1], different for each `seed`.
pub fn ramp(shape: &[usize], seed: usize) -> Tensor {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|i| ((i * 7919 + seed) % 211) as f32 / 105.0 - 1.0).collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

/// The largest absolute difference between two tensors of one shape, in f32.
pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    let diff = (a.to_dtype(candle_core::DType::F32).unwrap() - b.to_dtype(candle_core::DType::F32).unwrap()).unwrap();
    diff.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
}
