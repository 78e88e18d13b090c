//! Repaint bookkeeping (docs/acestep-model.md §10.3, §13; fixtures README item 7): outpaint padding, seconds → latent
//! frames, DiffSynth's strength mask (reference mode), the official 0/1 chunk mask and boundary crossfade (studio
//! mode), per-frame mixing of latents, and the DiT context `[src ‖ mask]`.

use candle_core::{Tensor, D};

use crate::error::{EngineError, Result};
use crate::model::config::VaeConfig;
use crate::model::scheduler::torch_linspace_f32;
use crate::model::silence::SilenceLatent;

/// How seconds map onto audio samples and latent frames (`hop` samples per frame at `sample_rate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameGrid {
    /// Audio samples per second.
    pub sample_rate: u32,
    /// Audio samples per latent frame.
    pub hop: usize,
}

impl FrameGrid {
    /// The VAE's grid (48 kHz, 1920 samples per frame for ACE-Step).
    pub fn from_vae(cfg: &VaeConfig) -> Self {
        Self { sample_rate: cfg.sampling_rate, hop: cfg.hop() }
    }

    /// `int(seconds · rate)`: samples, truncated toward zero.
    fn samples(&self, seconds: f64) -> i64 {
        (seconds * self.sample_rate as f64) as i64
    }

    /// DiffSynth's frame of a time: `int(seconds · rate / hop)` in float64, truncated.
    fn frame_truncated(&self, seconds: f64) -> i64 {
        (seconds * self.sample_rate as f64 / self.hop as f64) as i64
    }

    /// The official frame of a time: `int(seconds · rate // hop)`, i.e. rounded down.
    fn frame_floored(&self, seconds: f64) -> i64 {
        (seconds * self.sample_rate as f64 / self.hop as f64).floor() as i64
    }
}

/// Zeros added around the source waveform so that regions outside it can be painted, and the regions moved
/// onto the padded timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct OutpaintPadding {
    /// Zero samples prepended.
    pub left: usize,
    /// Zero samples appended.
    pub right: usize,
    /// The regions in seconds of the padded audio.
    pub ranges: Vec<(f64, f64)>,
}

fn check_ranges(ranges: &[(f64, f64)]) -> Result<()> {
    if ranges.is_empty() {
        return Err(EngineError::invalid("a repaint needs at least one time range"));
    }
    for &(start, end) in ranges {
        if !(start.is_finite() && end.is_finite()) || start >= end {
            return Err(EngineError::invalid(format!(
                "repaint range {start}..{end} s is empty or not a number; give a start before the end"
            )));
        }
    }
    Ok(())
}

/// DiffSynth's padding for repaint ranges over a source of `src_samples`: `left = int(max(0, −min start)·rate)`,
/// `right = max(int(max end·rate) − src_samples, 0)`, ranges shifted by the left pad in seconds.
pub fn reference_padding(ranges: &[(f64, f64)], src_samples: usize, grid: FrameGrid) -> Result<OutpaintPadding> {
    check_ranges(ranges)?;
    let min_start = ranges.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
    let max_end = ranges.iter().map(|r| r.1).fold(f64::NEG_INFINITY, f64::max);
    let pad_left = (-min_start).max(0.0);
    Ok(OutpaintPadding {
        left: grid.samples(pad_left) as usize,
        right: (grid.samples(max_end) - src_samples as i64).max(0) as usize,
        ranges: ranges.iter().map(|&(s, e)| (s + pad_left, e + pad_left)).collect(),
    })
}

/// DiffSynth's per-frame denoise mask over `frames` padded latent frames: `strength` on frames
/// `int(s·rate/hop)..int(e·rate/hop)` of every (shifted) range, then 1 on the frames that are padding.
pub fn reference_denoise_mask(
    frames: usize,
    padding: &OutpaintPadding,
    strength: f32,
    grid: FrameGrid,
) -> Result<Vec<f32>> {
    check_ranges(&padding.ranges)?;
    let frame = |seconds: f64| grid.frame_truncated(seconds).clamp(0, frames as i64) as usize;
    let mut mask = vec![0.0f32; frames];
    for &(start, end) in &padding.ranges {
        let (f0, f1) = (frame(start), frame(end));
        if f0 < f1 {
            mask[f0..f1].fill(strength);
        }
    }
    let (pad_left, pad_right) = ((padding.left / grid.hop).min(frames), (padding.right / grid.hop).min(frames));
    mask[..pad_left].fill(1.0);
    mask[frames - pad_right..].fill(1.0);
    Ok(mask)
}

/// The official padding for one region `start..end` seconds (`None` = the source end) over a source of
/// `src_samples`: `int(max(0, −start)·rate)` zeros before and `int(max(0, end − duration)·rate)` after, with
/// the region shifted by the left pad.
pub fn studio_padding(start: f64, end: Option<f64>, src_samples: usize, grid: FrameGrid) -> Result<OutpaintPadding> {
    let duration = src_samples as f64 / grid.sample_rate as f64;
    let end = end.unwrap_or(duration);
    check_ranges(&[(start, end)])?;
    let pad_left = (-start).max(0.0);
    Ok(OutpaintPadding {
        left: grid.samples(pad_left) as usize,
        right: grid.samples((end - duration).max(0.0)) as usize,
        ranges: vec![(start + pad_left, end + pad_left)],
    })
}

