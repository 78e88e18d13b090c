//! What a caller asks the pipeline for, and what it gets back.

use std::ops::ControlFlow;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::audio::Audio;
pub use crate::model::prompt::Metas;

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
    /// Classifier-free guidance scale (1 = off; turbo is distilled).
    pub cfg_scale: f64,
    /// Initial noise `[1, T, 64]` to use instead of the seeded RNG (parity tests).
    #[serde(skip)]
    pub noise: Option<Tensor>,
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
