//! Decoded audio → the result: output level (DiffSynth's −1 dBFS normalisation or the official anti-clip)
//! and, for studio repaints, splicing the original samples back outside the region.

use candle_core::{DType, Tensor};

use super::request::Mode;
use crate::audio::Audio;
use crate::error::{EngineError, Result};

/// How the decoded audio's level is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// DiffSynth: scale the peak to −1 dBFS (unless the audio is silent).
    Reference,
    /// Official: divide by the peak only when it exceeds full scale.
    AntiClip,
}

impl Level {
    /// The level rule of a pipeline mode.
    pub fn for_mode(mode: Mode) -> Self {
        match mode {
            Mode::Reference => Self::Reference,
            Mode::Studio => Self::AntiClip,
        }
    }
}

/// `[1, C, N]` decoder output → planar 48 kHz audio at the given level.
pub fn to_audio(decoded: &Tensor, level: Level) -> Result<Audio> {
    let wave = decoded.squeeze(0)?.to_dtype(DType::F32)?;
    let peak = wave.abs()?.max_all()?.to_scalar::<f32>()?;
    if !peak.is_finite() {
        return Err(EngineError::NonFinite { what: "the decoded audio".into() });
    }
    let scale = match level {
        Level::Reference if peak >= 1e-6 => Some((10f64.powf(-1.0 / 20.0) / peak as f64) as f32),
        Level::AntiClip if peak > 1.0 => Some(1.0 / peak),
        _ => None,
    };
    let wave = match scale {
        Some(s) => (wave * s as f64)?,
        None => wave,
    };
    Ok(Audio::new(crate::audio::MODEL_SAMPLE_RATE, wave.to_vec2::<f32>()?))
}

/// The generated audio inside `regions` (sample ranges), the original samples bit for bit outside the
/// regions and their crossfades, and an equal-power crossfade of `crossfade` samples just outside each edge.
pub fn splice(original: &Audio, generated: &Audio, regions: &[(usize, usize)], crossfade: usize) -> Result<Audio> {
    if original.len() != generated.len() || original.channels.len() != generated.channels.len() {
        return Err(EngineError::invalid(format!(
            "cannot splice {} frames × {} channels into {} frames × {} channels",
            generated.len(),
            generated.channels.len(),
            original.len(),
            original.channels.len()
        )));
    }
    let gains = generated_gain(original.len(), regions, crossfade);
    let channels = original
        .channels
        .iter()
        .zip(&generated.channels)
        .map(|(dry, wet)| {
            dry.iter()
                .zip(wet)
                .zip(&gains)
                .map(|((&d, &w), &g)| match g {
                    g if g <= 0.0 => d,
                    g if g >= 1.0 => w,
                    g => {
                        let angle = g * std::f32::consts::FRAC_PI_2;
                        d * angle.cos() + w * angle.sin()
                    }
                })
                .collect()
        })
        .collect();
    Ok(Audio::new(original.sample_rate, channels))
}

/// Per-sample share of the generated audio: 1 inside a region, a linear position ramp (mapped to
/// equal-power gains by [`splice`]) over `crossfade` samples on each side, 0 elsewhere.
fn generated_gain(len: usize, regions: &[(usize, usize)], crossfade: usize) -> Vec<f32> {
    let mut gain = vec![0f32; len];
    for &(start, end) in regions {
        let (start, end) = (start.min(len), end.min(len));
        gain[start..end].fill(1.0);
        for i in 0..crossfade {
            let share = (crossfade - i) as f32 / (crossfade + 1) as f32;
            if let Some(before) = start.checked_sub(i + 1) {
                gain[before] = gain[before].max(share);
            }
            if end + i < len {
                gain[end + i] = gain[end + i].max(share);
            }
        }
    }
    gain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_keeps_outside_bit_exact_and_is_equal_power_in_the_fade() {
        let original = Audio::new(48_000, vec![vec![0.25; 100]; 2]);
        let generated = Audio::new(48_000, vec![vec![-0.5; 100]; 2]);
        let out = splice(&original, &generated, &[(40, 60)], 10).unwrap();
        for c in &out.channels {
            assert!(c[..30].iter().chain(&c[70..]).all(|&s| s.to_bits() == 0.25f32.to_bits()));
            assert!(c[40..60].iter().all(|&s| s == -0.5));
        }
        let gains = generated_gain(100, &[(40, 60)], 10);
        for (i, &g) in gains.iter().enumerate().take(40).skip(30) {
            let angle = g * std::f32::consts::FRAC_PI_2;
            assert!((angle.cos().powi(2) + angle.sin().powi(2) - 1.0).abs() < 1e-6);
            assert!(g > 0.0 && g < 1.0, "sample {i}");
        }
        assert!(gains[39] > gains[30]);
    }

    #[test]
    fn reference_level_normalises_to_minus_one_dbfs() {
        let decoded = Tensor::from_vec(vec![0.5f32, -2.0, 1.0, 0.1], (1, 2, 2), &candle_core::Device::Cpu).unwrap();
        let audio = to_audio(&decoded, Level::Reference).unwrap();
        let peak = audio.channels.iter().flatten().fold(0f32, |m, s| m.max(s.abs()));
        assert!((peak - 10f32.powf(-0.05)).abs() < 1e-6);
        let clipped = to_audio(&decoded, Level::AntiClip).unwrap();
        assert_eq!(clipped.channels[0][1], -1.0);
        let quiet = Tensor::from_vec(vec![0.5f32, -0.2, 0.1, 0.1], (1, 2, 2), &candle_core::Device::Cpu).unwrap();
        assert_eq!(to_audio(&quiet, Level::AntiClip).unwrap().channels[0], vec![0.5, -0.2]);
    }
}
