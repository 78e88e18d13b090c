//! The result files `retake serve` writes: the `audio_format` values of the official server that need no
//! lossy codec — `wav` (16-bit PCM), `wav32` (32-bit float) and `flac` (16-bit) — as the official
//! `acestep/audio_utils.py::AudioSaver.save_audio` writes them. `mp3`, `opus` and `aac` are refused with a message
//! naming these three. An absent `audio_format` (the official default is `mp3`) gives `wav`.

use std::path::Path;

use flacenc::component::BitRepr;
use flacenc::error::Verify;

use crate::audio::{write_bytes, write_wav, Audio, WavFormat};
use crate::error::{EngineError, Result};

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `wav`: 16-bit PCM WAV (the official server's soundfile default).
    Wav16,
    /// `wav32`: 32-bit float WAV.
    Wav32,
    /// `flac`: 16-bit FLAC.
    Flac,
}

/// What `audio_format` names `retake serve` writes.
pub const SUPPORTED: &str = "wav (16-bit), wav32 (32-bit float) or flac";

impl Format {
    /// The format an `audio_format` value names; `None` (the field absent or empty) is `wav`.
    pub fn parse(name: Option<&str>) -> std::result::Result<Self, String> {
        let name = name.map(|n| n.trim().to_ascii_lowercase()).filter(|n| !n.is_empty());
        match name.as_deref() {
            None | Some("wav") => Ok(Self::Wav16),
            Some("wav32") => Ok(Self::Wav32),
            Some("flac") => Ok(Self::Flac),
            Some(lossy @ ("mp3" | "opus" | "aac")) => Err(format!(
                "audio_format `{lossy}` is not available from retake serve (it has no {lossy} encoder); ask for \
                 {SUPPORTED}"
            )),
            Some(other) => Err(format!("audio_format `{other}` is not an output format; ask for {SUPPORTED}")),
        }
    }

    /// The file extension (`wav32` is a `.wav` file, as the official server names it).
    pub fn extension(self) -> &'static str {
        match self {
            Self::Wav16 | Self::Wav32 => "wav",
            Self::Flac => "flac",
        }
    }

    /// Writes `audio` to `path` in this format, whole or not at all.
    pub fn write(self, path: &Path, audio: &Audio) -> Result<()> {
        match self {
            Self::Wav16 => write_wav(path, audio, WavFormat::Int16),
            Self::Wav32 => write_wav(path, audio, WavFormat::Float32),
            Self::Flac => write_bytes(path, &flac_bytes(audio)?),
        }
    }
}

/// `audio` as a 16-bit FLAC stream, its samples quantised as [`write_wav`] quantises 16-bit PCM.
fn flac_bytes(audio: &Audio) -> Result<Vec<u8>> {
    let frames = audio.validate()?;
    let channels = audio.channels.len();
    let mut samples = Vec::with_capacity(frames * channels);
    for i in 0..frames {
        for channel in &audio.channels {
            samples.push((channel[i].clamp(-1.0, 1.0) * 32768.0).round().clamp(-32768.0, 32767.0) as i32);
        }
    }
    let failed = |what: String| EngineError::invalid(format!("cannot encode the result as FLAC: {what}"));
    let config = flacenc::config::Encoder::default().into_verified().map_err(|e| failed(format!("{e:?}")))?;
    let source = flacenc::source::MemSource::from_samples(&samples, channels, 16, audio.sample_rate as usize);
    let mut stream = flacenc::encode_with_fixed_block_size(&config, source, config.block_size)
        .map_err(|e| failed(format!("{e:?}")))?;
    // A fixed-blocksize stream declares min = max block size, as the reference encoder does (a shorter last block
    // is allowed); flacenc lowers the minimum to the last block's, which readers such as symphonia take for a
    // variable-blocksize stream and refuse.
    stream
        .stream_info_mut()
        .set_block_sizes(config.block_size, config.block_size)
        .map_err(|e| failed(format!("{e:?}")))?;
    let mut sink = flacenc::bitsink::ByteSink::new();
    stream.write(&mut sink).map_err(|e| failed(format!("{e:?}")))?;
    Ok(sink.as_slice().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::AudioFile;

    fn tone() -> Audio {
        let n = 48_000;
        let left = (0..n).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
        let right = (0..n).map(|i| (i as f32 * 0.03).cos() * 0.25).collect();
        Audio::new(48_000, vec![left, right])
    }

    #[test]
    fn absent_and_named_formats_parse_and_lossy_ones_are_refused_naming_the_supported() {
        assert_eq!(Format::parse(None), Ok(Format::Wav16));
        assert_eq!(Format::parse(Some(" ")), Ok(Format::Wav16));
        assert_eq!(Format::parse(Some("WAV32")), Ok(Format::Wav32));
        assert_eq!(Format::parse(Some("flac")), Ok(Format::Flac));
        for lossy in ["mp3", "opus", "aac"] {
            let err = Format::parse(Some(lossy)).unwrap_err();
            assert!(err.contains(&format!("audio_format `{lossy}` is not available")), "{err}");
            assert!(err.contains("wav (16-bit), wav32 (32-bit float) or flac"), "{err}");
        }
        assert!(Format::parse(Some("ogg")).unwrap_err().contains("`ogg` is not an output format"));
    }

    #[test]
    fn every_format_reads_back_as_48_khz_stereo_within_its_resolution() {
        let dir = tempfile::tempdir().unwrap();
        let audio = tone();
        for (format, tolerance) in [(Format::Wav16, 1.0 / 32768.0), (Format::Wav32, 0.0), (Format::Flac, 1.0 / 32768.0)]
        {
            let path = dir.path().join(format!("out-{format:?}.{}", format.extension()));
            format.write(&path, &audio).unwrap();
            let file = AudioFile::open(&path).unwrap();
            assert_eq!((file.sample_rate(), file.channels()), (48_000, 2), "{format:?}");
            let back = file.decode(600.0).unwrap();
            assert_eq!(back.len(), audio.len(), "{format:?}");
            for (a, b) in audio.channels.iter().zip(&back.channels) {
                let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
                assert!(worst <= tolerance, "{format:?}: {worst}");
            }
        }
    }
}
