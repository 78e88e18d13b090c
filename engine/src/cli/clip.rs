//! The source audio on its way into the engine (stereo, 48 kHz) and the engine's result on its way back to
//! the source's rate (docs/acestep-model.md §10.0).
//!
//! At 48 kHz nothing is resampled, so a spliced repaint keeps every sample outside the region and its
//! crossfade bit for bit. At any other rate the engine hears the resampled clip, and a spliced result of the
//! same length comes back as `original + resample(result − resampled clip)`: where the engine kept the
//! clip, the difference is exactly zero, so the output is the original samples bit for bit from about
//! 3 ms (half the resampler's 256-tap window) beyond the region and its crossfade.

use std::path::{Path, PathBuf};

use retake_engine::audio::{resample, to_stereo, Audio, AudioFile, MODEL_SAMPLE_RATE};
use retake_engine::error::{EngineError, Result};
use retake_engine::pipeline::request::MAX_DURATION_S;

/// The lowest source rate taken (telephone audio): resampling a lower one to 48 kHz costs more than it can carry.
const MIN_SOURCE_RATE: u32 = 8_000;

/// A source audio file: its own samples, as stereo, and the 48 kHz version the engine runs on.
pub struct SourceClip {
    /// Where it was read from.
    pub path: PathBuf,
    /// The file's samples at its own rate, mono duplicated to stereo.
    pub original: Audio,
    /// The same at 48 kHz.
    pub for_model: Audio,
}

impl SourceClip {
    /// Reads `path` (any format [`AudioFile`] opens, from 8 kHz, mono or stereo, at most [`MAX_DURATION_S`]) and
    /// prepares the 48 kHz copy. The rate and the length are checked from the header, before any sample is
    /// decoded or resampled.
    pub fn read(path: &Path) -> Result<Self> {
        let file = AudioFile::open(path)?;
        if file.sample_rate() < MIN_SOURCE_RATE {
            return Err(EngineError::invalid(format!(
                "`{}` is sampled at {} Hz; Retake takes audio from {MIN_SOURCE_RATE} Hz up, so export it at 44.1 \
                 or 48 kHz",
                path.display(),
                file.sample_rate()
            )));
        }
        let original = to_stereo(file.decode(MAX_DURATION_S)?)?;
        if original.is_empty() {
            return Err(EngineError::invalid(format!("`{}` holds no samples; pass a file with audio", path.display())));
        }
        let for_model = resample(&original, MODEL_SAMPLE_RATE)?;
        Ok(Self { path: path.to_path_buf(), original, for_model })
    }

    /// Length in seconds.
    pub fn duration_s(&self) -> f64 {
        self.original.duration_s()
    }

    /// The engine's 48 kHz `result` at the clip's rate. A result as long as the engine's input covers the
    /// clip's timeline and gets the clip's exact length; with `keep_original` (a spliced repaint) it is
    /// rebuilt from the original samples and the resampled difference (see the module docs).
    pub fn render(&self, result: &Audio, keep_original: bool) -> Result<Audio> {
        let rate = self.original.sample_rate;
        if rate == MODEL_SAMPLE_RATE {
            return Ok(result.clone());
        }
        if result.len() != self.for_model.len() {
            return resample(result, rate);
        }
        if !keep_original {
            return Ok(fit(resample(result, rate)?, self.original.len()));
        }
        let difference = zip_channels(result, &self.for_model, |r, m| r - m);
        let difference = fit(resample(&difference, rate)?, self.original.len());
        Ok(zip_channels(&self.original, &difference, |o, d| o + d))
    }
}

/// Element-wise `f(a, b)` of two buffers with the same layout, at `a`'s rate.
fn zip_channels(a: &Audio, b: &Audio, f: impl Fn(f32, f32) -> f32) -> Audio {
    let channels =
        a.channels.iter().zip(&b.channels).map(|(x, y)| x.iter().zip(y).map(|(&x, &y)| f(x, y)).collect()).collect();
    Audio::new(a.sample_rate, channels)
}

/// `audio` cut or zero-padded to `frames` (a round trip through 48 kHz can differ by a frame).
fn fit(mut audio: Audio, frames: usize) -> Audio {
    audio.channels.iter_mut().for_each(|c| c.resize(frames, 0.0));
    audio
}

