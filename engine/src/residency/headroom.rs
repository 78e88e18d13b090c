//! Activation headroom of each stage (docs/acestep-model.md §12 memory): an analytic estimate from the job's shapes,
//! booked next to the resident weights against the VRAM budget. Each formula adds up the tensors alive at the stage's
//! widest moment, every transient copy counted once; `e` is the compute dtype's size, attention scores are f32.
//! `engine/tests/headroom.rs` holds each formula to the peak measured on the CPU.

use super::inventory::{elements, vae_file};
use super::Stage;
use crate::kernels::mask::QUERY_CHUNK;
use crate::kernels::storage::runs_cpu_f32;
use crate::model::checkpoint::Checkpoint;
use crate::model::config::VaeConfig;
use crate::model::dit::BLOCK_MODULATIONS;
use crate::model::layers::TransformerDims;
use crate::model::vae::Tiling;

/// Bytes of an f32 activation element (attention scores, RMSNorm, the whole VAE).
const F32: u64 = 4;
/// Live `[rows, width]` f32 tensors at the VAE's widest level on the CPU: a residual unit's input, its padded
/// Snake output, and the dilated conv's phase-gathered input and product (then that product and its reordering).
const VAE_LIVE_ACTIVATIONS: u64 = 4;
/// The same on a GPU, where the Snake is composed of candle ops and each conv tap is its own GEMM: the unit's
/// input, the padded Snake output, and the running sum, the next tap's product and their new sum (the second
/// Snake holds as many: the unit's input, its own input, and three steps of its composition).
const VAE_LIVE_ACTIVATIONS_GPU: u64 = 5;
/// Rows that three of those tensors carry beyond the level's own: the Snake's zero padding (27 each side for
/// kernel 7 at dilation 9), the phase gather (rounded up to whole phases of 9, plus 6 taps) and its product.
const VAE_HALO_ROWS: u64 = 54 + 68 + 62;
/// Latent-sized tensors alive across the sampling loop: the state, the conditional and null velocities, the
/// noise, the clean source, the repaint reference, the Euler update and the mask blend.
const DENOISE_LATENT_COPIES: u64 = 8;

/// Rows of `hidden` alive next to a DiT block's activations: the step's timestep conditioning (`temb` and the
/// six AdaLN rows) and, as much again, the block's modulation table and its `1 + scale` rows.
const TIMESTEP_ROWS: u64 = 2 * (1 + BLOCK_MODULATIONS as u64);

/// Copies of an attention's f32 scores alive at once: the scores, the probabilities and their cast.
const SCORE_COPIES: u64 = 3;
/// The same on the CPU in f32, where the masked softmax runs in place on the scores.
const FUSED_SCORE_COPIES: u64 = 1;

/// One attention's query chunk of every head against `keys` keys, `copies` times in f32:
/// `copies · 4 · batch · heads · min(tokens, 512) · keys`.
fn attention_scores(d: &TransformerDims, batch: usize, tokens: usize, keys: usize, copies: u64) -> u64 {
    copies * F32 * (batch * d.heads * tokens.min(QUERY_CHUNK) * keys) as u64
}

/// One pre-norm transformer layer over `batch` sequences of `tokens` queries seeing `keys` keys:
/// `e · rows · (5·H + 3·q + 4·kv + 4·I)` for the residual stream and its norm copies, the queries (projection,
/// norm, rotation), keys and values (two copies each) and the MLP (gate, up, product, output), plus the scores
/// (`score_copies` of them).
fn transformer_layer(d: &TransformerDims, batch: usize, tokens: usize, keys: usize, e: u64, score_copies: u64) -> u64 {
    let rows = (batch * tokens) as u64;
    let (q, kv) = ((d.heads * d.head_dim) as u64, (d.kv_heads * d.head_dim) as u64);
    let widths = 5 * d.hidden as u64 + 3 * q + 4 * kv + 4 * d.intermediate as u64;
    e * rows * widths + attention_scores(d, batch, tokens, keys, score_copies)
}

/// Elements of the widest `[rows, width]` activation of a VAE side whose full-rate level has `base` channels
/// over `samples` rows; level `i + 1` has `samples / Π strides[..=i]` rows of `base · channel_multiples[i]`.
fn widest_vae_level(cfg: &VaeConfig, base: usize, samples: usize) -> u64 {
    let mut rows = samples;
    let mut widest = rows * base;
    for (stride, multiple) in cfg.downsampling_ratios.iter().zip(&cfg.channel_multiples) {
        rows /= stride;
        widest = widest.max(rows * base * multiple);
    }
    widest as u64
}