/// The official frames `[f0, f1)` of a region on the padded timeline of `frames` latent frames:
/// `f0 = ⌊s·rate/hop⌋` clamped to `[0, frames−1]`, `f1 = ⌊e·rate/hop⌋` clamped to `[f0+1, frames]`.
pub fn studio_region_frames(region: (f64, f64), frames: usize, grid: FrameGrid) -> Result<(usize, usize)> {
    check_ranges(&[region])?;
    if frames == 0 {
        return Err(EngineError::invalid("cannot place a repaint region on zero latent frames"));
    }
    let f0 = grid.frame_floored(region.0).clamp(0, frames as i64 - 1);
    let f1 = grid.frame_floored(region.1).clamp(f0 + 1, frames as i64);
    Ok((f0 as usize, f1 as usize))
}

/// The official 0/1 chunk mask: 1 on frames `[f0, f1)` (generate), 0 elsewhere (keep).
pub fn chunk_mask(frames: usize, (f0, f1): (usize, usize)) -> Vec<f32> {
    (0..frames).map(|i| if (f0..f1).contains(&i) { 1.0 } else { 0.0 }).collect()
}

/// The official boundary crossfade weights: 1 on `[f0, f1)`, a ramp `linspace(0, 1, n+2)[1:−1]` on the up to
/// `crossfade` frames before `f0` and its mirror after `f1` (shortened where the array ends), 0 elsewhere.
pub fn crossfade_weights(frames: usize, (f0, f1): (usize, usize), crossfade: usize) -> Vec<f32> {
    let mut weights = chunk_mask(frames, (f0, f1));
    let (f0, f1) = (f0.min(frames), f1.min(frames));
    let ramp_start = f0.saturating_sub(crossfade);
    let rise = torch_linspace_f32(0.0, 1.0, f0 - ramp_start + 2);
    weights[ramp_start..f0].copy_from_slice(&rise[1..rise.len() - 1]);
    let ramp_end = (f1 + crossfade).min(frames);
    let fall = torch_linspace_f32(1.0, 0.0, ramp_end - f1 + 2);
    weights[f1..ramp_end].copy_from_slice(&fall[1..fall.len() - 1]);
    weights
}

/// Per-frame mix of two latent sequences `[1, T, C]`: `base·(1 − w) + overlay·w` with `w` per frame.
pub fn mix_frames(base: &Tensor, overlay: &Tensor, weights: &[f32]) -> Result<Tensor> {
    let (b, t, c) = base.dims3()?;
    if weights.len() != t || overlay.dims() != base.dims() {
        return Err(EngineError::TensorShape {
            name: "latents mixed per frame".into(),
            expected: vec![b, weights.len(), c],
            found: overlay.dims().to_vec(),
        });
    }
    let keep: Vec<f32> = weights.iter().map(|w| 1.0 - w).collect();
    let column =
        |v: Vec<f32>| -> Result<Tensor> { Ok(Tensor::from_vec(v, (1, t, 1), base.device())?.to_dtype(base.dtype())?) };
    Ok((base.broadcast_mul(&column(keep)?)? + overlay.broadcast_mul(&column(weights.to_vec())?)?)?)
}

/// The repaint context source: `src·(1 − m) + silence[:T]·m` per frame (the silence latent fills what is
/// repainted; with a 0/1 mask this is the official frame replacement).
pub fn fill_with_silence(src: &Tensor, mask: &[f32], silence: &SilenceLatent) -> Result<Tensor> {
    let (_, t, _) = src.dims3()?;
    let fill = silence.slice(t)?.to_dtype(src.dtype())?.to_device(src.device())?.unsqueeze(0)?;
    mix_frames(src, &fill, mask)
}

