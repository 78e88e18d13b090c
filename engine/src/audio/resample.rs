//! Sample-rate conversion with rubato's windowed-sinc resampler (docs/acestep-model.md §10.0: sources are brought to 48
//! kHz).

use rubato::audioadapter_buffers::direct::SequentialSliceOfVecs;
use rubato::{Async, FixedAsync, Resampler, SincInterpolationParameters, WindowFunction};

use super::Audio;
use crate::error::{EngineError, Result};

/// Taps of the windowed sinc (a multiple of 8, as rubato requires).
const SINC_TAPS: usize = 256;
/// Sub-sample positions of the sinc table (rubato reads 1/`OVERSAMPLING` of an input sample ahead).
const OVERSAMPLING: usize = 256;
/// Input frames rubato processes per internal call; any size works for a whole clip, this one keeps the
/// working set in cache.
const CHUNK_FRAMES: usize = 1024;

/// Resamples `audio` to `to_rate` with a 256-tap Blackman-Harris² windowed sinc and cubic interpolation.
///
/// The whole clip is processed at once and its tail flushed. Output frame `m` is the band-limited input at
/// position `m·from/to` (to within 1/256 of an input sample), so events stay where they were, and the output
/// has exactly `round(len·to/from)` frames. Matching rates return a clone.
pub fn resample(audio: &Audio, to_rate: u32) -> Result<Audio> {
    let frames = audio.validate()?;
    if to_rate == 0 {
        return Err(EngineError::invalid("cannot resample to 0 Hz; pass a positive target sample rate"));
    }
    if audio.sample_rate == to_rate {
        return Ok(audio.clone());
    }
    let channels = audio.channels.len();
    let out_frames = output_frames(frames, audio.sample_rate, to_rate);
    if frames == 0 {
        return Ok(Audio::new(to_rate, vec![Vec::new(); channels]));
    }
    let failed = |e: &dyn std::fmt::Display| {
        EngineError::invalid(format!("cannot resample {} Hz to {to_rate} Hz: {e}", audio.sample_rate))
    };
    let ratio = f64::from(to_rate) / f64::from(audio.sample_rate);
    let parameters =
        SincInterpolationParameters::new(SINC_TAPS, WindowFunction::BlackmanHarris2).oversampling_factor(OVERSAMPLING);
    let mut resampler = Async::<f32>::new_sinc(ratio, 1.0, &parameters, CHUNK_FRAMES, channels, FixedAsync::Input)
        .map_err(|e| failed(&e))?;
    let (lead, skip) = alignment(audio.sample_rate, to_rate, resampler.output_delay());
    // `lead` zeros in front shift the input onto rubato's output grid; SINC_TAPS zeros behind flush the tail
    // with room to spare for the `skip` frames dropped in front.
    let padded: Vec<Vec<f32>> =
        audio.channels.iter().map(|c| [&vec![0.0; lead][..], c, &[0.0; SINC_TAPS]].concat()).collect();
    let padded_frames = lead + frames + SINC_TAPS;
    let input = SequentialSliceOfVecs::new(&padded, channels, padded_frames).map_err(|e| failed(&e))?;
    let interleaved = resampler.process_all(&input, padded_frames, None).map_err(|e| failed(&e))?.take_data();

    let mut planar = vec![Vec::with_capacity(out_frames); channels];
    for frame in interleaved.chunks_exact(channels).skip(skip).take(out_frames) {
        for (channel, &sample) in planar.iter_mut().zip(frame) {
            channel.push(sample);
        }
    }
    Ok(Audio::new(to_rate, planar))
}

/// `round(frames·to/from)`, computed exactly in integers.
fn output_frames(frames: usize, from: u32, to: u32) -> usize {
    let (frames, from, to) = (frames as u128, u128::from(from), u128::from(to));
    ((frames * to + from / 2) / from) as usize
}

