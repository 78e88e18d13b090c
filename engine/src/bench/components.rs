//! The component workloads (docs/acestep-model.md §12): Qwen3 on a caption, the condition encoder, single DiT steps, a
//! full turbo diffusion, and the VAE's encode and decode of a clip, each on the real geometry. The DiT comes from the
//! engine's components, as in a job: under a VRAM budget it streams the blocks that do not fit.

use std::ops::ControlFlow;

use candle_core::Tensor;

use super::{
    checkpoint, latent_frames, normal, silence, test_clip, weights, BenchOptions, Timer, CAPTION_TOKENS, CLIP_SECONDS,
    ENCODER_STATES, LONG_SECONDS, LYRIC_TOKENS, SHIFT,
};
use crate::error::Result;
use crate::model::condition::ConditionEncoder;
use crate::model::config::{AceStepConfig, Qwen3Config, VaeConfig};
use crate::model::dit::Dit;
use crate::model::scheduler::{euler_step, Schedule};
use crate::model::text_encoder::TextEncoder;
use crate::model::vae::{Tiling, VaeDecoder, VaeEncoder};
use crate::pipeline::Components;
use crate::residency::{ResidencyStats, Shared, Stage};

/// `count` token ids spread over the vocabulary (the values do not change the work).
fn token_ids(count: usize, vocab: usize) -> Vec<u32> {
    (0..count).map(|i| ((i * 7919 + 13) % vocab) as u32).collect()
}

/// Qwen3-Embedding-0.6B encoding a caption prompt.
pub(super) fn text(options: &BenchOptions, timer: &mut Timer) -> Result<()> {
    let cfg = Qwen3Config::embedding_0_6b();
    let encoder = TextEncoder::new(&weights(options), &cfg)?;
    let ids = token_ids(CAPTION_TOKENS, cfg.vocab_size);
    timer.time("text_encoder", format!("{CAPTION_TOKENS} caption tokens"), || encoder.encode(&ids).map(drop))
}

/// The condition encoder: text projection, lyric encoder, timbre encoder on one 30 s reference, packing.
pub(super) fn condition(options: &BenchOptions, timer: &mut Timer) -> Result<()> {
    let cfg = AceStepConfig::for_variant(options.variant);
    let encoder = ConditionEncoder::new(&weights(options), &cfg)?;
    let text = normal(options, (1, CAPTION_TOKENS, cfg.text_hidden_dim))?;
    let lyrics = normal(options, (1, LYRIC_TOKENS, cfg.text_hidden_dim))?;
    let reference = normal(options, (1, cfg.timbre_fix_frame, cfg.timbre_hidden_dim))?;
    let detail = format!(
        "{LYRIC_TOKENS} lyric + {CAPTION_TOKENS} caption tokens, 1 reference of {} frames",
        cfg.timbre_fix_frame
    );
    timer.time("condition_encoder", detail, || {
        let timbre = encoder.timbre(&reference)?;
        encoder.encode(&text, &lyrics, &timbre).map(drop)
    })
}

/// Enters the sampling stage over `frames` latent frames and one condition of [`ENCODER_STATES`] states, as a
/// job does, and returns the DiT with the blocks that stage keeps resident.
fn sampling_dit(components: &mut Components, frames: usize) -> Result<Shared<Dit>> {
    components.enter(Stage::Denoise { frames, encoder_len: ENCODER_STATES, conditions: 1, cfg: false })?;
    components.dit()
}

/// DiT steps at 10 s and 30 s, and the full 8-step turbo diffusion of 10 s; returns the residency accounting.
pub(super) fn dit(options: &BenchOptions, timer: &mut Timer) -> Result<ResidencyStats> {
    let cfg = AceStepConfig::for_variant(options.variant);
    let mut components = Components::with_assets(checkpoint(options), None, silence(options)?, options.budget)?;
    let latent = cfg.audio_acoustic_hidden_dim;
    let context_channels = cfg.in_channels - latent;
    let states = normal(options, (1, ENCODER_STATES, cfg.encoder_width()))?;
    for (name, seconds) in [("dit_step_10s", CLIP_SECONDS), ("dit_step_30s", LONG_SECONDS)] {
        if !timer.wants(name) {
            continue;
        }
        let frames = latent_frames(seconds);
        let dit = sampling_dit(&mut components, frames)?;
        let context = dit.shell().prepare_context(&normal(options, (1, frames, context_channels))?)?;
        let cross = dit.cross_cache(&states)?;
        let latents = normal(options, (1, frames, latent))?;
        let timestep = dit.shell().timestep(1000.0)?;
        let detail = format!("T={frames} frames, L_enc={ENCODER_STATES}, condition K/V cached");
        timer.time(name, detail, || dit.forward(&latents, &context, &cross, &timestep).map(drop))?;
    }
    if timer.wants("diffusion_10s") {
        let frames = latent_frames(CLIP_SECONDS);
        let dit = sampling_dit(&mut components, frames)?;
        let context_latents = normal(options, (1, frames, context_channels))?;
        let noise = normal(options, (1, frames, latent))?;
        let schedule = Schedule::turbo(SHIFT);
        let detail = format!(
            "{} turbo steps, T={frames}, L_enc={ENCODER_STATES}, context + condition K/V included",
            schedule.len()
        );
        timer.time("diffusion_10s", detail, || {
            let context = dit.shell().prepare_context(&context_latents)?;
            let cross = dit.cross_cache(&states)?;
            let mut x = noise.clone();
            for (sigma, sigma_next) in schedule.steps() {
                let v = dit.forward(&x, &context, &cross, &dit.shell().timestep(sigma * 1000.0)?)?;
                x = euler_step(&x, &v, sigma, sigma_next)?;
            }
            Ok(())
        })?;
    }
    Ok(components.stats())
}

/// VAE encode of a clip and decode of its latents, with the production tilings.
pub(super) fn vae(options: &BenchOptions, timer: &mut Timer) -> Result<()> {
    let cfg = VaeConfig::oobleck_48k();
    if timer.wants("vae_encode_10s") {
        let encoder = VaeEncoder::load(&cfg, &weights(options))?;
        let audio = test_clip(CLIP_SECONDS, 0);
        let samples = audio.len();
        let wave = Tensor::from_vec(audio.channels.concat(), (1, audio.channels.len(), samples), &options.device)?;
        let detail = format!("{samples} stereo samples, tiles of {} frames", Tiling::ENCODE.chunk);
        timer.time("vae_encode_10s", detail, || {
            encoder.encode_tiled(&wave, Tiling::ENCODE, &mut |_, _| ControlFlow::Continue(())).map(drop)
        })?;
    }
    if timer.wants("vae_decode_10s") {
        let decoder = VaeDecoder::load(&cfg, &weights(options))?;
        let frames = latent_frames(CLIP_SECONDS);
        let latents = normal(options, (1, cfg.decoder_input_channels, frames))?;
        let detail = format!("T={frames} frames, tiles of {} frames", Tiling::DECODE.chunk);
        timer.time("vae_decode_10s", detail, || {
            decoder.decode_tiled(&latents, Tiling::DECODE, &mut |_, _| ControlFlow::Continue(())).map(drop)
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids_stay_inside_the_vocabulary() {
        let ids = token_ids(500, 151_669);
        assert_eq!(ids.len(), 500);
        assert!(ids.iter().all(|&id| (id as usize) < 151_669));
    }
}