/// The DiT context `[1, T, 2C]`: the source latents followed by the per-frame chunk mask repeated over
/// the `C` channels.
pub fn context_latents(src: &Tensor, chunk_mask: &[f32]) -> Result<Tensor> {
    let (b, t, c) = src.dims3()?;
    if chunk_mask.len() != t {
        return Err(EngineError::TensorShape {
            name: "chunk mask".into(),
            expected: vec![t],
            found: vec![chunk_mask.len()],
        });
    }
    let mask = Tensor::from_vec(chunk_mask.to_vec(), (1, t, 1), src.device())?
        .to_dtype(src.dtype())?
        .broadcast_as((b, t, c))?;
    Ok(Tensor::cat(&[src, &mask], D::Minus1)?)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    const GRID: FrameGrid = FrameGrid { sample_rate: 48_000, hop: 1920 };

    #[test]
    fn reference_padding_truncates_samples_and_shifts_ranges() {
        let pad = reference_padding(&[(-0.6, 0.7), (1.9, 2.75)], 105_600, GRID).unwrap();
        assert_eq!((pad.left, pad.right), (28_800, 26_400));
        assert_eq!(pad.ranges, vec![(0.0, 0.7 + 0.6), (1.9 + 0.6, 2.75 + 0.6)]);
        let inside = reference_padding(&[(1.0, 2.5)], 192_000, GRID).unwrap();
        assert_eq!((inside.left, inside.right, inside.ranges.clone()), (0, 0, vec![(1.0, 2.5)]));
    }

    #[test]
    fn reference_mask_sets_strength_in_ranges_and_one_on_padding() {
        let pad = OutpaintPadding { left: 3840, right: 1920, ranges: vec![(0.2, 0.3)] };
        let mask = reference_denoise_mask(12, &pad, 0.5, GRID).unwrap();
        let mut want = vec![0.0; 12];
        want[5..7].fill(0.5);
        want[..2].fill(1.0);
        want[11] = 1.0;
        assert_eq!(mask, want);
    }

    #[test]
    fn empty_or_reversed_ranges_are_rejected() {
        assert!(reference_padding(&[], 48_000, GRID).is_err());
        assert!(reference_padding(&[(2.0, 1.0)], 48_000, GRID).is_err());
        assert!(studio_padding(1.0, Some(1.0), 48_000, GRID).is_err());
        assert!(studio_region_frames((f64::NAN, 1.0), 10, GRID).is_err());
    }

    #[test]
    fn studio_region_of_ten_seconds_three_to_six_is_frames_75_to_150() {
        assert_eq!(studio_region_frames((3.0, 6.0), 250, GRID).unwrap(), (75, 150));
        // Clamped: a region past the end keeps at least one frame.
        assert_eq!(studio_region_frames((20.0, 30.0), 250, GRID).unwrap(), (249, 250));
        // Fractional frames round down: 0.35 s is frame 8.75, 1.1 s is frame 27.5.
        assert_eq!(studio_region_frames((0.35, 1.1), 250, GRID).unwrap(), (8, 27));
    }

    #[test]
    fn studio_padding_outpaints_both_sides_and_defaults_end_to_source_end() {
        let pad = studio_padding(-1.0, Some(12.0), 480_000, GRID).unwrap();
        assert_eq!((pad.left, pad.right, pad.ranges.clone()), (48_000, 96_000, vec![(0.0, 13.0)]));
        let to_end = studio_padding(2.0, None, 480_000, GRID).unwrap();
        assert_eq!((to_end.left, to_end.right, to_end.ranges), (0, 0, vec![(2.0, 10.0)]));
    }

    #[test]
    fn crossfade_ramps_are_linspace_interiors_clipped_at_the_ends() {
        let w = crossfade_weights(40, (15, 20), 10);
        assert_eq!(w[..5], [0.0; 5]);
        for (i, v) in w[5..15].iter().enumerate() {
            assert!((v - (i + 1) as f32 / 11.0).abs() < 1e-6, "{i}: {v}");
        }
        assert_eq!(w[15..20], [1.0; 5]);
        for (i, v) in w[20..30].iter().enumerate() {
            assert!((v - (10 - i) as f32 / 11.0).abs() < 1e-6, "{i}: {v}");
        }
        assert_eq!(w[30..], [0.0; 10]);
        // Near the start only 3 frames remain: the ramp is linspace(0, 1, 5)[1:-1].
        let short = crossfade_weights(10, (3, 8), 10);
        let want = [0.25, 0.5, 0.75, 1., 1., 1., 1., 1., 2. / 3., 1. / 3.];
        assert!(short.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6), "{short:?}");
        assert_eq!(chunk_mask(5, (1, 3)), vec![0., 1., 1., 0., 0.]);
    }

    #[test]
    fn silence_fill_keeps_source_outside_and_replaces_inside() {
        let src = Tensor::ones((1, 4, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        let silence = SilenceLatent::from_frames(Tensor::new(&[[5f32, 6.], [7., 8.]], &Device::Cpu).unwrap()).unwrap();
        let filled: Vec<Vec<f32>> =
            fill_with_silence(&src, &[0., 1., 0.5, 0.], &silence).unwrap().squeeze(0).unwrap().to_vec2().unwrap();
        assert_eq!(filled, vec![vec![1., 1.], vec![7., 8.], vec![3., 3.5], vec![1., 1.]]);
        assert!(fill_with_silence(&src, &[0., 1.], &silence).is_err());
    }

    #[test]
    fn context_is_source_then_mask_over_every_channel() {
        let src = Tensor::new(&[[[1f32, 2.], [3., 4.]]], &Device::Cpu).unwrap();
        let ctx: Vec<Vec<f32>> = context_latents(&src, &[1., 0.]).unwrap().squeeze(0).unwrap().to_vec2().unwrap();
        assert_eq!(ctx, vec![vec![1., 2., 1., 1.], vec![3., 4., 0., 0.]]);
    }
}
