//! Audio buffers as the engine exchanges them, and the source preparation of docs/acestep-model.md §10.0 (stereo, 48
//! kHz).

mod atomic;
mod read;
mod resample;
mod wav;

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

pub use atomic::{check_writable, write_atomically, write_bytes};
pub use read::{read_wav, AudioFile};
pub use resample::resample;
pub use wav::{write_wav, WavFormat};

/// The rate every pipeline runs at (ACE-Step's VAE is 48 kHz).
pub const MODEL_SAMPLE_RATE: u32 = 48_000;

/// Planar audio: `channels[c][i]` is sample `i` of channel `c`; all channels have the same length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Audio {
    /// Samples per second.
    pub sample_rate: u32,
    /// One vector per channel.
    pub channels: Vec<Vec<f32>>,
}

impl Audio {
    /// Wraps planar channels.
    pub fn new(sample_rate: u32, channels: Vec<Vec<f32>>) -> Self {
        Self { sample_rate, channels }
    }

    /// Frames (samples per channel).
    pub fn len(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }

    /// True when there are no frames.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Duration in seconds.
    pub fn duration_s(&self) -> f64 {
        self.len() as f64 / self.sample_rate as f64
    }

    /// Checks the buffer is well formed — a non-zero rate, at least one channel, all channels the same
    /// length — and returns its frame count.
    pub fn validate(&self) -> Result<usize> {
        if self.sample_rate == 0 {
            return Err(EngineError::invalid(
                "audio has a sample rate of 0 Hz; pass the rate the audio was recorded at",
            ));
        }
        let frames = self.len();
        if self.channels.is_empty() {
            return Err(EngineError::invalid("audio has no channels; pass at least one channel of samples"));
        }
        if let Some((c, ch)) = self.channels.iter().enumerate().find(|(_, ch)| ch.len() != frames) {
            return Err(EngineError::invalid(format!(
                "audio channels differ in length (channel 0 has {frames} samples, channel {c} has {}); \
                 pass channels of equal length",
                ch.len()
            )));
        }
        Ok(frames)
    }
}

/// Converts to the model's stereo layout: mono is duplicated, stereo is kept as is. More than two channels
/// (or a malformed buffer) is an [`EngineError::InvalidInput`].
pub fn to_stereo(audio: Audio) -> Result<Audio> {
    audio.validate()?;
    match audio.channels.len() {
        1 => {
            let Audio { sample_rate, mut channels } = audio;
            let mono = channels.swap_remove(0);
            Ok(Audio::new(sample_rate, vec![mono.clone(), mono]))
        }
        2 => Ok(audio),
        n => Err(EngineError::invalid(format!(
            "audio has {n} channels; Retake takes mono or stereo, so downmix to two channels first"
        ))),
    }
}

/// Fails with [`EngineError::NonFinite`] naming the first NaN or infinite sample (channel, frame and time)
/// of `audio`; `what` names the input in the message (e.g. "source audio").
pub fn check_finite(audio: &Audio, what: &str) -> Result<()> {
    for (c, channel) in audio.channels.iter().enumerate() {
        if let Some((i, value)) = channel.iter().enumerate().find(|(_, s)| !s.is_finite()) {
            let seconds = i as f64 / f64::from(audio.sample_rate.max(1));
            return Err(EngineError::NonFinite {
                what: format!("{what} (channel {c}, frame {i} at {seconds:.3} s is {value})"),
            });
        }
    }
    Ok(())
}

