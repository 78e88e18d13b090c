//! Timbre references: audio whose timbre a job takes, prepared as DiffSynth 2.1.12 does
//! (`diffsynth/pipelines/ace_step.py`, `AceStepUnit_ReferenceAudioEmbedder.process_reference_audio`): the audio is
//! tiled to at least the timbre window (`timbre_fix_frame` latent frames, 30 s), and three crops of a third of the
//! window — one from each third of the tiled audio — are joined into the window the VAE encodes and the timbre
//! encoder hears (docs/acestep-model.md §5). DiffSynth draws the crop offsets with Python's `random`; here they come
//! from the job's seed, so a take repeats with its seed.

use crate::audio::{check_finite, to_stereo, Audio, MODEL_SAMPLE_RATE};
use crate::error::{EngineError, Result};
use crate::model::weights::splitmix64;
use crate::pipeline::request::MAX_DURATION_S;

/// The shortest timbre reference taken, in seconds: tiled up to the 30 s window, anything shorter is one sound
/// repeated dozens of times.
pub const MIN_REFERENCE_S: f64 = 1.0;
/// A reference whose peak stays below this (−80 dBFS) is silence, which carries no timbre.
const SILENT_PEAK: f32 = 1e-4;

/// Timbre reference number `index` (from 0) as 48 kHz stereo, checked: a well-formed buffer at the model's rate,
/// finite, from [`MIN_REFERENCE_S`] to the 600 s job limit long, and not silent.
pub fn checked_reference(index: usize, reference: &Audio) -> Result<Audio> {
    let what = format!("timbre reference {}", index + 1);
    if reference.sample_rate != MODEL_SAMPLE_RATE {
        return Err(EngineError::invalid(format!(
            "{what} is {} Hz but the pipeline runs at {MODEL_SAMPLE_RATE} Hz; resample it first \
             (retake_engine::audio::resample)",
            reference.sample_rate
        )));
    }
    let reference = to_stereo(reference.clone())?;
    check_finite(&reference, &what)?;
    let seconds = reference.duration_s();
    if seconds < MIN_REFERENCE_S {
        return Err(EngineError::invalid(format!(
            "{what} is {seconds:.2} s long; a timbre reference needs at least {MIN_REFERENCE_S} s of sound (the model \
             hears 30 s of it, tiled), so give a longer recording"
        )));
    }
    if seconds > MAX_DURATION_S {
        return Err(EngineError::invalid(format!(
            "{what} is {seconds:.1} s long; Retake takes references of at most {MAX_DURATION_S} s (the model hears \
             30 s of it), so trim it"
        )));
    }
    let peak = reference.channels.iter().flatten().fold(0f32, |peak, s| peak.max(s.abs()));
    if peak < SILENT_PEAK {
        return Err(EngineError::invalid(format!(
            "{what} is silent (its peak is below −80 dBFS), so it carries no timbre; give a recording of the sound \
             to match, or leave the reference out for the model's default timbre"
        )));
    }
    Ok(reference)
}

/// The `window` samples the VAE encodes for `reference` (non-empty, as [`checked_reference`] ensures): the
/// reference tiled to at least `window` samples, split into thirds, a crop of `window / 3` samples at a
/// `seed`-drawn offset inside each third, the three joined.
pub(crate) fn timbre_window(reference: &Audio, window: usize, seed: u64) -> Audio {
    let len = reference.len();
    let total = if len < window { len * window.div_ceil(len) } else { len };
    let (third, crop) = (total / 3, window / 3);
    let mut state = seed;
    let mut offset = |room: usize| (splitmix64(&mut state) % (room as u64 + 1)) as usize;
    let starts = [offset(third - crop), third + offset(third - crop), 2 * third + offset(total - 2 * third - crop)];
    let channels = reference
        .channels
        .iter()
        .map(|channel| starts.iter().flat_map(|&start| (start..start + crop).map(|i| channel[i % len])).collect())
        .collect();
    Audio::new(reference.sample_rate, channels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(seconds: f64) -> Audio {
        let n = (seconds * MODEL_SAMPLE_RATE as f64) as usize;
        let ch: Vec<f32> = (0..n).map(|i| i as f32 / n as f32 + 0.01).collect();
        Audio::new(MODEL_SAMPLE_RATE, vec![ch.clone(), ch])
    }

    #[test]
    fn a_short_reference_is_tiled_and_each_crop_comes_from_its_third() {
        let reference = ramp(4.0);
        let len = reference.len();
        let window = 30 * MODEL_SAMPLE_RATE as usize;
        let clip = timbre_window(&reference, window, 7);
        assert_eq!((clip.len(), clip.channels.len()), (window, 2));
        // Tiled 8 times to 32 s; thirds of 512000 samples, crops of 480000 at offsets 0..=32000 into each third.
        let third = 8 * len / 3;
        for k in 0..3 {
            let first = clip.channels[0][k * window / 3];
            let start = (0..=third - window / 3)
                .map(|o| k * third + o)
                .find(|&p| reference.channels[0][p % len] == first)
                .expect("the crop starts inside its third");
            for (j, &s) in clip.channels[0][k * window / 3..(k + 1) * window / 3].iter().enumerate() {
                assert_eq!(s, reference.channels[0][(start + j) % len], "crop {k}, sample {j}");
            }
        }
        assert_eq!(timbre_window(&reference, window, 7).channels, clip.channels, "the same seed, the same window");
        assert_ne!(timbre_window(&reference, window, 8).channels, clip.channels, "another seed, other offsets");
    }

    #[test]
    fn a_long_reference_is_cropped_without_tiling() {
        let reference = ramp(40.0);
        let window = 30 * MODEL_SAMPLE_RATE as usize;
        let clip = timbre_window(&reference, window, 3);
        // A rising ramp without wrap-around: each crop is contiguous and the three come in order.
        let samples = &clip.channels[1];
        assert!(samples.windows(2).all(|w| w[1] > w[0]), "no crop wraps and the thirds are in order");
    }

    #[test]
    fn short_silent_or_unusable_references_are_refused_naming_which() {
        let message = |audio: &Audio| checked_reference(1, audio).unwrap_err().to_string();
        assert!(
            message(&ramp(0.5)).contains("timbre reference 2 is 0.50 s long; a timbre reference needs at least 1 s")
        );
        let silent = Audio::new(MODEL_SAMPLE_RATE, vec![vec![1e-5; 96_000]]);
        assert!(message(&silent).contains("timbre reference 2 is silent"), "{}", message(&silent));
        let rate = Audio::new(44_100, vec![vec![0.5; 88_200]]);
        assert!(message(&rate).contains("timbre reference 2 is 44100 Hz"));
        let mut nan = ramp(2.0);
        nan.channels[0][5] = f32::NAN;
        assert!(message(&nan).contains("timbre reference 2 (channel 0, frame 5 at 0.000 s is NaN) contains NaN"));
        let mono = Audio::new(MODEL_SAMPLE_RATE, vec![vec![0.5; 96_000]]);
        assert_eq!(checked_reference(0, &mono).unwrap().channels.len(), 2, "mono becomes stereo");
    }
}
