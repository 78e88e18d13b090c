//! Attention on AVX-512 CPUs through the panel kernel (docs/acestep-model.md §14, CPU fast path): for each batch item,
//! KV head and query chunk, the keys and values are packed into panels once and shared by the query heads of the group;
//! each head's scores come from one panel product, are normalised in place by [`MaskedSoftmax::normalise`] and are
//! multiplied by the packed values straight into the output. The tasks run in parallel on the rayon pool. The key
//! count is padded to whole panels with zero keys, which the softmax never sees.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp3, Layout, Shape};
use rayon::prelude::*;

use super::masked_softmax::MaskedSoftmax;
use super::panels::{self, PanelMatrix, PANEL};
use crate::kernels::mask::{AttnMask, QUERY_CHUNK};
use crate::kernels::storage::{written, SendPtr};

/// `softmax(scale · q·kᵀ + mask) · v` for `q` `[B, H, S, D]` and `k`, `v` `[B, KV, S_k, D]` (f32, rows of `D`
/// contiguous, any strides above), returned as `[B, S, H, D]`: the layout the output projection reads.
#[derive(Debug, Clone, Copy)]
pub struct PanelAttention {
    /// Which keys a query sees.
    pub mask: AttnMask,
    /// `1/√D`.
    pub scale: f32,
}

impl PanelAttention {
    /// Whether this op runs heads `head_dim` wide against `keys` keys: AVX-512, whole panels of head width, and at
    /// least a panel of keys (shorter sequences are cheaper through candle's matmul than padded to a panel).
    pub fn applies(head_dim: usize, keys: usize) -> bool {
        head_dim.is_multiple_of(PANEL) && keys >= PANEL && panels::available()
    }
}

impl CustomOp3 for PanelAttention {
    fn name(&self) -> &'static str {
        "panel-attention"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        q_layout: &Layout,
        k: &CpuStorage,
        k_layout: &Layout,
        v: &CpuStorage,
        v_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, heads, s, d) = q_layout.shape().dims4()?;
        let (kb, kv_heads, s_k, kd) = k_layout.shape().dims4()?;
        if (kb, kd) != (b, d) || v_layout.shape() != k_layout.shape() || kv_heads == 0 || heads % kv_heads != 0 {
            candle_core::bail!(
                "panel-attention: queries {:?} do not fit keys {:?} and values {:?}",
                q_layout.shape(),
                k_layout.shape(),
                v_layout.shape()
            )
        }
        if !Self::applies(d, s_k) {
            candle_core::bail!("panel-attention does not run heads {d} wide against {s_k} keys on this CPU")
        }
        let (q, k, v) =
            (Heads::new(q, q_layout, "queries")?, Heads::new(k, k_layout, "keys")?, Heads::new(v, v_layout, "values")?);
        let sizes = Sizes { heads, kv_heads, queries: s, keys: s_k, width: d };
        let tasks: Vec<(usize, usize, usize)> = (0..b)
            .flat_map(|item| (0..kv_heads).map(move |group| (item, group)))
            .flat_map(|(item, group)| (0..s).step_by(QUERY_CHUNK).map(move |q0| (item, group, q0)))
            .collect();
        let fill = |out: &mut [MaybeUninit<f32>]| {
            let dst = SendPtr(out.as_mut_ptr().cast());
            tasks
                .into_par_iter()
                .try_for_each(|(item, group, q0)| self.chunk(sizes, [&q, &k, &v], (item, group, q0), &dst))
        };
        // SAFETY: the tasks cover every (item, head, query) row, each writing all `d` values of its rows.
        let out = unsafe { written(b * heads * s * d, fill)? };
        Ok((CpuStorage::F32(out), Shape::from((b, s, heads, d))))
    }
}

/// A `[B, H, S, D]` operand whose rows of `D` values are contiguous, with any strides above them (the heads of a
/// projection's `[B, S, H, D]` output seen through a transpose, or a contiguous tensor).
struct Heads<'a> {
    values: &'a [f32],
    start: usize,
    /// Strides of the batch item, the head and the position.
    strides: [usize; 3],
}

