//! End-to-end cover and repaint of a clip through the [`Generator`] (docs/acestep-model.md §10), in reference mode so
//! each run does exactly the work of DiffSynth's pipeline: VAE encode, prompts, condition, 8 steps, VAE decode — under
//! the VRAM budget if one is given, releasing units between stages and streaming DiT blocks.

use std::ops::ControlFlow;

use super::{checkpoint, silence, test_clip, BenchOptions, Timer, CLIP_SECONDS, SHIFT};
use crate::error::{EngineError, Result};
use crate::model::prompt::PromptTokenizer;
use crate::pipeline::request::{CfgInterval, GenerationRequest, Metas, Mode, Task};
use crate::pipeline::Generator;
use crate::residency::ResidencyStats;

/// The style caption of the end-to-end runs (mirrored in `bench/reference.py`).
pub const CAPTION: &str = "an upbeat synth-pop song with bright analog pads, punchy electronic drums, a warm \
     rolling bass line and airy female vocals, 120 bpm, glossy modern production";
/// The lyrics of the end-to-end runs (mirrored in `bench/reference.py`).
pub const LYRICS: &str = "[Verse]\nCity lights are fading out, I hear the engines hum\nEvery window tells a story \
     of the days to come\nWe were running through the static with our hearts on fire\nChasing every little signal \
     climbing ever higher\n[Chorus]\nHold on, hold on, the night is young and we are strong\nSing it loud, sing it \
     long, we have waited for this song\nHold on, hold on, the morning light will take us home\nNever lost, never \
     gone, in the echo we belong\n[Verse]\nPaper planes and photographs are scattered on the floor\nEvery promise \
     that we made is knocking at the door\nWe were dancing on the edges of a silver line\nCounting every heartbeat \
     till the stars align\n[Chorus]\nHold on, hold on, the night is young and we are strong\nSing it loud, sing it \
     long, we have waited for this song";
/// The repainted region, in seconds of the clip.
pub const REPAINT_RANGE: (f64, f64) = (3.0, 6.0);

/// A request for `task` on a fresh clip: every run edits different audio, so no run reuses the source latents
/// the generator caches for iterative edits.
fn request(task: Task, run: usize) -> GenerationRequest {
    GenerationRequest {
        task,
        mode: Mode::Reference,
        source: Some(test_clip(CLIP_SECONDS, run)),
        caption: CAPTION.into(),
        lyrics: LYRICS.into(),
        language: "en".into(),
        metas: Metas::default(),
        seed: run as u64,
        steps: 8,
        shift: SHIFT,
        cfg_scale: 1.0,
        cfg_interval: CfgInterval::ALL,
        references: Vec::new(),
        noise: None,
    }
}

/// Cover and repaint of a clip; returns the generator's residency accounting over every run. The random-weight
/// checkpoint has no tokenizer or silence latent: the given `tokenizer.json` and an all-zero silence latent
/// stand in for them.
pub(super) fn end_to_end(options: &BenchOptions, timer: &mut Timer) -> Result<ResidencyStats> {
    let tokenizer = options.tokenizer.as_deref().ok_or_else(|| {
        EngineError::invalid("the end-to-end benchmark needs a tokenizer.json (random weights come without one)")
    })?;
    let tokenizer = PromptTokenizer::from_file(tokenizer)?;
    let mut generator = Generator::with_assets(checkpoint(options), tokenizer, silence(options)?, options.budget)?;
    let (start, end) = REPAINT_RANGE;
    let repaint = format!("repaint {start}–{end} s");
    let tasks = [
        ("cover_10s", "cover", Task::Cover { cover_strength: 1.0, noise_strength: 0.0, audio_codes: None }),
        (
            "repaint_10s",
            repaint.as_str(),
            Task::Repaint { ranges: vec![REPAINT_RANGE], strength: 1.0, splice_crossfade_ms: None },
        ),
    ];
    let mut run = 0;
    for (name, what, task) in tasks {
        let detail = format!("{what} of a {CLIP_SECONDS} s clip, reference mode, 8 steps, VAE encode + decode");
        timer.time(name, detail, || {
            run += 1;
            generator.generate(&request(task.clone(), run), &mut |_| ControlFlow::Continue(())).map(drop)
        })?;
    }
    Ok(generator.residency())
}
