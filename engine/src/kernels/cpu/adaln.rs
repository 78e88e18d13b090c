//! The DiT's AdaLN arithmetic on the CPU in f32, each one parallel pass over the rows (docs/acestep-model.md §6,
//! §14 CPU fast path): the modulated norm `rms_norm(x)·weight·(1 + scale) + shift` and the gated residual
//! `h + y·gate`. The composed forms walk a block's activations two or three times and allocate every
//! intermediate.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, InplaceOp2, Layout, Shape};
use rayon::prelude::*;

use super::rms::inverse_rms;
use crate::kernels::storage::{f32_slice, f32_slice_mut, written};

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
pub struct ModulatedNorm {
    /// The norm's weight, `[hidden]`.
    pub weight: Vec<f32>,
    /// The norm's epsilon.
    pub eps: f32,
    /// Added after the modulation, `[hidden]`.
    pub shift: Vec<f32>,
    /// The modulation's scale (the normed row is multiplied by `1 + scale`), `[hidden]`.
    pub scale: Vec<f32>,
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
pub struct GatedResidual {
    /// The gate, `[hidden]`.
    pub gate: Vec<f32>,
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
