//! How a guided step combines the conditional and the unconditional (null-condition) velocities: DiffSynth's plain
//! classifier-free guidance in reference mode, the official adaptive projected guidance (APG) in studio mode.
//!
//! APG follows `acestep/models/common/apg_guidance.py` (`MomentumBuffer`, `project`, `apg_forward`) of
//! ace-step/ACE-Step-1.5 with the `apg_classic` defaults of `guidance_registry.py` (momentum −0.75, norm threshold
//! 2.5, eta 0, norms over the frames axis), and the cfg interval of
//! `modeling_acestep_v15_xl_base.py` `generate_audio`; tests/fixtures-variants/README.md (kind `apg_guidance`)
//! spells out every operation.

use candle_core::{DType, Tensor};

use super::request::Mode;
use crate::error::Result;

/// The part of the schedule where APG guides, as sampler times `t` (1 = pure noise): both ends inclusive.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CfgInterval {
    /// Lowest `t` that is guided.
    pub start: f64,
    /// Highest `t` that is guided.
    pub end: f64,
}

impl CfgInterval {
    /// The whole schedule (the official default).
    pub const ALL: Self = Self { start: 0.0, end: 1.0 };

    /// Whether the step at sampler time `t` is guided. The bounds are compared in f32, as torch compares the
    /// sampler's float32 `t` with a Python float.
    pub fn contains(&self, t: f32) -> bool {
        self.start as f32 <= t && t <= self.end as f32
    }
}

impl Default for CfgInterval {
    fn default() -> Self {
        Self::ALL
    }
}

/// The guidance of one sampling run; APG carries its momentum from step to step.
#[derive(Debug)]
pub enum Guidance {
    /// One conditional pass per step (scale 1, the turbo checkpoints).
    Off,
    /// `v_u + g·(v_c − v_u)` on every step (DiffSynth's `cfg_scale`).
    Cfg {
        /// The guidance scale g.
        scale: f64,
    },
    /// The official APG inside a cfg interval, plain `v_c` outside it.
    Apg(Apg),
}

impl Guidance {
    /// Reference mode guides whenever the scale is not 1 (as DiffSynth does); studio mode runs APG for scales above
    /// 1 (as the official sampler does) inside `interval`.
    pub fn new(mode: Mode, scale: f64, interval: CfgInterval) -> Self {
        match mode {
            Mode::Reference if scale != 1.0 => Self::Cfg { scale },
            Mode::Studio if scale > 1.0 => Self::Apg(Apg::new(scale, interval)),
            _ => Self::Off,
        }
    }

    /// Whether any step may need the unconditional pass (so the null condition must be encoded).
    pub fn uses_null(&self) -> bool {
        !matches!(self, Self::Off)
    }

    /// Whether the step at sampler time `sigma` runs the unconditional pass.
    pub fn guides(&self, sigma: f32) -> bool {
        match self {
            Self::Off => false,
            Self::Cfg { .. } => true,
            Self::Apg(apg) => apg.interval.contains(sigma),
        }
    }

    /// The velocity of a guided step from the conditional and unconditional velocities `[B, T, C]`.
    pub fn combine(&mut self, cond: &Tensor, uncond: &Tensor) -> Result<Tensor> {
        match self {
            Self::Off => Ok(cond.clone()),
            Self::Cfg { scale } => Ok((uncond + ((cond - uncond)? * *scale)?)?),
            Self::Apg(apg) => apg.step(cond, uncond),
        }
    }
}

/// Adaptive projected guidance with a momentum buffer (`apg_forward` with `MomentumBuffer`).
#[derive(Debug)]
pub struct Apg {
    scale: f64,
    interval: CfgInterval,
    momentum: f64,
    norm_threshold: f64,
    eta: f64,
    /// `MomentumBuffer.running_average`; `None` is the fresh buffer's scalar 0.
    running: Option<Tensor>,
}

impl Apg {
    /// The `apg_classic` momentum of `guidance_registry.py`.
    pub const MOMENTUM: f64 = -0.75;
    /// The `apg_classic` norm threshold.
    pub const NORM_THRESHOLD: f64 = 2.5;
    /// The `apg_classic` eta (only the orthogonal part of the difference guides).
    pub const ETA: f64 = 0.0;

