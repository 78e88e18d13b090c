//! The DiT's AdaLN arithmetic (docs/acestep-model.md §6): the modulated norm `rms_norm(x)·(1 + scale) + shift` and
//! the gated residual `h + y·gate`. On the CPU in f32 each runs as one fused kernel ([`crate::kernels::cpu::adaln`]).

use candle_core::{Module, Tensor};

use super::layers::RmsNorm;
use crate::error::Result;
use crate::kernels::cpu::adaln::{GatedResidual, ModulatedNorm};
use crate::kernels::storage::is_cpu_f32;

/// `norm(x)·(1 + scale) + shift` for `x` `[B, S, hidden]` and `shift`, `scale` `[1, 1, hidden]`.
pub fn modulated_norm(norm: &RmsNorm, x: &Tensor, shift: &Tensor, scale: &Tensor) -> Result<Tensor> {
    if is_cpu_f32(x) {
        let op = ModulatedNorm {
            weight: norm.weight().to_vec1()?,
            eps: norm.eps(),
            shift: shift.flatten_all()?.to_vec1()?,
            scale: scale.flatten_all()?.to_vec1()?,
        };
        return Ok(x.contiguous()?.apply_op1_no_bwd(&op)?);
    }
    Ok(norm.forward(x)?.broadcast_mul(&(scale + 1.0)?)?.broadcast_add(shift)?)
}

/// `h + y·gate` for `h`, `y` `[B, S, hidden]` and `gate` `[1, 1, hidden]`. On the CPU the sum overwrites `y`'s
/// memory: pass a freshly computed update that shares it with no other tensor.
pub fn gated_residual(h: &Tensor, y: Tensor, gate: &Tensor) -> Result<Tensor> {
    if is_cpu_f32(&y) && is_cpu_f32(h) {
        let y = y.contiguous()?;
        y.inplace_op2(&h.contiguous()?, &GatedResidual { gate: gate.flatten_all()?.to_vec1()? })?;
        return Ok(y);
    }
    Ok((h + y.broadcast_mul(gate)?)?)
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;
    use crate::model::weights::Weights;
    use crate::test_util::max_diff;

    fn row(hidden: usize) -> Tensor {
        Tensor::randn(0f32, 1., (1, 1, hidden), &Device::Cpu).unwrap()
    }

    #[test]
    fn modulated_norm_equals_the_composed_norm_and_modulation() {
        let hidden = 96;
        let norm = RmsNorm::new(&Weights::random(5, DType::F32, &Device::Cpu), "norm", hidden, 1e-6).unwrap();
        let x = Tensor::randn(0f32, 3., (2, 37, hidden), &Device::Cpu).unwrap();
        let (shift, scale) = (row(hidden), row(hidden));
        let want = norm.forward(&x).unwrap().broadcast_mul(&(&scale + 1.0).unwrap()).unwrap().broadcast_add(&shift);
        let got = modulated_norm(&norm, &x, &shift, &scale).unwrap();
        assert!(max_diff(&got, &want.unwrap()) < 1e-5);
    }

    #[test]
    fn gated_residual_equals_the_composed_sum() {
        let (h, y) = (Tensor::randn(0f32, 1., (1, 21, 64), &Device::Cpu).unwrap(), row(64));
        let y = y.broadcast_as((1, 21, 64)).unwrap().contiguous().unwrap();
        let gate = row(64);
        let want = (&h + y.broadcast_mul(&gate).unwrap()).unwrap();
        assert!(max_diff(&gated_residual(&h, y, &gate).unwrap(), &want) < 1e-6);
    }

    #[test]
    fn rows_of_the_wrong_width_are_an_error() {
        let norm = RmsNorm::new(&Weights::random(5, DType::F32, &Device::Cpu), "norm", 8, 1e-6).unwrap();
        let x = Tensor::zeros((1, 3, 8), DType::F32, &Device::Cpu).unwrap();
        assert!(modulated_norm(&norm, &x, &row(7), &row(7)).is_err());
        assert!(gated_residual(&x, x.clone(), &row(7)).is_err());
    }
}
