//! WAV files in and out of [`Audio`] via `hound` (docs/acestep-model.md §10.0: the CLI's source audio and rendered
//! takes).

use std::path::Path;

use hound::{SampleFormat, WavReader, WavSpec, WavWriter};

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

/// Reads a WAV file of any rate and channel count, integer (8–32 bit) or 32-bit float, into planar f32.
/// Integer samples are scaled by 2^(bits−1), so full scale maps to [−1, 1).
pub fn read_wav(path: &Path) -> Result<Audio> {
    let reader = WavReader::open(path).map_err(|e| wav_error(path, e))?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels);
    if channels == 0 {
        return Err(wav_error(path, hound::Error::FormatError("the header declares 0 channels")));
    }
    let interleaved: Vec<f32> = match spec.sample_format {
        SampleFormat::Float => reader.into_samples::<f32>().collect::<hound::Result<_>>(),
        SampleFormat::Int => {
            let scale = int_full_scale(spec.bits_per_sample).recip();
            reader.into_samples::<i32>().map(|s| s.map(|v| v as f32 * scale)).collect()
        }
    }
    .map_err(|e| wav_error(path, e))?;

    let mut planar = vec![Vec::with_capacity(interleaved.len() / channels); channels];
    for frame in interleaved.chunks_exact(channels) {
        for (channel, &sample) in planar.iter_mut().zip(frame) {
            channel.push(sample);
        }
    }
    Ok(Audio::new(spec.sample_rate, planar))
}

/// Writes `audio` as a WAV file, creating parent folders. Integer formats clamp samples to ±1 and round
/// `x·2^(bits−1)` to the nearest code (full scale +1 becomes the largest positive code), the inverse of
/// [`read_wav`]'s scaling.
pub fn write_wav(path: &Path, audio: &Audio, format: WavFormat) -> Result<()> {
    let frames = audio.validate()?;
    let channels = u16::try_from(audio.channels.len()).map_err(|_| {
        EngineError::invalid(format!("cannot write {} channels to a WAV file (at most 65535)", audio.channels.len()))
    })?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| EngineError::Io { path: parent.to_path_buf(), source })?;
    }
    let spec = format.spec(channels, audio.sample_rate);
    let mut writer = WavWriter::create(path, spec).map_err(|e| wav_error(path, e))?;
    let full_scale = int_full_scale(spec.bits_per_sample);
    let (lowest, highest) = (-full_scale, full_scale - 1.0);
    for i in 0..frames {
        for channel in &audio.channels {
            let sample = channel[i];
            let written = match format {
                WavFormat::Float32 => writer.write_sample(sample),
                WavFormat::Int16 | WavFormat::Int24 => {
                    writer.write_sample((sample.clamp(-1.0, 1.0) * full_scale).round().clamp(lowest, highest) as i32)
                }
            };
            written.map_err(|e| wav_error(path, e))?;
        }
    }
    writer.finalize().map_err(|e| wav_error(path, e))
}

/// 2^(bits−1): the integer code of full scale for `bits`-bit PCM.
fn int_full_scale(bits: u16) -> f32 {
    2f32.powi(i32::from(bits) - 1)
}

fn wav_error(path: &Path, error: hound::Error) -> EngineError {
    match error {
        hound::Error::IoError(source) => EngineError::Io { path: path.to_path_buf(), source },
        other => EngineError::invalid(format!(
            "`{}` is not a WAV file Retake can use: {other}; export it as 16/24-bit PCM or 32-bit float WAV",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn reads_8_and_32_bit_integer_files() {
        let dir = tempfile::tempdir().unwrap();
        for (bits, codes) in [(8u16, [-128i32, 64, 127]), (32, [i32::MIN, 1 << 30, i32::MAX])] {
            let path = dir.path().join(format!("int{bits}.wav"));
            let spec =
                WavSpec { channels: 1, sample_rate: 8_000, bits_per_sample: bits, sample_format: SampleFormat::Int };
            let mut writer = WavWriter::create(&path, spec).unwrap();
            codes.iter().for_each(|&c| writer.write_sample(c).unwrap());
            writer.finalize().unwrap();
            let expected: Vec<f32> = codes.iter().map(|&c| c as f32 / int_full_scale(bits)).collect();
            assert_eq!(read_wav(&path).unwrap(), Audio::new(8_000, vec![expected]));
        }
    }

    #[test]
    fn missing_file_error_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.wav");
        let err = read_wav(&path).unwrap_err();
        assert!(matches!(&err, EngineError::Io { path: p, .. } if *p == path), "{err}");
    }

    #[test]
    fn non_wav_file_is_invalid_input_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.wav");
        std::fs::write(&path, "not a riff file").unwrap();
        let err = read_wav(&path).unwrap_err();
        assert!(matches!(&err, EngineError::InvalidInput(m) if m.contains(&path.display().to_string())), "{err}");
    }

    #[test]
    fn writing_malformed_audio_is_invalid_input() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_wav(&dir.path().join("x.wav"), &Audio::new(48_000, vec![]), WavFormat::Int16).unwrap_err();
        assert!(matches!(err, EngineError::InvalidInput(_)), "{err}");
    }
}