/// A fast hash of the sample rate, the channel layout and every sample's bits, stable across runs and
/// platforms (a cache key for source latents: the same capture hashes the same, any changed sample changes it).
///
/// Each 32-bit word goes through an FNV-1a step followed by a rotation; both are bijections of the state,
/// so changing any single word always changes the result. A murmur3 finaliser spreads the bits at the end.
pub fn content_hash(audio: &Audio) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let step = |h: u64, word: u64| ((h ^ word).wrapping_mul(PRIME)).rotate_left(29);
    let mut h = step(step(OFFSET, u64::from(audio.sample_rate)), audio.channels.len() as u64);
    for channel in &audio.channels {
        h = step(h, channel.len() as u64);
        h = channel.iter().fold(h, |h, s| step(h, u64::from(s.to_bits())));
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stereo() -> Audio {
        Audio::new(44_100, vec![vec![0.1, -0.2, 0.3], vec![0.4, 0.5, -0.6]])
    }

    #[test]
    fn to_stereo_duplicates_mono() {
        let out = to_stereo(Audio::new(22_050, vec![vec![0.25, -0.5]])).unwrap();
        assert_eq!(out, Audio::new(22_050, vec![vec![0.25, -0.5], vec![0.25, -0.5]]));
    }

    #[test]
    fn to_stereo_keeps_stereo_unchanged() {
        assert_eq!(to_stereo(stereo()).unwrap(), stereo());
    }

    #[test]
    fn to_stereo_rejects_more_than_two_channels_naming_the_count() {
        let err = to_stereo(Audio::new(48_000, vec![vec![0.0; 4]; 6])).unwrap_err();
        assert!(matches!(&err, EngineError::InvalidInput(m) if m.contains("6 channels")), "{err}");
    }

    #[test]
    fn to_stereo_rejects_no_channels_and_ragged_channels() {
        let none = to_stereo(Audio::new(48_000, vec![])).unwrap_err();
        assert!(matches!(&none, EngineError::InvalidInput(m) if m.contains("no channels")), "{none}");
        let ragged = to_stereo(Audio::new(48_000, vec![vec![0.0; 3], vec![0.0; 2]])).unwrap_err();
        assert!(matches!(&ragged, EngineError::InvalidInput(m) if m.contains("channel 1 has 2")), "{ragged}");
    }

    #[test]
    fn validate_rejects_a_zero_sample_rate() {
        let err = Audio::new(0, vec![vec![0.0]]).validate().unwrap_err();
        assert!(matches!(&err, EngineError::InvalidInput(m) if m.contains("0 Hz")), "{err}");
    }

    #[test]
    fn check_finite_accepts_finite_audio() {
        check_finite(&stereo(), "source audio").unwrap();
    }

    #[test]
    fn check_finite_names_the_first_bad_sample() {
        let mut audio = Audio::new(48_000, vec![vec![0.0; 96_000], vec![0.0; 96_000]]);
        audio.channels[1][48_000] = f32::NAN;
        audio.channels[1][60_000] = f32::INFINITY;
        let err = check_finite(&audio, "source audio").unwrap_err();
        assert!(
            matches!(&err, EngineError::NonFinite { what } if what == "source audio (channel 1, frame 48000 at 1.000 s is NaN)"),
            "{err}"
        );
    }

    #[test]
    fn content_hash_is_stable_for_equal_audio() {
        assert_eq!(content_hash(&stereo()), content_hash(&stereo().clone()));
    }

    #[test]
    fn content_hash_changes_when_one_sample_changes() {
        let mut changed = stereo();
        changed.channels[1][2] = f32::from_bits(changed.channels[1][2].to_bits() ^ 1);
        assert_ne!(content_hash(&stereo()), content_hash(&changed));
    }

    #[test]
    fn content_hash_changes_with_rate_and_layout() {
        let base = content_hash(&stereo());
        assert_ne!(base, content_hash(&Audio::new(48_000, stereo().channels)));
        let swapped = Audio::new(44_100, vec![stereo().channels[1].clone(), stereo().channels[0].clone()]);
        assert_ne!(base, content_hash(&swapped));
        let regrouped = Audio::new(44_100, vec![[stereo().channels[0].clone(), stereo().channels[1].clone()].concat()]);
        assert_ne!(base, content_hash(&regrouped));
    }
}
