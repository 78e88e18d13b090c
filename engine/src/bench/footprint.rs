//! Parameter counts of each component at a given geometry, as stored in the checkpoint (spec §1, §11), so a
//! benchmark group can be checked against a weight budget before anything is built.

use crate::model::config::{AceStepConfig, Qwen3Config, VaeConfig};
use crate::model::layers::TransformerDims;

/// Kernel taps of the VAE's length-preserving convs (residual `conv1`, decoder `conv1`/`conv2`).
const VAE_KERNEL: u64 = 7;
/// Kernel taps of the VAE encoder's final conv.
const VAE_ENCODER_OUT_KERNEL: u64 = 3;
/// Width of the sinusoidal timestep features.
const TIMESTEP_FEATURES: u64 = 256;
/// AdaLN modulation rows per DiT block.
const BLOCK_MODULATIONS: u64 = 6;

fn attention(d: &TransformerDims) -> u64 {
    let (h, q, kv) = (d.hidden as u64, (d.heads * d.head_dim) as u64, (d.kv_heads * d.head_dim) as u64);
    2 * h * q + 2 * h * kv + 2 * d.head_dim as u64
}

fn mlp(d: &TransformerDims) -> u64 {
    3 * d.hidden as u64 * d.intermediate as u64
}

/// A pre-norm encoder layer: attention, MLP, two norms.
fn encoder_layer(d: &TransformerDims) -> u64 {
    attention(d) + mlp(d) + 2 * d.hidden as u64
}

/// `layers.{0..n}` plus the final norm.
fn stack(d: &TransformerDims, layers: usize) -> u64 {
    layers as u64 * encoder_layer(d) + d.hidden as u64
}

fn linear(inputs: usize, outputs: usize, bias: bool) -> u64 {
    (inputs * outputs + if bias { outputs } else { 0 }) as u64
}

fn qwen3_dims(cfg: &Qwen3Config) -> TransformerDims {
    TransformerDims {
        hidden: cfg.hidden_size,
        intermediate: cfg.intermediate_size,
        heads: cfg.num_attention_heads,
        kv_heads: cfg.num_key_value_heads,
        head_dim: cfg.head_dim,
        eps: cfg.rms_norm_eps,
    }
}

/// Qwen3 text encoder: embedding table, causal layers, final norm.
pub(super) fn text_encoder(cfg: &Qwen3Config) -> u64 {
    (cfg.vocab_size * cfg.hidden_size) as u64 + stack(&qwen3_dims(cfg), cfg.num_hidden_layers)
}

/// Condition encoder (`encoder.*` + `null_condition_emb`): text projector, lyric and timbre encoders.
pub(super) fn condition_encoder(cfg: &AceStepConfig) -> u64 {
    let (d, h) = (cfg.transformer_dims(), cfg.hidden_size);
    let lyric = linear(cfg.text_hidden_dim, h, true) + stack(&d, cfg.num_lyric_encoder_hidden_layers);
    // The timbre encoder's `special_token` is stored although unused.
    let timbre = linear(cfg.timbre_hidden_dim, h, true) + stack(&d, cfg.num_timbre_encoder_hidden_layers) + h as u64;
    linear(cfg.text_hidden_dim, h, false) + lyric + timbre + h as u64
}

/// DiT (`decoder.*`): patch embedding, two timestep embedders, condition embedder, blocks, output head.
pub(super) fn dit(cfg: &AceStepConfig) -> u64 {
    let (d, h) = (cfg.transformer_dims(), cfg.hidden_size);
    let timestep = linear(TIMESTEP_FEATURES as usize, h, true)
        + linear(h, h, true)
        + linear(h, BLOCK_MODULATIONS as usize * h, true);
    let block = 2 * attention(&d) + mlp(&d) + (3 + BLOCK_MODULATIONS) * h as u64;
    let latent = cfg.audio_acoustic_hidden_dim;
    linear(cfg.in_channels * cfg.patch_size, h, true)
        + 2 * timestep
        + linear(cfg.encoder_width(), h, true)
        + cfg.num_hidden_layers as u64 * block
        + 3 * h as u64
        + (h * latent * cfg.patch_size + latent) as u64
}

