//! The sampling loop (docs/acestep-model.md §9): Euler steps over a schedule with per-phase conditions, optional CFG,
//! and the two ways of keeping audio outside a repaint region — DiffSynth's per-step velocity replacement
//! (reference mode) and the official early-step injection of the noised source (studio mode).

use std::ops::ControlFlow;

use candle_core::Tensor;

use super::conditioning::DitCondition;
use super::guidance::Guidance;
use super::masks::mix_frames;
use super::request::{Progress, ProgressFn};
use crate::error::{EngineError, Result};
use crate::model::dit::Dit;
use crate::model::scheduler::{add_noise, euler_step, Schedule};

/// A condition used from step `from_step` on (cover switches to the text2music condition part-way).
pub struct Phase {
    /// First step (0-based) that uses this condition.
    pub from_step: usize,
    /// The condition.
    pub condition: DitCondition,
}

/// DiffSynth's repaint rule: outside the mask the velocity is replaced by `(x − src)/σ`, so those frames
/// follow the noised-source path exactly; inside, the DiT's velocity is weighted by the mask.
pub struct KeepOutside {
    /// Unmasked source latents `[1, T, C]`.
    pub source: Tensor,
    /// Per-frame mask (strength inside the ranges, 1 on padding, 0 elsewhere).
    pub mask: Vec<f32>,
}

/// The official repaint injection: after each of the first `steps` Euler updates, frames outside the region
/// are reset to `t_next·ε + (1 − t_next)·clean` with the initial noise ε.
pub struct Injection {
    /// Clean source latents `[1, T, C]`.
    pub clean: Tensor,
    /// The initial noise ε.
    pub noise: Tensor,
    /// 1 inside the region (generated), 0 outside (injected).
    pub mask: Vec<f32>,
    /// Number of leading steps that inject.
    pub steps: usize,
}

/// Everything one sampling run needs.
pub struct DenoisePlan {
    /// Sigmas to visit.
    pub schedule: Schedule,
    /// Conditions by starting step, in order, the first starting at 0.
    pub phases: Vec<Phase>,
    /// How guided steps combine the conditional and the null-condition velocities.
    pub guidance: Guidance,
    /// Reference-mode repaint rule.
    pub keep_outside: Option<KeepOutside>,
    /// Studio-mode repaint injection.
    pub injection: Option<Injection>,
}

/// Runs the Euler loop from `x`, reporting each step; `Break` from `progress` cancels.
pub fn denoise(dit: &Dit, mut x: Tensor, plan: &mut DenoisePlan, progress: &mut ProgressFn) -> Result<Tensor> {
    let total = plan.schedule.len();
    for (k, (sigma, sigma_next)) in plan.schedule.steps().enumerate() {
        let phase = plan.phases.iter().rev().find(|p| p.from_step <= k).expect("a phase starts at step 0");
        let condition = &phase.condition;
        let timestep = dit.shell().timestep(sigma * 1000.0)?;
        let mut v = match (&condition.guided_cross, plan.guidance.guides(sigma)) {
            // The conditional and the null-condition pass as one batch of two.
            (Some(pair), true) => {
                let both = dit.forward(&Tensor::cat(&[&x, &x], 0)?, &condition.context, pair, &timestep)?;
                plan.guidance.combine(&both.narrow(0, 0, 1)?, &both.narrow(0, 1, 1)?)?
            }
            _ => dit.forward(&x, &condition.context, &condition.cross, &timestep)?,
        };
        if let Some(keep) = &plan.keep_outside {
            let follow_source = ((&x - &keep.source)? / sigma as f64)?;
            v = mix_frames(&follow_source, &v, &keep.mask)?;
        }
        x = euler_step(&x, &v, sigma, sigma_next)?;
        if let Some(inject) = plan.injection.as_ref().filter(|i| k < i.steps) {
            let reference = add_noise(&inject.clean, &inject.noise, sigma_next)?;
            x = mix_frames(&reference, &x, &inject.mask)?;
        }
        if let ControlFlow::Break(()) = progress(Progress::Step { k: k + 1, n: total }) {
            return Err(EngineError::Cancelled);
        }
    }
    Ok(x)
}
