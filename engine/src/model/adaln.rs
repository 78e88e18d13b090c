//! The DiT's AdaLN arithmetic (spec §6): the modulated norm `rms_norm(x)·(1 + scale) + shift` and the gated
//! residual `h + y·gate`. On the CPU in f32 each runs as one parallel pass over the rows (spec §14, CPU fast
//! path); the composed forms walk a block's activations two or three times and allocate every intermediate.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, InplaceOp2, Layout, Module, Shape, Tensor};
use rayon::prelude::*;

use super::layers::{inverse_rms, RmsNorm};
use super::linear::{f32_slice, f32_slice_mut, is_cpu_f32, written};
use crate::error::Result;

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

/// Rows per parallel task.
const ROWS_PER_TASK: usize = 8;

/// Checks that `values` is a whole number of rows as wide as `per_column`, naming the op otherwise.
fn check_width(op: &str, values: usize, layout: &Layout, per_column: usize) -> candle_core::Result<()> {
    if layout.shape().dims().last() != Some(&per_column) || !values.is_multiple_of(per_column.max(1)) {
        candle_core::bail!("{op}: input {:?} does not end in the {per_column} modulated columns", layout.shape())
    }
    Ok(())
}

/// `rms_norm(x)·weight·(1 + scale) + shift` per row, in f32.
struct ModulatedNorm {
    weight: Vec<f32>,
    eps: f32,
    shift: Vec<f32>,
    scale: Vec<f32>,
}

impl CustomOp1 for ModulatedNorm {
    fn name(&self) -> &'static str {
        "modulated-rms-norm"
    }

    fn cpu_fwd(&self, x: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let hidden = self.weight.len();
        let x = f32_slice(x, layout, self.name())?;
        check_width(self.name(), x.len(), layout, hidden)?;
        if self.shift.len() != hidden || self.scale.len() != hidden {
            candle_core::bail!("{}: shift and scale must have the norm's {hidden} columns", self.name())
        }
        let fill = |out: &mut [MaybeUninit<f32>]| {
            out.par_chunks_mut(hidden * ROWS_PER_TASK).zip(x.par_chunks(hidden * ROWS_PER_TASK)).for_each(
                |(out, x)| {
                    for (out, x) in out.chunks_exact_mut(hidden).zip(x.chunks_exact(hidden)) {
                        let inv = inverse_rms(x, self.eps);
                        for (i, (o, v)) in out.iter_mut().zip(x).enumerate() {
                            o.write((v * inv * self.weight[i]) * (self.scale[i] + 1.0) + self.shift[i]);
                        }
                    }
                },
            );
            Ok(())
        };
        // SAFETY: every row of the output is written, all `x.len()` values.
        let out = unsafe { written(x.len(), fill)? };
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// `y ← h + y·gate` per row.
struct GatedResidual {
    gate: Vec<f32>,
}

impl InplaceOp2 for GatedResidual {
    fn name(&self) -> &'static str {
        "gated-residual"
    }

    fn cpu_fwd(&self, y: &mut CpuStorage, y_l: &Layout, h: &CpuStorage, h_l: &Layout) -> candle_core::Result<()> {
        if y_l.shape() != h_l.shape() {
            candle_core::bail!("{}: update {:?} and residual {:?} differ", self.name(), y_l.shape(), h_l.shape())
        }
        let hidden = self.gate.len();
        let (y, h) = (f32_slice_mut(y, y_l, self.name())?, f32_slice(h, h_l, self.name())?);
        check_width(self.name(), y.len(), y_l, hidden)?;
        y.par_chunks_mut(hidden * ROWS_PER_TASK).zip(h.par_chunks(hidden * ROWS_PER_TASK)).for_each(|(y, h)| {
            for (y, h) in y.chunks_exact_mut(hidden).zip(h.chunks_exact(hidden)) {
                for ((y, h), g) in y.iter_mut().zip(h).zip(&self.gate) {
                    *y = h + *y * g;
                }
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;
    use crate::model::weights::Weights;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
    }

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
