//! The deterministic stereo test signal the host tests play: two detuned tones per channel plus a little
//! seeded noise, so neighbouring frames and the two channels differ and a stray or shifted sample shows.

use std::f64::consts::TAU;

/// `seconds` of the test signal at `sample_rate`, as `[left, right]`.
pub fn test_signal(sample_rate: u32, seconds: f64) -> Vec<Vec<f32>> {
    let frames = (seconds * f64::from(sample_rate)).round() as usize;
    let rate = f64::from(sample_rate);
    let mut noise = Lcg(0x5EED_0F2E_7ACE);
    let tones = [(220.0, 331.0), (277.2, 415.3)];
    tones
        .iter()
        .map(|&(low, high)| {
            (0..frames)
                .map(|i| {
                    let t = i as f64 / rate;
                    let tone = 0.3 * (TAU * low * t).sin() + 0.2 * (TAU * high * t).sin();
                    (tone + 0.05 * noise.next_unit()) as f32
                })
                .collect()
        })
        .collect()
}

/// A 64-bit linear congruential generator (Knuth's MMIX constants).
struct Lcg(u64);

impl Lcg {
    /// The next value, uniform in [-1, 1).
    fn next_unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_is_stereo_the_requested_length_and_within_full_scale() {
        let signal = test_signal(44_100, 6.0);
        assert_eq!(signal.len(), 2);
        assert!(signal.iter().all(|channel| channel.len() == 264_600));
        assert!(signal.iter().flatten().all(|x| x.abs() < 0.6));
    }

    #[test]
    fn channels_differ_and_the_signal_is_reproducible() {
        let signal = test_signal(48_000, 0.5);
        assert_ne!(signal[0], signal[1]);
        assert_eq!(signal, test_signal(48_000, 0.5));
        assert!(signal[0].windows(2).all(|pair| pair[0] != pair[1]));
    }
}
