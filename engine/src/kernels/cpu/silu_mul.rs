//! The SwiGLU gating `silu(gate) · up` on the CPU in one parallel pass, in place in `gate` (docs/acestep-model.md §14,
//! CPU fast path): the composed form allocates and walks the MLP's widest activations twice.

use candle_core::{CpuStorage, InplaceOp2, Layout};
use rayon::prelude::*;

use super::exp;
use crate::kernels::storage::{f32_slice, f32_slice_mut};

/// `gate ← silu(gate) · up` for contiguous f32 tensors of one shape.
#[derive(Debug, Clone, Copy)]
pub struct SiluMul;

/// Elements per parallel task.
const CHUNK: usize = 16 * 1024;

impl InplaceOp2 for SiluMul {
    fn name(&self) -> &'static str {
        "silu-mul"
    }

    fn cpu_fwd(
        &self,
        gate: &mut CpuStorage,
        gate_l: &Layout,
        up: &CpuStorage,
        up_l: &Layout,
    ) -> candle_core::Result<()> {
        if gate_l.shape() != up_l.shape() {
            candle_core::bail!("silu-mul: gate {:?} and up {:?} differ", gate_l.shape(), up_l.shape())
        }
        let (gate, up) = (f32_slice_mut(gate, gate_l, self.name())?, f32_slice(up, up_l, self.name())?);
        gate.par_chunks_mut(CHUNK).zip(up.par_chunks(CHUNK)).for_each(|(g, u)| exp::silu_mul(g, u));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    #[test]
    fn equals_silu_of_gate_times_up() {
        let gate = Tensor::randn(0f32, 4., (3, 40_000), &Device::Cpu).unwrap();
        let up = Tensor::randn(0f32, 1., (3, 40_000), &Device::Cpu).unwrap();
        let want = (candle_nn::ops::silu(&gate).unwrap() * &up).unwrap();
        gate.inplace_op2(&up, &SiluMul).unwrap();
        // Relative to the value: the vectorised e^x may differ from libm's by an ulp or two, and products reach ~50.
        let diff = ((gate - &want).unwrap().abs().unwrap() / (want.abs().unwrap() + 1.0).unwrap()).unwrap();
        let diff: f32 = diff.flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap();
        assert!(diff < 1e-6, "{diff}");
    }

    #[test]
    fn mismatched_shapes_are_an_error() {
        let gate = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let up = Tensor::zeros((3, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(gate.inplace_op2(&up, &SiluMul).is_err());
    }
}