impl<'a> Heads<'a> {
    /// Checks that `layout` has contiguous rows inside `storage`, naming `what` otherwise.
    fn new(storage: &'a CpuStorage, layout: &Layout, what: &str) -> candle_core::Result<Self> {
        let CpuStorage::F32(values) = storage else { candle_core::bail!("panel-attention takes f32 {what}") };
        let (dims, strides) = (layout.shape().dims(), layout.stride());
        let end = layout.start_offset() + dims.iter().zip(strides).map(|(n, s)| n.saturating_sub(1) * s).sum::<usize>();
        if dims.len() != 4 || strides[3] != 1 || (!dims.contains(&0) && end >= values.len()) {
            candle_core::bail!("panel-attention takes {what} with contiguous rows, not {:?} / {strides:?}", dims)
        }
        Ok(Self { values, start: layout.start_offset(), strides: [strides[0], strides[1], strides[2]] })
    }

    /// The rows of head `head` of batch item `item` from position `position` on.
    fn rows(&self, item: usize, head: usize, position: usize) -> &'a [f32] {
        let [b, h, s] = self.strides;
        &self.values[self.start + item * b + head * h + position * s..]
    }

    /// Distance between the rows of consecutive positions.
    fn row_stride(&self) -> usize {
        self.strides[2]
    }
}

/// Sizes of one [`PanelAttention`] call.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    heads: usize,
    kv_heads: usize,
    queries: usize,
    keys: usize,
    width: usize,
}

impl PanelAttention {
    /// The query rows `q0..q0 + QUERY_CHUNK` of batch item `item` for the query heads of KV head `group`, written
    /// into `out` `[B, S, H, D]`.
    fn chunk(
        &self,
        sizes: Sizes,
        [q, k, v]: [&Heads; 3],
        (item, group, q0): (usize, usize, usize),
        out: &SendPtr,
    ) -> candle_core::Result<()> {
        let Sizes { heads, kv_heads, queries, keys: s_k, width: d } = sizes;
        let rep = heads / kv_heads;
        let q1 = (q0 + QUERY_CHUNK).min(queries);
        let (k0, k1) = self.mask.key_range(q0, q1, s_k);
        let (rows, keys) = (q1 - q0, k1 - k0);
        let padded = keys.next_multiple_of(PANEL);
        let (Some(keys_t), Some(values)) = (
            PanelMatrix::from_rows(k.rows(item, group, k0), k.row_stride(), keys, d, padded),
            PanelMatrix::from_columns(v.rows(item, group, k0), v.row_stride(), keys, padded, d),
        ) else {
            candle_core::bail!("panel-attention could not pack {keys} keys of width {d}")
        };
        let softmax = MaskedSoftmax { scale: self.scale, mask: self.mask, q0, rows, k0 };
        let mut scores = vec![0f32; rows * padded];
        for head in group * rep..(group + 1) * rep {
            let query = q.rows(item, head, q0);
            let first = ((item * queries + q0) * heads + head) * d;
            // SAFETY: the query rows `q0..q1` of `head` lie inside `q` (checked by `Heads::new`); `scores` is
            // `[rows, padded]`; the output rows `q0..q1` of `head` lie inside `out` (alive for the call) and belong
            // to this task alone, since a task owns one batch item's KV group's heads and one query chunk.
            unsafe {
                keys_t.multiply(query.as_ptr(), q.row_stride(), rows, 0..padded / PANEL, scores.as_mut_ptr(), padded);
                for (i, row) in scores.chunks_exact_mut(padded).enumerate() {
                    softmax.normalise(q0 + i, row, keys);
                }
                values.multiply(scores.as_ptr(), padded, rows, 0..d / PANEL, out.0.add(first), heads * d);
            }
        }
        Ok(())
    }
}
