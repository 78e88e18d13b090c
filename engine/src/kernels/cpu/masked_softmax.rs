//! The attention's scaled, masked softmax on the CPU in one pass over the scores, in place (docs/acestep-model.md §14,
//! CPU fast path): `softmax(scale · scores)` over the keys each query may see, 0 for the others. The composed form
//! (scale, add an additive −∞ band mask, softmax) walks the score matrix three times and allocates twice; at the DiT's
//! 375 tokens the scores are the largest tensors of a layer.

use candle_core::{CpuStorage, InplaceOp1, Layout};
use rayon::prelude::*;

use super::exp;
use crate::kernels::mask::AttnMask;
use crate::kernels::storage::f32_slice_mut;

/// Scores `[.., rows_per_query_block, keys]` of queries `q0..q0 + rows` against keys `k0..k0 + keys`; the second
/// last dimension repeats the `rows` queries once per query head sharing a KV head.
#[derive(Debug, Clone, Copy)]
pub struct MaskedSoftmax {
    /// Multiplies every score before the softmax (`1/√d`).
    pub scale: f32,
    /// Which keys a query sees.
    pub mask: AttnMask,
    /// Position of the first query.
    pub q0: usize,
    /// Queries in the block.
    pub rows: usize,
    /// Position of the first key.
    pub k0: usize,
}

impl MaskedSoftmax {
    /// Keys `lo..hi` (indices into the row) visible to query `i`.
    fn visible(&self, i: usize, keys: usize) -> (usize, usize) {
        let (lo, hi) = self.mask.key_range(i, i + 1, self.k0 + keys);
        let lo = lo.max(self.k0);
        (lo - self.k0, hi.max(lo) - self.k0)
    }

    /// Replaces `row`'s first `keys` scores, those of the query at position `query`, by its probabilities, and
    /// zeroes the rest of the row (keys it may not see, and any padding past `keys`).
    pub fn normalise(&self, query: usize, row: &mut [f32], keys: usize) {
        let (lo, hi) = self.visible(query, keys);
        exp::softmax(&mut row[lo..hi], self.scale);
        row[..lo].fill(0.0);
        row[hi..].fill(0.0);
    }
}

impl InplaceOp1 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "masked-softmax"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let values = f32_slice_mut(storage, layout, self.name())?;
        let keys = layout.shape().dims().last().copied().unwrap_or(0);
        if keys == 0 || self.rows == 0 {
            return Ok(());
        }
        values.par_chunks_mut(keys).enumerate().for_each(|(r, row)| {
            self.normalise(self.q0 + r % self.rows, row, keys);
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;
    use crate::kernels::mask::band_mask;

    #[test]
    fn equals_scale_then_additive_mask_then_softmax() {
        let (rep, rows, keys, q0, k0) = (2, 5, 9, 3, 1);
        let scores = Tensor::randn(0f32, 3., (1, 2, rep * rows, keys), &Device::Cpu).unwrap();
        for mask in [AttnMask::Full, AttnMask::Sliding(2), AttnMask::Causal] {
            let got = scores.copy().unwrap();
            got.inplace_op1(&MaskedSoftmax { scale: 0.5, mask, q0, rows, k0 }).unwrap();
            let masked = match band_mask(mask, q0, q0 + rows, k0, k0 + keys, &Device::Cpu).unwrap() {
                Some(m) => {
                    (&scores * 0.5).unwrap().reshape((1, 2, rep, rows, keys)).unwrap().broadcast_add(&m).unwrap()
                }
                None => (&scores * 0.5).unwrap(),
            };
            let want = candle_nn::ops::softmax_last_dim(&masked).unwrap().reshape(scores.shape()).unwrap();
            let diff: f32 =
                (got - want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap();
            assert!(diff < 1e-6, "{mask:?}: {diff}");
        }
    }

    #[test]
    fn a_query_that_sees_no_key_gets_zeros_not_nans() {
        let scores = Tensor::ones((1, 1, 1, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        scores.inplace_op1(&MaskedSoftmax { scale: 1.0, mask: AttnMask::Causal, q0: 0, rows: 1, k0: 2 }).unwrap();
        assert_eq!(scores.flatten_all().unwrap().to_vec1::<f32>().unwrap(), [0.0; 4]);
    }
}
