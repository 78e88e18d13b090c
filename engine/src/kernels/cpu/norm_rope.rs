//! The attention heads' RMSNorm and RoPE on the CPU in one in-place pass over a projection's output `[B, S, H, D]`
//! (docs/acestep-model.md §4, §14 CPU fast path). The composed form normalises into a new tensor, copies it into `[B,
//! H, S, D]` order and rotates it into a third; here the heads stay where the projection wrote them and the attention
//! reads them through a transposed view.

use candle_core::{CpuStorage, InplaceOp1, InplaceOp3, Layout};
use rayon::prelude::*;

use super::rms::inverse_rms;
use crate::kernels::storage::{f32_slice, f32_slice_mut};

/// Per-head RMSNorm `x · rsqrt(mean(x²) + eps) · weight` (when `weight` is given), then, as an [`InplaceOp3`] with
/// the `[len ≥ S, D/2]` cos and sin tables, the rotation of position `s` ("rotate half" form), on every `D`-wide
/// row of a contiguous `[B, S, H, D]` tensor.
#[derive(Debug, Clone)]
pub struct NormRope {
    /// The norm's weight, `[D]`; `None` rotates only.
    pub weight: Option<Vec<f32>>,
    /// The norm's epsilon.
    pub eps: f32,
}

/// Rows (of one head each) per parallel task.
const ROWS_PER_TASK: usize = 64;

impl NormRope {
    /// Applies the norm and, with `tables` (cos, sin), the rotation to `x` laid out as `layout`.
    fn run(&self, x: &mut [f32], layout: &Layout, tables: Option<(&[f32], &[f32])>) -> candle_core::Result<()> {
        let (_, seq, heads, d) = layout.shape().dims4()?;
        if self.weight.as_ref().is_some_and(|w| w.len() != d) || !d.is_multiple_of(2) {
            candle_core::bail!("norm-rope: heads {d} wide do not fit the norm's weight or are odd")
        }
        let half = d / 2;
        if let Some((cos, sin)) = tables {
            if cos.len() < seq * half || sin.len() < seq * half {
                candle_core::bail!("norm-rope: the tables cover fewer than the {seq} positions")
            }
        }
        x.par_chunks_mut(d * ROWS_PER_TASK).enumerate().for_each(|(task, rows)| {
            for (i, row) in rows.chunks_exact_mut(d).enumerate() {
                if let Some(weight) = &self.weight {
                    let inv = inverse_rms(row, self.eps);
                    row.iter_mut().zip(weight).for_each(|(v, w)| *v = *v * inv * w);
                }
                if let Some((cos, sin)) = tables {
                    let position = (task * ROWS_PER_TASK + i) / heads % seq;
                    let (cos, sin) = (&cos[position * half..][..half], &sin[position * half..][..half]);
                    let (a, b) = row.split_at_mut(half);
                    for (((a, b), c), s) in a.iter_mut().zip(b).zip(cos).zip(sin) {
                        (*a, *b) = (*a * c - *b * s, *a * s + *b * c);
                    }
                }
            }
        });
        Ok(())
    }
}

impl InplaceOp1 for NormRope {
    fn name(&self) -> &'static str {
        "norm-heads"
    }

    fn cpu_fwd(&self, x: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        self.run(f32_slice_mut(x, layout, "norm-heads")?, layout, None)
    }
}

impl InplaceOp3 for NormRope {
    fn name(&self) -> &'static str {
        "norm-rope-heads"
    }

    fn cpu_fwd(
        &self,
        x: &mut CpuStorage,
        layout: &Layout,
        cos: &CpuStorage,
        cos_l: &Layout,
        sin: &CpuStorage,
        sin_l: &Layout,
    ) -> candle_core::Result<()> {
        let tables = (f32_slice(cos, cos_l, "norm-rope cos")?, f32_slice(sin, sin_l, "norm-rope sin")?);
        self.run(f32_slice_mut(x, layout, "norm-rope-heads")?, layout, Some(tables))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};

    use super::*;

    #[test]
    fn a_weight_of_the_wrong_width_is_an_error() {
        let x = Tensor::zeros((1, 2, 2, 8), DType::F32, &Device::Cpu).unwrap();
        assert!(x.inplace_op1(&NormRope { weight: Some(vec![1.0; 7]), eps: 1e-6 }).is_err());
    }
}