/// Audio tokenizer (`tokenizer.*`: projection, attention pooler, FSQ projections) and detokenizer.
pub(super) fn audio_tokenizers(cfg: &AceStepConfig) -> u64 {
    let (d, h) = (cfg.transformer_dims(), cfg.hidden_size);
    let (latent, pool) = (cfg.audio_acoustic_hidden_dim, cfg.pool_window_size as u64);
    let levels = cfg.fsq_input_levels.len();
    let pooler = linear(h, h, true) + h as u64 + stack(&d, cfg.num_attention_pooler_hidden_layers);
    let tokenizer = linear(latent, h, true) + pooler + linear(h, levels, true) + linear(levels, h, true);
    // One learned slot vector per latent frame of a 5 Hz token.
    let detokenizer = linear(h, h, true)
        + pool * h as u64
        + stack(&d, cfg.num_attention_pooler_hidden_layers)
        + linear(h, latent, true);
    tokenizer + detokenizer
}

/// A weight-normed conv: `weight_v` `[a, b, k]`, `weight_g` over `g` channels, optional bias over `bias`.
fn vae_conv(a: u64, b: u64, kernel: u64, g: u64, bias: u64) -> u64 {
    a * b * kernel + g + bias
}

/// One residual unit at `c` channels: two Snakes (α, β each) and convs k=7 and k=1.
fn residual_unit(c: u64) -> u64 {
    2 * 2 * c + vae_conv(c, c, VAE_KERNEL, c, c) + vae_conv(c, c, 1, c, c)
}

/// VAE encoder and decoder (`AutoencoderOobleck`), weight-norm pairs counted as stored.
pub(super) fn vae(cfg: &VaeConfig) -> u64 {
    let base = cfg.decoder_channels as u64;
    let width = |level: usize| base * level.checked_sub(1).map_or(1, |i| cfg.channel_multiples[i]) as u64;
    let levels = cfg.downsampling_ratios.len();
    let (audio, latent) = (cfg.audio_channels as u64, cfg.decoder_input_channels as u64);
    let encoder_base = cfg.encoder_hidden_size as u64;
    let encoder_width = |level: usize| encoder_base * width(level) / base;
    let mut encoder = vae_conv(encoder_base, audio, VAE_KERNEL, encoder_base, encoder_base);
    for (i, &stride) in cfg.downsampling_ratios.iter().enumerate() {
        let (d, o) = (encoder_width(i), encoder_width(i + 1));
        encoder += 3 * residual_unit(d) + 2 * d + vae_conv(o, d, 2 * stride as u64, o, o);
    }
    let top = encoder_width(levels);
    encoder += 2 * top + vae_conv(2 * latent, top, VAE_ENCODER_OUT_KERNEL, 2 * latent, 2 * latent);
    let mut decoder = vae_conv(width(levels), latent, VAE_KERNEL, width(levels), width(levels));
    for (i, &stride) in cfg.downsampling_ratios.iter().rev().enumerate() {
        let (d, o) = (width(levels - i), width(levels - i - 1));
        decoder += 2 * d + vae_conv(d, o, 2 * stride as u64, d, o) + 3 * residual_unit(o);
    }
    decoder += 2 * base + vae_conv(audio, base, VAE_KERNEL, audio, 0);
    encoder + decoder
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_match_the_real_checkpoints_parameter_totals() {
        // Spec §1: the turbo model file, its DiT part and Qwen3-Embedding-0.6B. The VAE total is DiffSynth
        // 2.1.12's `AceStepVAE()` parameter count (spec §1 prints 168,660,608, 34,818 short of it).
        let cfg = AceStepConfig::turbo();
        assert_eq!(dit(&cfg), 1_575_458_880);
        assert_eq!(condition_encoder(&cfg), 608_369_664);
        assert_eq!(audio_tokenizers(&cfg), 105_032_198 + 105_011_776);
        assert_eq!(dit(&cfg) + condition_encoder(&cfg) + audio_tokenizers(&cfg), 2_393_872_518);
        assert_eq!(vae(&VaeConfig::oobleck_48k()), 168_695_426);
        assert_eq!(text_encoder(&Qwen3Config::embedding_0_6b()), 595_776_512);
    }
}
