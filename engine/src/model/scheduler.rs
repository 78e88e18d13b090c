//! Flow-matching schedules and the Euler sampler (docs/acestep-model.md §9, §13): DiffSynth's generic schedule
//! (bit-exact float32), the official turbo tables with their cover-noise start, and the noising / Euler helpers.
//!
//! Convention: σ = t ∈ (0, 1], `x_t = σ·ε + (1 − σ)·x0`, the DiT predicts `v ≈ ε − x0`.

use candle_core::Tensor;

use crate::error::{EngineError, Result};

/// Official turbo schedules (`fix_nfe` = 8), by shift.
const TURBO_TABLES: [(f64, [f64; 8]); 3] = [
    (1.0, [1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125]),
    (
        2.0,
        [
            1.0,
            0.9333333333333333,
            0.8571428571428571,
            0.7692307692307693,
            0.6666666666666666,
            0.5454545454545454,
            0.4,
            0.2222222222222222,
        ],
    ),
    (3.0, [1.0, 0.9545454545454546, 0.9, 0.8333333333333334, 0.75, 0.6428571428571429, 0.5, 0.3]),
];

/// Timesteps per unit σ (the DiT is fed `1000·σ`).
const TRAIN_TIMESTEPS: f32 = 1000.0;

/// A descending list of noise levels σ, one per sampling step; the level after the last step is 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    sigmas: Vec<f32>,
}

impl Schedule {
    /// DiffSynth's `FlowMatchScheduler('ACE-Step')`: `linspace(strength, 0, steps + 1)[:-1]`, then
    /// `shift·σ / (1 + (shift − 1)·σ)` when `shift ≠ 1`, all in float32 exactly as torch computes it.
    pub fn diffsynth(steps: usize, strength: f64, shift: f64) -> Result<Self> {
        if steps == 0 {
            return Err(EngineError::invalid("the schedule needs at least one step"));
        }
        if !(strength > 0.0 && strength <= 1.0) {
            return Err(EngineError::invalid(format!("denoising strength {strength} is outside (0, 1]")));
        }
        if !(shift.is_finite() && shift > 0.0) {
            return Err(EngineError::invalid(format!("schedule shift {shift} must be a positive number")));
        }
        let mut sigmas = torch_linspace_f32(strength as f32, 0.0, steps + 1);
        sigmas.pop();
        if shift != 1.0 {
            let (shift_f, shift_m1) = (shift as f32, (shift - 1.0) as f32);
            for s in &mut sigmas {
                *s = shift_f * *s / (1.0 + shift_m1 * *s);
            }
        }
        Ok(Self { sigmas })
    }

    /// The official turbo schedule: 8 fixed steps, `shift` snapped to the nearest of {1, 2, 3} (ties go
    /// to the smaller shift, as Python's `min` does).
    pub fn turbo(shift: f64) -> Self {
        let (_, table) = TURBO_TABLES.iter().fold(&TURBO_TABLES[0], |best, cand| {
            if (cand.0 - shift).abs() < (best.0 - shift).abs() {
                cand
            } else {
                best
            }
        });
        Self { sigmas: table.iter().map(|&s| s as f32).collect() }
    }

    /// The official `cover_noise_strength` start: for `c > 0`, the schedule value nearest to `1 − c`
    /// (the first one on ties) becomes the first step and earlier steps are dropped; `c ≤ 0` keeps all.
    pub fn start_at_cover_noise(&self, cover_noise_strength: f64) -> Self {
        if cover_noise_strength <= 0.0 {
            return self.clone();
        }
        let target = 1.0 - cover_noise_strength;
        let distance = |s: f32| (s as f64 - target).abs();
        let start = (0..self.sigmas.len()).fold(0, |best, i| {
            if distance(self.sigmas[i]) < distance(self.sigmas[best]) {
                i
            } else {
                best
            }
        });
        Self { sigmas: self.sigmas[start..].to_vec() }
    }

    /// The noise level of every step.
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    /// The DiT timestep of every step, `1000·σ` in float32.
    pub fn timesteps(&self) -> Vec<f32> {
        self.sigmas.iter().map(|s| s * TRAIN_TIMESTEPS).collect()
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.sigmas.len()
    }

    /// True for a schedule without steps.
    pub fn is_empty(&self) -> bool {
        self.sigmas.is_empty()
    }

    /// `(σ, σ_next)` of every step; `σ_next` is 0 after the last step.
    pub fn steps(&self) -> impl Iterator<Item = (f32, f32)> + '_ {
        self.sigmas.iter().enumerate().map(|(i, &s)| (s, self.sigmas.get(i + 1).copied().unwrap_or(0.0)))
    }
}

/// torch's float32 CPU `linspace`: `start + step·i` for the first half and `end − step·(n − 1 − i)` for
/// the second, each a fused multiply-add as the compiled kernel computes it.
pub(crate) fn torch_linspace_f32(start: f32, end: f32, n: usize) -> Vec<f32> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f32;
    let half = n / 2;
    (0..n)
        .map(|i| if i < half { step.mul_add(i as f32, start) } else { (-step).mul_add((n - 1 - i) as f32, end) })
        .collect()
}