    /// The `apg_classic` settings at scale `scale`.
    pub fn new(scale: f64, interval: CfgInterval) -> Self {
        Self {
            scale,
            interval,
            momentum: Self::MOMENTUM,
            norm_threshold: Self::NORM_THRESHOLD,
            eta: Self::ETA,
            running: None,
        }
    }

    /// A buffer that starts from `running` instead of 0 (to resume a sequence).
    pub fn with_running_average(mut self, running: Tensor) -> Self {
        self.running = Some(running);
        self
    }

    /// The running average after the last guided step.
    pub fn running_average(&self) -> Option<&Tensor> {
        self.running.as_ref()
    }

    /// One guided step: momentum update, norm clip over the frames axis, projection of the clipped difference
    /// onto `cond` (in f64), `cond + (g − 1)·(orthogonal + eta·parallel)`.
    pub fn step(&mut self, cond: &Tensor, uncond: &Tensor) -> Result<Tensor> {
        let diff = (cond - uncond)?;
        let running = match &self.running {
            Some(previous) => (&diff + (previous * self.momentum)?)?,
            None => diff,
        };
        let norm = running.sqr()?.sum_keepdim(1)?.sqrt()?;
        let factor = (norm.ones_like()? * self.norm_threshold)?.div(&norm)?.clamp(f64::NEG_INFINITY, 1.0)?;
        let clipped = running.broadcast_mul(&factor)?;
        self.running = Some(running);
        let (d, c) = (clipped.to_dtype(DType::F64)?, cond.to_dtype(DType::F64)?);
        let unit = c.broadcast_div(&c.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::INFINITY)?)?;
        let parallel = d.mul(&unit)?.sum_keepdim(1)?.broadcast_mul(&unit)?;
        let orthogonal = (&d - &parallel)?;
        let (parallel, orthogonal) = (parallel.to_dtype(cond.dtype())?, orthogonal.to_dtype(cond.dtype())?);
        let update = (orthogonal + (parallel * self.eta)?)?;
        Ok((cond + (update * (self.scale - 1.0))?)?)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn reference_mode_guides_whenever_the_scale_is_not_one_and_studio_mode_above_one() {
        assert!(
            matches!(Guidance::new(Mode::Reference, 0.5, CfgInterval::ALL), Guidance::Cfg { scale } if scale == 0.5)
        );
        assert!(matches!(Guidance::new(Mode::Reference, 1.0, CfgInterval::ALL), Guidance::Off));
        assert!(matches!(Guidance::new(Mode::Studio, 0.5, CfgInterval::ALL), Guidance::Off));
        let apg = Guidance::new(Mode::Studio, 4.0, CfgInterval { start: 0.2, end: 0.8 });
        assert!(apg.uses_null());
        assert_eq!([0.1f32, 0.2, 0.5, 0.8, 0.9].map(|t| apg.guides(t)), [false, true, true, true, false]);
    }

    #[test]
    fn cfg_is_the_unconditional_velocity_plus_the_scaled_difference() {
        let cond = Tensor::new(&[[[1f32, 2.0]]], &Device::Cpu).unwrap();
        let uncond = Tensor::new(&[[[0f32, 4.0]]], &Device::Cpu).unwrap();
        let v = Guidance::Cfg { scale: 3.0 }.combine(&cond, &uncond).unwrap();
        assert_eq!(v.flatten_all().unwrap().to_vec1::<f32>().unwrap(), [3.0, -2.0]);
    }

    #[test]
    fn apg_drops_the_part_of_the_difference_parallel_to_the_conditional_velocity() {
        // One channel over two frames: cond (1, 0); the difference (1, 1) has a parallel part (1, 0) and an
        // orthogonal part (0, 1); its norm √2 is below the 2.5 threshold, so nothing is clipped.
        let cond = Tensor::new(&[[[1f32], [0.0]]], &Device::Cpu).unwrap();
        let uncond = Tensor::new(&[[[0f32], [-1.0]]], &Device::Cpu).unwrap();
        let mut apg = Apg::new(3.0, CfgInterval::ALL);
        let v = apg.step(&cond, &uncond).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v, [1.0, 2.0]);
        // The next step adds −0.75 × the previous difference to the new one before projecting.
        apg.step(&cond, &uncond).unwrap();
        let running = apg.running_average().unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(running, [0.25, 0.25]);
    }
}