/// Bytes alive at a VAE side's widest moment over a window of `samples` rows: `live` tensors of the widest level
/// ([`VAE_LIVE_ACTIVATIONS`] on the CPU, [`VAE_LIVE_ACTIVATIONS_GPU`] elsewhere), their halo rows at the widest
/// width, and the CPU's dilated conv's u32 row indices (its gather vector may hold twice its length).
fn vae_window(cfg: &VaeConfig, base: usize, samples: usize, live: u64) -> u64 {
    let widest_width = base * cfg.channel_multiples.iter().copied().fold(1, usize::max);
    let indices = 2 * (samples as u64 + VAE_HALO_ROWS);
    F32 * (live * widest_vae_level(cfg, base, samples) + VAE_HALO_ROWS * widest_width as u64 + indices)
}

/// Elements of the VAE decoder's largest conv weight (`weight_v`; the first upsampling conv at the real
/// geometry): a weight not stored in f32 gets an f32 copy of it for its GEMMs.
fn largest_decoder_weight(cfg: &VaeConfig) -> u64 {
    let file = vae_file(cfg);
    let weights = file.under("decoder").filter(|(key, _)| key.ends_with("weight_v"));
    weights.map(|(_, shape)| elements(shape)).max().unwrap_or(0)
}

/// The activation bytes `stage` may hold at once on `ckpt`'s geometry and dtype.
pub fn activation_bytes(ckpt: &Checkpoint, stage: Stage) -> u64 {
    let (cfg, e) = (&ckpt.acestep, ckpt.dtype().size_in_bytes() as u64);
    // The DiT's widths, and the encoder side's (condition encoder, tokenizer, detokenizer: narrower on XL).
    let (d, enc) = (cfg.transformer_dims(), cfg.encoder_side().transformer_dims());
    let vae = &ckpt.vae;
    let vae_live = if ckpt.device().is_cpu() { VAE_LIVE_ACTIVATIONS } else { VAE_LIVE_ACTIVATIONS_GPU };
    let sc = if runs_cpu_f32(ckpt.device(), ckpt.dtype()) { FUSED_SCORE_COPIES } else { SCORE_COPIES };
    match stage {
        // The longest caption through the Qwen3 layers; every prompt's caption states and lyric embeddings.
        Stage::Text(p) => {
            let q = ckpt.qwen3.transformer_dims();
            transformer_layer(&q, 1, p.caption_tokens, p.caption_tokens, e, sc)
                + e * (p.prompts * (p.caption_tokens + p.lyric_tokens) * q.hidden) as u64
        }
        // The longer of the lyric encoder and the timbre encoder (which derives the default timbre at load); the
        // inputs; every prompt's packed and null states.
        Stage::Condition(p) => {
            let lyric = transformer_layer(&enc, 1, p.lyric_tokens, p.lyric_tokens, e, sc);
            let timbre = transformer_layer(&enc, 1, cfg.timbre_fix_frame, cfg.timbre_fix_frame, e, sc);
            let inputs = (p.caption_tokens + p.lyric_tokens) * cfg.text_hidden_dim;
            let packed = (p.lyric_tokens + 1 + p.caption_tokens) * enc.hidden;
            lyric.max(timbre) + e * (p.prompts * (inputs + 2 * packed)) as u64
        }
        // The widest moment of one tile window (the last one reaches up to a frame further), plus the f32 input
        // and its channels-last copy.
        Stage::Encode { samples } => {
            let window = samples.min((Tiling::ENCODE.chunk + 1) * vae.hop());
            vae_window(vae, vae.encoder_hidden_size, window, vae_live) + 2 * F32 * (samples * vae.audio_channels) as u64
        }
        // The pooler over every window (one extra token each, in f32 whatever the dtype) or the detokenizer, and
        // the latents and hints.
        Stage::Hints { frames } => {
            let (pool, windows) = (cfg.pool_window_size, frames.div_ceil(cfg.pool_window_size));
            let pooler = transformer_layer(&enc, windows, pool + 1, pool + 1, F32, sc);
            let detokenizer = transformer_layer(&enc, windows, pool, pool, e, sc);
            pooler.max(detokenizer) + e * (windows * pool * (2 * cfg.audio_acoustic_hidden_dim + enc.hidden)) as u64
        }
        // The wider of one block (self-attention over the patched tokens, cross-attention onto the encoder
        // states, two AdaLN copies, the timestep rows; with CFG the conditional and null passes run as one batch of
        // two) and a condition's K/V in the making (the embedded encoder states and one layer's keys: projection,
        // f32 norm input and output); each condition's projected context, RoPE table and cross-attention K/V of
        // every block (twice with CFG); and the latents of the sampling loop.
        Stage::Denoise { frames, encoder_len, conditions, cfg: guided } => {
            let tokens = frames.div_ceil(cfg.patch_size);
            let kv = d.kv_heads * d.head_dim;
            let branches = 1 + guided as usize;
            let block = transformer_layer(&d, branches, tokens, tokens, e, sc)
                + attention_scores(&d, branches, tokens, encoder_len, sc)
                + e * ((2 * branches * tokens) as u64 + TIMESTEP_ROWS) * cfg.hidden_size as u64;
            let caching =
                e * (encoder_len * (cfg.hidden_size + enc.hidden)) as u64 + (e + 2 * F32) * (encoder_len * kv) as u64;
            let cross = branches * cfg.num_hidden_layers * 2 * kv * encoder_len;
            let per_condition = e * (tokens * (cfg.hidden_size + cfg.head_dim) + cross) as u64;
            block.max(caching)
                + conditions as u64 * per_condition
                + DENOISE_LATENT_COPIES * e * (frames * cfg.audio_acoustic_hidden_dim) as u64
        }
        // The widest moment of one tile window, plus the decoded tiles and their concatenation, and the f32 copy
        // a conv makes of its weight when the weights are not f32 (measured on a GPU: 160 MiB at one frame).
        Stage::Decode { frames } => {
            let window = frames.min(Tiling::DECODE.chunk) * vae.hop();
            let audio = 2 * F32 * (frames * vae.hop() * vae.audio_channels) as u64;
            let weight_copy = if e == F32 { 0 } else { F32 * largest_decoder_weight(vae) };
            vae_window(vae, vae.decoder_channels, window, vae_live) + audio + weight_copy
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;

    fn real(dtype: DType) -> Checkpoint {
        Checkpoint::random_turbo(0, dtype, &Device::Cpu)
    }

    #[test]
    fn widest_vae_level_is_the_largest_rows_times_width() {
        let cfg = VaeConfig::oobleck_48k();
        // Level 0: 1920 rows × 128; level 1: 960 × 256 — equal; deeper levels are narrower in rows·width.
        assert_eq!(widest_vae_level(&cfg, 128, 1920), 1920 * 128);
        assert_eq!(widest_vae_level(&cfg, 1, 12), 12);
    }

    #[test]
    fn the_largest_decoder_weight_is_the_first_upsampling_conv() {
        // [2·2048, 10·1024]: the only weight larger than the 160 MiB measured for a one-frame bf16 decode.
        assert_eq!(largest_decoder_weight(&VaeConfig::oobleck_48k()), 2 * 2048 * 10 * 1024);
        let (f32_bytes, bf16_bytes) = (
            activation_bytes(&real(DType::F32), Stage::Decode { frames: 1 }),
            activation_bytes(&real(DType::BF16), Stage::Decode { frames: 1 }),
        );
        assert_eq!(bf16_bytes - f32_bytes, 4 * 2 * 2048 * 10 * 1024);
    }

    #[test]
    fn decode_headroom_of_a_full_tile_is_about_two_gib_at_the_real_geometry() {
        // Tiling::DECODE documents ≈2 GB per 512-frame window.
        let bytes = activation_bytes(&real(DType::BF16), Stage::Decode { frames: 512 });
        assert!((1_500_000_000..2_500_000_000).contains(&bytes), "{bytes}");
    }

    #[test]
    fn denoise_headroom_grows_with_length_guidance_and_conditions() {
        let ckpt = real(DType::BF16);
        let at = |frames, conditions, cfg| {
            activation_bytes(&ckpt, Stage::Denoise { frames, encoder_len: 300, conditions, cfg })
        };
        assert!(at(750, 1, false) < at(1500, 1, false));
        assert!(at(750, 1, false) < at(750, 1, true));
        assert!(at(750, 1, true) < at(750, 2, true));
    }

    #[test]
    fn vae_headroom_stops_growing_past_one_tile_except_for_the_audio_itself() {
        let ckpt = real(DType::F32);
        let hop = ckpt.vae.hop();
        let tile = |samples| activation_bytes(&ckpt, Stage::Encode { samples });
        let audio = |samples: usize| 2 * F32 * (samples * 2) as u64;
        let long = 4 * Tiling::ENCODE.chunk * hop;
        assert_eq!(tile(long) - audio(long), tile(2 * long) - audio(2 * long));
    }
}