/// Mixes clean latents with noise at level σ: `(1 − σ)·x0 + σ·ε`.
pub fn add_noise(x0: &Tensor, noise: &Tensor, sigma: f32) -> Result<Tensor> {
    Ok((x0.affine((1.0 - sigma) as f64, 0.0)? + noise.affine(sigma as f64, 0.0)?)?)
}

/// One Euler step of the flow ODE: `x + v·(σ_next − σ)`; with `σ_next` = 0 this is the clean estimate
/// `x − σ·v`.
pub fn euler_step(x: &Tensor, v: &Tensor, sigma: f32, sigma_next: f32) -> Result<Tensor> {
    Ok((x + v.affine((sigma_next - sigma) as f64, 0.0)?)?)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn turbo_tables_follow_the_shift_formula() {
        for shift in [1.0, 2.0, 3.0] {
            let want: Vec<f32> = (0..8)
                .map(|i| {
                    let u = 1.0 - i as f64 / 8.0;
                    (shift * u / (1.0 + (shift - 1.0) * u)) as f32
                })
                .collect();
            assert_eq!(Schedule::turbo(shift).sigmas(), &want[..], "shift {shift}");
        }
    }

    #[test]
    fn turbo_shift_snaps_to_nearest_table_with_ties_to_the_smaller() {
        let snapped = |s: f64, to: f64| assert_eq!(Schedule::turbo(s), Schedule::turbo(to), "shift {s}");
        snapped(0.2, 1.0);
        snapped(1.5, 1.0);
        snapped(1.6, 2.0);
        snapped(2.5, 2.0);
        snapped(2.6, 3.0);
        snapped(9.0, 3.0);
        assert_ne!(Schedule::turbo(1.0), Schedule::turbo(2.0));
        assert_ne!(Schedule::turbo(2.0), Schedule::turbo(3.0));
    }

    #[test]
    fn diffsynth_schedule_matches_turbo_table_for_eight_steps() {
        for shift in [1.0, 2.0, 3.0] {
            let ds = Schedule::diffsynth(8, 1.0, shift).unwrap();
            for (a, b) in ds.sigmas().iter().zip(Schedule::turbo(shift).sigmas()) {
                assert!((a - b).abs() <= f32::EPSILON, "shift {shift}: {a} vs {b}");
            }
            assert_eq!(ds.timesteps()[0], 1000.0);
        }
    }

    #[test]
    fn diffsynth_schedule_rejects_bad_arguments() {
        assert!(Schedule::diffsynth(0, 1.0, 3.0).is_err());
        assert!(Schedule::diffsynth(8, 0.0, 3.0).is_err());
        assert!(Schedule::diffsynth(8, 1.5, 3.0).is_err());
        assert!(Schedule::diffsynth(8, 1.0, f64::NAN).is_err());
    }

    #[test]
    fn linspace_is_symmetric_and_hits_both_ends() {
        let v = torch_linspace_f32(1.0, 0.0, 28);
        assert_eq!((v[0], v[27]), (1.0, 0.0));
        assert_eq!(v.len(), 28);
        assert!(v.windows(2).all(|w| w[0] > w[1]));
    }

    #[test]
    fn cover_noise_start_truncates_at_nearest_value() {
        let turbo = Schedule::turbo(3.0);
        assert_eq!(turbo.start_at_cover_noise(0.0), turbo);
        assert_eq!(turbo.start_at_cover_noise(0.5).sigmas(), &[0.5, 0.3]);
        // 1 − 0.2 = 0.8 is nearest to 0.8333 (index 3).
        assert_eq!(turbo.start_at_cover_noise(0.2).len(), 5);
        // Beyond the last value the last step remains.
        assert_eq!(turbo.start_at_cover_noise(1.0).sigmas(), &[0.3]);
    }

    #[test]
    fn steps_end_at_zero_and_euler_last_step_gives_clean_estimate() {
        let schedule = Schedule::turbo(3.0);
        let pairs: Vec<(f32, f32)> = schedule.steps().collect();
        assert_eq!(pairs[0], (1.0, 0.954_545_45));
        assert_eq!(pairs[7], (0.3, 0.0));
        let x = Tensor::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let v = Tensor::new(&[0.5f32, -1.0], &Device::Cpu).unwrap();
        let x0: Vec<f32> = euler_step(&x, &v, 0.5, 0.0).unwrap().to_vec1().unwrap();
        assert_eq!(x0, vec![0.75, 2.5]);
    }

    #[test]
    fn add_noise_interpolates_between_clean_and_noise() {
        let x0 = Tensor::new(&[2.0f32, -4.0], &Device::Cpu).unwrap();
        let eps = Tensor::new(&[1.0f32, 1.0], &Device::Cpu).unwrap();
        let xt: Vec<f32> = add_noise(&x0, &eps, 0.25).unwrap().to_vec1().unwrap();
        assert_eq!(xt, vec![1.75, -2.75]);
        let pure: Vec<f32> = add_noise(&x0, &eps, 1.0).unwrap().to_vec1().unwrap();
        assert_eq!(pure, vec![1.0, 1.0]);
    }
}
