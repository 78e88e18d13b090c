//! Rendered audio out as WAV files via `hound` (docs/acestep-model.md §10.0: the CLI's results and the plugin's
//! takes), written whole or not at all ([`write_atomically`]). Reading is [`super::read`]'s.

use std::path::Path;

use hound::{SampleFormat, WavSpec, WavWriter};

use super::atomic::write_atomically;
use super::Audio;
use crate::error::{EngineError, Result};

/// Sample encoding of a written WAV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WavFormat {
    /// 16-bit signed integer PCM.
    Int16,
    /// 24-bit signed integer PCM.
    Int24,
    /// 32-bit IEEE float.
    Float32,
}

impl WavFormat {
    fn spec(self, channels: u16, sample_rate: u32) -> WavSpec {
        let (bits_per_sample, sample_format) = match self {
            Self::Int16 => (16, SampleFormat::Int),
            Self::Int24 => (24, SampleFormat::Int),
            Self::Float32 => (32, SampleFormat::Float),
        };
        WavSpec { channels, sample_rate, bits_per_sample, sample_format }
    }
}

/// Writes `audio` as a WAV file, creating parent folders, atomically: a failed write (a full disk, a read-only
/// folder) is an [`EngineError::Write`] and leaves an existing file at `path` as it was. Integer formats clamp
/// samples to ±1 and round `x·2^(bits−1)` to the nearest code (full scale +1 becomes the largest positive code),
/// the inverse of [`super::read_wav`]'s scaling.
pub fn write_wav(path: &Path, audio: &Audio, format: WavFormat) -> Result<()> {
    let frames = audio.validate()?;
    let channels = u16::try_from(audio.channels.len()).map_err(|_| {
        EngineError::invalid(format!("cannot write {} channels to a WAV file (at most 65535)", audio.channels.len()))
    })?;
    let spec = format.spec(channels, audio.sample_rate);
    let failed = |error| write_error(path, error);
    write_atomically(path, |file| {
        let mut writer = WavWriter::new(file, spec).map_err(failed)?;
        let full_scale = int_full_scale(spec.bits_per_sample);
        let (lowest, highest) = (-full_scale, full_scale - 1.0);
        for i in 0..frames {
            for channel in &audio.channels {
                let sample = channel[i];
                let written = match format {
                    WavFormat::Float32 => writer.write_sample(sample),
                    WavFormat::Int16 | WavFormat::Int24 => writer
                        .write_sample((sample.clamp(-1.0, 1.0) * full_scale).round().clamp(lowest, highest) as i32),
                };
                written.map_err(failed)?;
            }
        }
        writer.finalize().map_err(failed)
    })
}

/// 2^(bits−1): the integer code of full scale for `bits`-bit PCM.
fn int_full_scale(bits: u16) -> f32 {
    2f32.powi(i32::from(bits) - 1)
}

fn write_error(path: &Path, error: hound::Error) -> EngineError {
    match error {
        hound::Error::IoError(source) => EngineError::Write { path: path.to_path_buf(), source },
        other => EngineError::invalid(format!("cannot write `{}` as WAV: {other}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::read_wav;

    fn ramp(channels: usize, frames: usize) -> Audio {
        let channel = |c: usize| (0..frames).map(|i| ((i * 7 + c * 13) % 201) as f32 / 100.0 - 1.0).collect();
        Audio::new(44_100, (0..channels).map(channel).collect())
    }

    fn round_trip(audio: &Audio, format: WavFormat) -> Audio {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/folder/take.wav");
        write_wav(&path, audio, format).unwrap();
        read_wav(&path).unwrap()
    }

    fn max_error(a: &Audio, b: &Audio) -> f32 {
        a.channels.iter().flatten().zip(b.channels.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn float32_round_trip_is_exact_for_any_channel_count() {
        for channels in 1..=3 {
            let audio = ramp(channels, 1_000);
            assert_eq!(round_trip(&audio, WavFormat::Float32), audio);
        }
    }

    #[test]
    fn int_round_trips_are_within_half_a_step() {
        let audio = Audio::new(
            96_000,
            ramp(2, 1_000).channels.into_iter().map(|c| c.iter().map(|s| s * 0.99).collect()).collect(),
        );
        for (format, bits) in [(WavFormat::Int16, 16), (WavFormat::Int24, 24)] {
            let back = round_trip(&audio, format);
            assert_eq!((back.sample_rate, back.channels.len(), back.len()), (96_000, 2, 1_000));
            let step = int_full_scale(bits).recip();
            assert!(max_error(&audio, &back) <= 0.5 * step * (1.0 + 1e-3), "{format:?}");
        }
    }

    #[test]
    fn int_formats_clamp_out_of_range_samples() {
        let loud = Audio::new(48_000, vec![vec![1.5, -2.0, 1.0, -1.0]]);
        assert_eq!(
            round_trip(&loud, WavFormat::Int16).channels[0],
            vec![32_767.0 / 32_768.0, -1.0, 32_767.0 / 32_768.0, -1.0]
        );
    }

    #[test]
    fn writing_malformed_audio_is_invalid_input() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_wav(&dir.path().join("x.wav"), &Audio::new(48_000, vec![]), WavFormat::Int16).unwrap_err();
        assert!(matches!(err, EngineError::InvalidInput(_)), "{err}");
    }

    #[test]
    fn a_failed_write_is_reported_as_a_write_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_folder = dir.path().join("file");
        std::fs::write(&not_a_folder, "").unwrap();
        let path = not_a_folder.join("take.wav");
        let err = write_wav(&path, &ramp(2, 10), WavFormat::Int24).unwrap_err();
        assert!(matches!(&err, EngineError::Write { path: p, .. } if *p == path), "{err}");
        assert!(err.to_string().starts_with(&format!("cannot write `{}`", path.display())), "{err}");
    }
}
