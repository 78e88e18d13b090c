//! Kinds `scheduler`, `silence_tiling` and `repaint_masks`: DiffSynth's sigma schedule, the silence latent
//! slice and the reference-mode repaint bookkeeping (docs/acestep-model.md §9, §10.3, §13).

use candle_core::Tensor;
use retake_engine::model::checkpoint::Checkpoint;
use retake_engine::model::scheduler::Schedule;
use retake_engine::model::silence::SilenceLatent;
use retake_engine::pipeline::masks::{fill_with_silence, reference_denoise_mask, reference_padding, FrameGrid};
use serde::Deserialize;

use crate::harness::{Inputs, Produced};

/// Runs a scheduler / silence / repaint-mask case.
pub fn run(inputs: &Inputs) -> Result<Produced, String> {
    match inputs.case.kind.as_str() {
        "scheduler" => schedules(inputs),
        "silence_tiling" => silence_tiling(inputs, &inputs.checkpoint()?),
        "repaint_masks" => repaint_masks(inputs, &inputs.checkpoint()?),
        other => Err(format!("the schedule handler does not run kind `{other}`")),
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// `args.<key>` parsed as `T`.
fn arg<T: for<'de> Deserialize<'de>>(inputs: &Inputs, key: &str) -> Result<T, String> {
    serde_json::from_value(inputs.arg(key).clone()).map_err(|e| format!("case argument `{key}`: {e}"))
}

/// One `scheduler` configuration.
#[derive(Deserialize)]
struct ScheduleConfig {
    index: usize,
    num_inference_steps: usize,
    shift: f64,
    denoising_strength: f64,
}

fn schedules(inputs: &Inputs) -> Result<Produced, String> {
    let mut produced = Produced::new();
    for cfg in arg::<Vec<ScheduleConfig>>(inputs, "configs")? {
        let schedule = Schedule::diffsynth(cfg.num_inference_steps, cfg.denoising_strength, cfg.shift).map_err(err)?;
        let sigmas = Tensor::new(schedule.sigmas(), &candle_core::Device::Cpu).map_err(err)?;
        let timesteps = Tensor::new(schedule.timesteps(), &candle_core::Device::Cpu).map_err(err)?;
        produced.insert(format!("out.sigmas_{:02}", cfg.index), sigmas);
        produced.insert(format!("out.timesteps_{:02}", cfg.index), timesteps);
    }
    Ok(produced)
}

fn silence_tiling(inputs: &Inputs, checkpoint: &Checkpoint) -> Result<Produced, String> {
    let silence = SilenceLatent::load(checkpoint).map_err(err)?;
    let available: usize = arg(inputs, "available")?;
    if silence.len() != available {
        return Err(format!("the silence latent has {} frames, the case says {available}", silence.len()));
    }
    let slice = silence.slice(arg(inputs, "length")?).map_err(err)?;
    Ok(Produced::from([("out.silence".to_string(), slice)]))
}

/// One `repaint_masks` configuration, with the reference's own bookkeeping to check ours against.
#[derive(Deserialize)]
struct RepaintConfig {
    index: usize,
    src_samples: usize,
    repainting_ranges: Vec<(f64, f64)>,
    repainting_strength: f32,
    padded_samples: usize,
    padding_frames_left: usize,
    padding_frames_right: usize,
    shifted_ranges: Vec<(f64, f64)>,
    latent_frames: usize,
}

fn repaint_masks(inputs: &Inputs, checkpoint: &Checkpoint) -> Result<Produced, String> {
    let silence = SilenceLatent::load(checkpoint).map_err(err)?;
    let grid = FrameGrid::from_vae(&checkpoint.vae);
    let mut produced = Produced::new();
    for cfg in arg::<Vec<RepaintConfig>>(inputs, "configs")? {
        let padding = reference_padding(&cfg.repainting_ranges, cfg.src_samples, grid).map_err(err)?;
        let ours = (padding.left, padding.right, cfg.src_samples + padding.left + padding.right);
        let theirs = (cfg.padding_frames_left, cfg.padding_frames_right, cfg.padded_samples);
        let same_ranges = padding.ranges.len() == cfg.shifted_ranges.len()
            && padding
                .ranges
                .iter()
                .zip(&cfg.shifted_ranges)
                .all(|(a, b)| (a.0 - b.0).abs() < 1e-12 && (a.1 - b.1).abs() < 1e-12);
        if ours != theirs || !same_ranges {
            return Err(format!(
                "config {}: padding (left, right, total) {ours:?} and ranges {:?}, reference {theirs:?} and {:?}",
                cfg.index, padding.ranges, cfg.shifted_ranges
            ));
        }
        let src = inputs.tensor(&format!("in.src_latents_{:02}", cfg.index))?;
        let frames = src.dim(1).map_err(err)?;
        if frames != cfg.latent_frames {
            return Err(format!("config {}: {frames} latent frames, the case says {}", cfg.index, cfg.latent_frames));
        }
        let mask = reference_denoise_mask(frames, &padding, cfg.repainting_strength, grid).map_err(err)?;
        let masked = fill_with_silence(&src, &mask, &silence).map_err(err)?;
        let mask = Tensor::from_vec(mask, (1, frames, 1), src.device()).map_err(err)?;
        produced.insert(format!("out.denoise_mask_{:02}", cfg.index), mask);
        produced.insert(format!("out.masked_src_latents_{:02}", cfg.index), masked);
    }
    Ok(produced)
}
