//! The RMS factor of a row, shared by the fused norms ([`super::norm_rope`], [`super::adaln`]).

/// `rsqrt(mean(row²) + eps)`: the factor RMSNorm scales a row by before its weight.
#[inline]
pub fn inverse_rms(row: &[f32], eps: f32) -> f32 {
    let mean = row.iter().map(|v| v * v).sum::<f32>() / row.len() as f32;
    1.0 / (mean + eps).sqrt()
}
