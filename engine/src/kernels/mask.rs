//! Which keys an attention query sees, and the query chunking every attention path shares
//! (docs/acestep-model.md §4: full, sliding-band and causal masks).

use candle_core::{Device, Tensor};

/// Query rows processed at once by every attention path (`model::layers::attend`, the CPU kernels); bounds the score matrix to `QUERY_CHUNK × keys`.
pub const QUERY_CHUNK: usize = 512;

/// Which keys a query may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttnMask {
    /// Every key.
    Full,
    /// Keys with |i − j| ≤ window (bidirectional band).
    Sliding(usize),
    /// Keys with j ≤ i.
    Causal,
}

impl AttnMask {
    /// Whether the query at position `i` sees the key at position `j`.
    pub fn sees(self, i: usize, j: usize) -> bool {
        match self {
            Self::Full => true,
            Self::Sliding(w) => i.abs_diff(j) <= w,
            Self::Causal => j <= i,
        }
    }

    /// Keys `k0..k1` of `0..keys` that some query of `q0..q1` sees.
    pub fn key_range(self, q0: usize, q1: usize, keys: usize) -> (usize, usize) {
        match self {
            Self::Full => (0, keys),
            Self::Sliding(w) => (q0.saturating_sub(w), (q1 + w).min(keys)),
            Self::Causal => (0, q1.min(keys)),
        }
    }
}

/// Additive mask `[rows, keys]` (0 visible, −∞ hidden) for queries `q0..q1` against keys `k0..k1`,
/// or `None` when every key in the range is visible.
pub fn band_mask(
    mask: AttnMask,
    q0: usize,
    q1: usize,
    k0: usize,
    k1: usize,
    device: &Device,
) -> candle_core::Result<Option<Tensor>> {
    if mask == AttnMask::Full {
        return Ok(None);
    }
    let values: Vec<f32> = (q0..q1)
        .flat_map(|i| (k0..k1).map(move |j| (i, j)))
        .map(|(i, j)| if mask.sees(i, j) { 0.0 } else { f32::NEG_INFINITY })
        .collect();
    if values.iter().all(|v| *v == 0.0) {
        return Ok(None);
    }
    Ok(Some(Tensor::from_vec(values, (q1 - q0, k1 - k0), device)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_band_is_inclusive_of_the_window_edge() {
        let m = band_mask(AttnMask::Sliding(2), 0, 5, 0, 5, &Device::Cpu).unwrap().unwrap();
        let m: Vec<Vec<f32>> = m.to_vec2().unwrap();
        assert_eq!(m[0][2], 0.0);
        assert_eq!(m[0][3], f32::NEG_INFINITY);
        assert_eq!(m[4][2], 0.0);
    }
}
