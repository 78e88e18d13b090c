//! What a caller asks the pipeline for, and what it gets back.

use std::ops::ControlFlow;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

pub use super::guidance::CfgInterval;
use crate::audio::Audio;
use crate::error::{EngineError, Result};
pub use crate::model::prompt::Metas;

/// The most diffusion steps a request may ask for: the DiT is fed `t = 1000·σ` (model/scheduler.rs), so a
/// schedule finer than 1000 steps only adds time (and `steps` sizes the schedule's allocations).
pub const MAX_STEPS: usize = 1000;
/// The longest audio a job may take in or produce (the model's trained maximum, 10 minutes).
pub const MAX_DURATION_S: f64 = 600.0;
/// The longest splice crossfade of a repaint, in milliseconds (the plugin's `xfade_ms` range, README.md).
pub const MAX_SPLICE_CROSSFADE_MS: f64 = 500.0;

/// Which pipeline glue to use. Both share every model component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Official ACE-Step behaviour (0/1 repaint mask, injection, boundary crossfade, "N/A" metas,
    /// anti-clip output). The default for the plugin and CLI.
    #[default]
    Studio,
    /// Bit-for-bit DiffSynth 2.1.12 semantics (the golden fixtures).
    Reference,
}

/// The generation task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum Task {
    /// Re-render the source in a new style, keeping its structure.
    Cover {
        /// Fraction of the steps that use the source's structure (0..=1).
        cover_strength: f32,
        /// How much of the source's raw latents seed the start (0 = pure noise).
        noise_strength: f32,
        /// LM audio codes (`<|audio_code_N|>`…) used instead of the source audio, if given.
        audio_codes: Option<String>,
    },
    /// Regenerate the given time ranges (seconds of the source; may extend past either end to outpaint).
    Repaint {
        /// `(start_s, end_s)` ranges.
        ranges: Vec<(f64, f64)>,
        /// Repaint strength (0..=1).
        strength: f32,
        /// Studio mode: keep the original samples outside the region, with an equal-power crossfade of
        /// this many milliseconds at each edge. `None` returns the decoded audio everywhere.
        splice_crossfade_ms: Option<f64>,
    },
    /// Generate from text alone.
    Text2Music {
        /// Length of the result.
        duration_s: f64,
    },
}

/// A full generation request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenerationRequest {
    /// What to do.
    pub task: Task,
    /// Pipeline glue.
    pub mode: Mode,
    /// Source audio for cover and repaint (48 kHz; mono is duplicated to stereo).
    #[serde(skip)]
    pub source: Option<Audio>,
    /// Timbre references: audio whose timbre the result takes (48 kHz, mono or stereo, 1 s to 600 s each; each is
    /// tiled and cropped to the 30 s the timbre encoder hears, pipeline/timbre.rs). Empty: the model's default
    /// timbre.
    #[serde(skip)]
    pub references: Vec<Audio>,
    /// Style caption.
    pub caption: String,
    /// Lyrics (`[Instrumental]` for none).
    pub lyrics: String,
    /// Vocal language code ("en", "unknown", …).
    pub language: String,
    /// Metas block values.
    pub metas: Metas,
    /// Noise seed.
    pub seed: u64,
    /// Diffusion steps.
    pub steps: usize,
    /// Schedule shift.
    pub shift: f64,
    /// Guidance scale (1 = off; turbo is distilled): plain CFG in reference mode, APG in studio mode
    /// (pipeline/guidance.rs).
    pub cfg_scale: f64,
    /// The sampler times where studio-mode APG guides (the whole schedule by default).
    #[serde(default)]
    pub cfg_interval: CfgInterval,
    /// Initial noise `[1, T, 64]` to use instead of the seeded RNG (parity tests).
    #[serde(skip)]
    pub noise: Option<Tensor>,
}

impl GenerationRequest {
    /// Refuses sizes that would make a job hang or allocate without bound, whoever built the request (CLI, plugin
    /// state, automation): more than [`MAX_STEPS`] steps, a splice crossfade outside 0..=[`MAX_SPLICE_CROSSFADE_MS`]
    /// ms (or NaN).
    pub fn check_limits(&self) -> Result<()> {
        if self.steps > MAX_STEPS {
            return Err(EngineError::invalid(format!(
                "{} steps is more than the {MAX_STEPS} a job may take (turbo uses 8); ask for fewer steps",
                self.steps
            )));
        }
        if let Task::Repaint { splice_crossfade_ms: Some(ms), .. } = self.task {
            if !(0.0..=MAX_SPLICE_CROSSFADE_MS).contains(&ms) {
                return Err(EngineError::invalid(format!(
                    "a splice crossfade of {ms} ms is outside 0..{MAX_SPLICE_CROSSFADE_MS} ms; pick a length in that \
                     range"
                )));
            }
        }
        Ok(())
    }
}

/// Where a running pipeline is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Progress {
    /// Text/condition/VAE encoding of the inputs.
    Encoding,
    /// Diffusion step `k` of `n` finished.
    Step {
        /// Steps done.
        k: usize,
        /// Total steps.
        n: usize,
    },
    /// VAE decode tile `tile` of `tiles` finished.
    Decoding {
        /// Tiles done.
        tile: usize,
        /// Total tiles.
        tiles: usize,
    },
}

/// Called between steps and tiles; returning `ControlFlow::Break(())` cancels the job.
pub type ProgressFn<'a> = dyn FnMut(Progress) -> ControlFlow<()> + 'a;

/// What a pipeline returns.
#[derive(Debug, Clone)]
pub struct GenerationOutput {
    /// 48 kHz stereo result.
    pub audio: Audio,
    /// Final latents `[1, T, 64]`.
    pub latents: Tensor,
    /// VAE latents of the (padded) source `[1, T_src, 64]`, when there was a source.
    pub source_latents: Option<Tensor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repaint(steps: usize, crossfade_ms: Option<f64>) -> GenerationRequest {
        GenerationRequest {
            task: Task::Repaint { ranges: vec![(1.0, 2.0)], strength: 1.0, splice_crossfade_ms: crossfade_ms },
            mode: Mode::Studio,
            source: None,
            caption: String::new(),
            lyrics: String::new(),
            language: "unknown".into(),
            metas: Metas::default(),
            seed: 0,
            steps,
            shift: 3.0,
            cfg_scale: 1.0,
            cfg_interval: CfgInterval::ALL,
            references: Vec::new(),
            noise: None,
        }
    }

    #[test]
    fn steps_and_crossfades_within_their_ranges_pass() {
        for (steps, crossfade) in [(8, Some(100.0)), (MAX_STEPS, Some(0.0)), (1, Some(500.0)), (8, None)] {
            repaint(steps, crossfade).check_limits().unwrap();
        }
    }

    #[test]
    fn unbounded_steps_and_crossfades_are_refused_naming_the_value() {
        let message = |steps, crossfade| repaint(steps, crossfade).check_limits().unwrap_err().to_string();
        assert!(message(4_294_967_295, None).contains("4294967295 steps is more than the 1000"));
        for (crossfade, shown) in [
            (f64::INFINITY, "inf ms"),
            (1e9, "1000000000 ms"),
            (-5.0, "-5 ms"),
            (f64::NAN, "NaN ms"),
            (500.5, "500.5 ms"),
        ] {
            let err = message(8, Some(crossfade));
            assert!(err.contains(&format!("a splice crossfade of {shown} is outside 0..500 ms")), "{err}");
        }
    }
}