#[cfg(test)]
mod tests {
    use retake_engine::audio::{write_wav, WavFormat};

    use super::*;

    /// A 440 Hz sine, well inside the band both rates carry.
    fn tone(rate: u32, frames: usize) -> Audio {
        let hz = 440.0 / rate as f64;
        Audio::new(
            rate,
            vec![(0..frames).map(|i| (0.4 * (std::f64::consts::TAU * hz * i as f64).sin()) as f32).collect()],
        )
    }

    fn clip(audio: &Audio) -> SourceClip {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.wav");
        write_wav(&path, audio, WavFormat::Float32).unwrap();
        SourceClip::read(&path).unwrap()
    }

    #[test]
    fn mono_input_becomes_stereo_and_reaches_the_model_at_48k() {
        let source = clip(&tone(44_100, 44_100));
        assert_eq!(source.original.channels, vec![tone(44_100, 44_100).channels[0].clone(); 2]);
        assert_eq!((source.for_model.sample_rate, source.for_model.len()), (48_000, 48_000));
        assert_eq!(source.duration_s(), 1.0);
    }

    #[test]
    fn at_48k_the_result_is_returned_unchanged() {
        let source = clip(&tone(48_000, 4_800));
        let result = Audio::new(48_000, vec![vec![0.25; 4_800]; 2]);
        assert_eq!(source.render(&result, true).unwrap(), result);
    }

    #[test]
    fn a_kept_result_reproduces_the_original_samples_exactly_away_from_changes() {
        let source = clip(&tone(44_100, 44_100));
        let mut result = source.for_model.clone();
        for channel in &mut result.channels {
            channel[20_000..22_000].fill(0.5);
        }
        let out = source.render(&result, true).unwrap();
        assert_eq!((out.sample_rate, out.len()), (44_100, 44_100));
        // Changed samples 20000..22000 at 48k are 18375..20212 at 44.1k; 128 taps of margin on each side.
        for (o, s) in out.channels.iter().zip(&source.original.channels) {
            assert!(o[..18_375 - 128].iter().zip(s).all(|(a, b)| a.to_bits() == b.to_bits()));
            assert!(o[20_212 + 128..].iter().zip(&s[20_212 + 128..]).all(|(a, b)| a.to_bits() == b.to_bits()));
            assert!((o[19_000] - 0.5).abs() < 1e-3, "{}", o[19_000]);
        }
    }

    #[test]
    fn other_results_are_resampled_and_fitted_to_the_clip_when_they_cover_it() {
        let source = clip(&tone(22_050, 22_051));
        let result = Audio::new(48_000, vec![vec![0.25; source.for_model.len()]; 2]);
        let out = source.render(&result, false).unwrap();
        assert_eq!((out.sample_rate, out.len()), (22_050, 22_051));
        let longer = Audio::new(48_000, vec![vec![0.25; 96_000]; 2]);
        assert_eq!(source.render(&longer, true).unwrap().len(), 44_100);
    }

    #[test]
    fn an_empty_wav_is_rejected_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.wav");
        write_wav(&path, &Audio::new(48_000, vec![vec![]]), WavFormat::Int16).unwrap();
        let err = SourceClip::read(&path).err().unwrap();
        assert!(err.to_string().contains("empty.wav` holds no samples"), "{err}");
    }

    #[test]
    fn a_rate_below_8_khz_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slow.wav");
        write_wav(&path, &tone(4_000, 400), WavFormat::Int16).unwrap();
        let err = SourceClip::read(&path).err().unwrap();
        assert!(
            err.to_string().contains("slow.wav` is sampled at 4000 Hz; Retake takes audio from 8000 Hz up"),
            "{err}"
        );
    }

    #[test]
    fn a_clip_longer_than_600_s_is_refused_by_its_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long.wav");
        write_wav(&path, &Audio::new(8_000, vec![vec![0.0; 8_000 * 601]]), WavFormat::Int16).unwrap();
        let err = SourceClip::read(&path).err().unwrap();
        assert!(err.to_string().contains("long.wav` is 601.0 s long; Retake takes at most 600 s per job"), "{err}");
    }
}