/// Zeros to put in front of the input (`lead`) and output frames to drop after rubato's own trim of
/// `trimmed` frames (`skip`), so that output frame `m` lands on input position `m·from/to`.
///
/// rubato's raw output frame `k` interpolates input position `(k+1)·from/to − SINC_TAPS/2` (plus the table's
/// 1/OVERSAMPLING). After `lead` zeros and `d = trimmed + skip` dropped frames, frame `m` sits at
/// `(m + d + 1)·from/to − SINC_TAPS/2 − lead`, which is `m·from/to` exactly when
/// `(d + 1)·from = (SINC_TAPS/2 + lead)·to`: with `g = gcd(from, to)`, `d + 1 = j·to/g` and
/// `SINC_TAPS/2 + lead = j·from/g` for the smallest `j` making both `lead` and `skip` non-negative.
/// `lead` is below `SINC_TAPS/2 + from/g` frames (at most a second of silence for unrelated rates).
fn alignment(from: u32, to: u32, trimmed: usize) -> (usize, usize) {
    let g = gcd(from, to);
    let (from_step, to_step) = ((from / g) as usize, (to / g) as usize);
    let half = SINC_TAPS / 2;
    let j = half.div_ceil(from_step).max((trimmed + 1).div_ceil(to_step)).max(1);
    (j * from_step - half, j * to_step - 1 - trimmed)
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use std::f64::consts::TAU;

    use super::*;

    fn sine(rate: u32, hz: f64, frames: usize) -> Vec<f32> {
        (0..frames).map(|i| (TAU * hz * i as f64 / f64::from(rate)).sin() as f32).collect()
    }

    fn resampled_len(from: u32, to: u32, frames: usize) -> usize {
        resample(&Audio::new(from, vec![vec![0.0; frames]; 2]), to).unwrap().len()
    }

    #[test]
    fn output_length_is_the_rounded_rate_ratio() {
        assert_eq!(resampled_len(44_100, 48_000, 44_101), 48_001); // 48001.09
        assert_eq!(resampled_len(44_100, 48_000, 4_410), 4_800);
        assert_eq!(resampled_len(48_000, 96_000, 12_345), 24_690);
        assert_eq!(resampled_len(96_000, 44_100, 1_001), 460); // 459.84
        assert_eq!(resampled_len(96_000, 44_100, 96_000), 44_100);
    }

    #[test]
    fn every_channel_gets_the_same_length() {
        let out = resample(&Audio::new(44_100, vec![vec![0.5; 3_000]; 3]), 48_000).unwrap();
        assert_eq!(out.channels.iter().map(Vec::len).collect::<Vec<_>>(), vec![3_265; 3]);
        assert_eq!(out.sample_rate, 48_000);
    }

    #[test]
    fn matching_rates_return_the_input_unchanged() {
        let audio = Audio::new(48_000, vec![sine(48_000, 440.0, 1_000)]);
        assert_eq!(resample(&audio, 48_000).unwrap(), audio);
    }

    #[test]
    fn empty_audio_stays_empty_at_the_new_rate() {
        let out = resample(&Audio::new(44_100, vec![vec![], vec![]]), 48_000).unwrap();
        assert_eq!(out, Audio::new(48_000, vec![vec![], vec![]]));
    }

    #[test]
    fn zero_target_rate_is_invalid_input() {
        let err = resample(&Audio::new(44_100, vec![vec![0.0; 10]]), 0).unwrap_err();
        assert!(matches!(err, EngineError::InvalidInput(_)), "{err}");
    }

    /// A 1 kHz sine comes out as the ideal 1 kHz sine at the new rate (same frequency, amplitude and phase)
    /// everywhere away from the clip edges.
    #[test]
    fn sine_keeps_its_frequency_amplitude_and_phase() {
        // 44.1k -> 48.001k has no small common period: the widest `lead` (≈ 1 s of zeros).
        for (from, to) in [(44_100, 48_000), (48_000, 96_000), (96_000, 44_100), (44_100, 48_001)] {
            let out = resample(&Audio::new(from, vec![sine(from, 1_000.0, from as usize / 2)]), to).unwrap();
            let ideal = sine(to, 1_000.0, out.len());
            let edge = to as usize / 50;
            let worst = (edge..out.len() - edge).map(|i| (out.channels[0][i] - ideal[i]).abs()).fold(0.0f32, f32::max);
            assert!(worst < 1e-3, "{from}->{to}: max deviation from the ideal sine {worst}");
        }
    }

    #[test]
    fn click_stays_time_aligned() {
        for (from, to) in [(44_100, 48_000), (48_000, 96_000), (96_000, 44_100)] {
            let at = 3_001;
            let mut click = vec![0.0; from as usize / 10];
            click[at] = 1.0;
            let out = resample(&Audio::new(from, vec![click]), to).unwrap();
            let peak = (0..out.len()).max_by(|&a, &b| out.channels[0][a].total_cmp(&out.channels[0][b])).unwrap();
            let expected = output_frames(at, from, to);
            assert!(peak.abs_diff(expected) <= 2, "{from}->{to}: click at {peak}, expected {expected}");
        }
    }
}
