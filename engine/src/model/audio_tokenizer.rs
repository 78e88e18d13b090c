//! Audio tokenizer, FSQ and detokenizer (`tokenizer.*`, `detokenizer.*`, docs/acestep-model.md §7): 25 Hz latents are
//! pooled into 5 Hz vectors and quantized to FSQ codes; codes (or an LM audio-code string) are detokenized back into
//! the 25 Hz hints of the cover context.

use crate::model::linear::Linear;
use candle_core::{DType, Module, Tensor};

use super::checkpoint::Checkpoint;
use super::config::AceStepConfig;
use super::layers::{linear, Rope, TransformerStack};
use super::silence::SilenceLatent;
use super::weights::Weights;
use crate::error::{EngineError, Result};

/// Opening of an audio-code token in LM output: `<|audio_code_N|>`.
const CODE_PREFIX: &str = "<|audio_code_";
/// Closing of an audio-code token.
const CODE_SUFFIX: &str = "|>";

/// The single-codebook finite scalar quantizer `tokenizer.quantizer` (vector-quantize-pytorch ≥ 1.26
/// `ResidualFSQ` semantics: soft clamp, hard clamp, symmetric grid). Projections and grid math run in f32.
#[derive(Debug, Clone)]
pub struct Fsq {
    levels: Vec<u32>,
    project_in: Linear,
    project_out: Linear,
    dtype: DType,
}

/// FSQ output for a sequence of vectors.
#[derive(Debug, Clone)]
pub struct Quantized {
    /// Codebook indices `[B, T5]` (u32, `0..codebook_size`).
    pub indices: Tensor,
    /// `project_out` of the codes, `[B, T5, fsq_dim]` in the model dtype.
    pub vectors: Tensor,
}

impl Fsq {
    /// Loads `project_in` / `project_out` under `vb` (`tokenizer.quantizer`).
    pub fn new(vb: &Weights, cfg: &AceStepConfig) -> Result<Self> {
        let f32_vb = vb.with_dtype(DType::F32);
        let codebook_dim = cfg.fsq_input_levels.len();
        Ok(Self {
            levels: cfg.fsq_input_levels.clone(),
            project_in: linear(&f32_vb, "project_in", cfg.fsq_dim, codebook_dim, true)?,
            project_out: linear(&f32_vb, "project_out", codebook_dim, cfg.fsq_dim, true)?,
            dtype: vb.dtype(),
        })
    }

    /// Number of codes (the product of the levels; 64000 for ACE-Step).
    pub fn codebook_size(&self) -> u32 {
        self.levels.iter().product()
    }

    /// `project_in` in f32: `[.., fsq_dim]` → `[.., levels]`, before the soft clamp.
    pub fn project_in(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.project_in.forward(&x.to_dtype(DType::F32)?)?)
    }

    /// Quantizes `x` `[B, T5, fsq_dim]`: `project_in`, per-dimension soft clamp `tanh(z/c)·c` with
    /// `c = 1 + 1/(L−1)`, hard clamp to ±1, grid level `k = ⌊(L−1)(z+1)/2 + 0.5⌋`, then `project_out`.
    pub fn quantize(&self, x: &Tensor) -> Result<Quantized> {
        let z = self.project_in(x)?;
        let outer = &z.dims()[..z.rank() - 1];
        let values: Vec<f32> = z.flatten_all()?.to_vec1()?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(EngineError::NonFinite { what: "the audio tokenizer's pooled latents".into() });
        }
        let indices: Vec<u32> = values
            .chunks_exact(self.levels.len())
            .map(|row| self.pack(&row.iter().zip(&self.levels).map(|(&z, &l)| grid_level(z, l)).collect::<Vec<_>>()))
            .collect();
        let indices = Tensor::from_vec(indices, outer, x.device())?;
        let vectors = self.dequantize(&indices)?;
        Ok(Quantized { indices, vectors })
    }

    /// Codebook rows of `indices` (u32, any shape `[..]`): `[.., levels]` f32 with values `2k/(L−1) − 1`.
    pub fn codes(&self, indices: &Tensor) -> Result<Tensor> {
        let flat: Vec<u32> = indices.flatten_all()?.to_dtype(DType::U32)?.to_vec1()?;
        let size = self.codebook_size();
        if let Some(bad) = flat.iter().find(|&&i| i >= size) {
            return Err(EngineError::invalid(format!("FSQ index {bad} is outside the codebook (0..{size})")));
        }
        let codes: Vec<f32> = flat
            .iter()
            .flat_map(|&i| self.unpack(i).into_iter().zip(&self.levels).map(|(k, &l)| grid_value(k, l)))
            .collect();
        let mut shape = indices.dims().to_vec();
        shape.push(self.levels.len());
        Ok(Tensor::from_vec(codes, shape, indices.device())?)
    }

    /// `project_out(codes(indices))`: `[..]` → `[.., fsq_dim]` in the model dtype.
    pub fn dequantize(&self, indices: &Tensor) -> Result<Tensor> {
        Ok(self.project_out.forward(&self.codes(indices)?)?.to_dtype(self.dtype)?)
    }

    /// Flat index `Σ k_d · basis_d`, basis = running product of the levels (1, 8, 64, 512, 2560, 12800).
    fn pack(&self, grid: &[u32]) -> u32 {
        grid.iter().zip(&self.levels).rev().fold(0, |index, (&k, &l)| index * l + k)
    }

    /// Per-dimension grid levels `k_d = (index / basis_d) mod L_d`.
    fn unpack(&self, index: u32) -> Vec<u32> {
        let mut rest = index;
        self.levels
            .iter()
            .map(|&l| {
                let k = rest % l;
                rest /= l;
                k
            })
            .collect()
    }
}

/// Grid level of one projected value: soft clamp with `c = 1 + 1/(L−1)`, hard clamp, then
/// `⌊(L−1)(z+1)/2 + 0.5⌋`, in the reference's f32 operation order.
fn grid_level(z: f32, levels: u32) -> u32 {
    let steps = (levels - 1) as f32;
    let c = 1.0 + 1.0 / steps;
    let z = ((z / c).tanh() * c).clamp(-1.0, 1.0);
    ((steps * (z + 1.0) / 2.0 + 0.5).floor() as u32).min(levels - 1)
}

/// Code value of grid level `k`: `(2/(L−1))·k − 1` in f32, as the reference computes it.
fn grid_value(k: u32, levels: u32) -> f32 {
    (2.0 / (levels - 1) as f32) * k as f32 - 1.0
}

/// The codes of every `<|audio_code_N|>` token in `text`, in order, each clamped to `0..codebook_size`;
/// any other text (and malformed tokens) is ignored.
pub fn parse_audio_codes(text: &str, codebook_size: u32) -> Vec<u32> {
    let max = codebook_size.saturating_sub(1) as u64;
    let mut codes = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(CODE_PREFIX) {
        let after = &rest[at + CODE_PREFIX.len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && after[digits..].starts_with(CODE_SUFFIX) {
            let value =
                after.bytes().take(digits).fold(0u64, |v, d| v.saturating_mul(10).saturating_add((d - b'0') as u64));
            codes.push(value.min(max) as u32);
            rest = &after[digits + CODE_SUFFIX.len()..];
        } else {
            // '<' is one byte, so this stays on a char boundary; scanning resumes like a regex search.
            rest = &rest[at + 1..];
        }
    }
    codes
}

/// `tokenizer.*`: `audio_acoustic_proj`, the attention pooler (one learned token prepended to every window
/// of `pool_window_size` frames; its output is the window's vector) and the FSQ.
///
/// It always computes in f32, whatever the model dtype: FSQ codes are discrete, and the pooler's bf16 rounding
/// alone flips a share of them (measured on the fixture model), which changes a cover's structure between
/// devices. The tokenizer is small (~0.4 GB in f32 for the real model) and runs once per job.
#[derive(Debug, Clone)]
pub struct AudioTokenizer {
    audio_acoustic_proj: Linear,
    embed_tokens: Linear,
    special_token: Tensor,
    stack: TransformerStack,
    rope: Rope,
    fsq: Fsq,
    pool: usize,
    channels: usize,
}

impl AudioTokenizer {
    /// Loads `tokenizer.*` from the checkpoint's model file.
    pub fn load(ckpt: &Checkpoint) -> Result<Self> {
        Self::new(&ckpt.acestep_weights()?.pp("tokenizer"), &ckpt.acestep)
    }

    /// Loads from a weight source rooted at `tokenizer`, at the encoder-side widths of `cfg`
    /// ([`AceStepConfig::encoder_side`]).
    pub fn new(vb: &Weights, cfg: &AceStepConfig) -> Result<Self> {
        let cfg = &cfg.encoder_side();
        // The FSQ hands its vectors back in the model dtype; everything before it computes in f32.
        let fsq = Fsq::new(&vb.pp("quantizer"), cfg)?;
        let vb = &vb.with_dtype(DType::F32);
        let dims = cfg.transformer_dims();
        let pooler = vb.pp("attention_pooler");
        let pool = cfg.pool_window_size;
        Ok(Self {
            audio_acoustic_proj: linear(vb, "audio_acoustic_proj", cfg.audio_acoustic_hidden_dim, dims.hidden, true)?,
            embed_tokens: linear(&pooler, "embed_tokens", dims.hidden, dims.hidden, true)?,
            special_token: pooler.get(&[1, 1, dims.hidden], "special_token")?,
            stack: TransformerStack::new(&pooler, dims, &cfg.layer_masks(cfg.num_attention_pooler_hidden_layers))?,
            rope: Rope::new(cfg.head_dim, cfg.rope_theta, pool + 1, vb.dtype(), vb.device())?,
            fsq,
            pool,
            channels: cfg.audio_acoustic_hidden_dim,
        })
    }

    /// The quantizer (also needed to decode LM audio codes).
    pub fn fsq(&self) -> &Fsq {
        &self.fsq
    }

    /// Pads latents `[B, T, C]` at the end with the first frames of the silence latent up to a multiple of
    /// the pool window and groups them: `[B, ⌈T/P⌉, P, C]`.
    pub fn windows(&self, latents: &Tensor, silence: &SilenceLatent) -> Result<Tensor> {
        let (b, t, c) = latents.dims3()?;
        if c != self.channels {
            return Err(EngineError::TensorShape {
                name: "audio tokenizer input latents".into(),
                expected: vec![b, t, self.channels],
                found: vec![b, t, c],
            });
        }
        if silence.channels() != c {
            return Err(EngineError::TensorShape {
                name: "silence latent".into(),
                expected: vec![silence.len(), c],
                found: vec![silence.len(), silence.channels()],
            });
        }
        if t == 0 {
            return Err(EngineError::invalid("the audio tokenizer needs at least one latent frame"));
        }
        let pad = (self.pool - t % self.pool) % self.pool;
        let padded = if pad > 0 {
            let fill = silence.slice(pad)?.to_dtype(latents.dtype())?.unsqueeze(0)?.broadcast_as((b, pad, c))?;
            Tensor::cat(&[latents, &fill], 1)?
        } else {
            latents.clone()
        };
        Ok(padded.reshape((b, (t + pad) / self.pool, self.pool, c))?)
    }

    /// Attention pooler on windows `[B, T5, P, C]` → one vector per window `[B, T5, hidden]`.
    pub fn pool(&self, windows: &Tensor) -> Result<Tensor> {
        let (b, t5, p, _) = windows.dims4()?;
        let windows = windows.to_dtype(DType::F32)?;
        let h = self.embed_tokens.forward(&self.audio_acoustic_proj.forward(&windows)?)?;
        let hidden = h.dim(3)?;
        let special = self.special_token.reshape((1, 1, 1, hidden))?.broadcast_as((b, t5, 1, hidden))?;
        let h = Tensor::cat(&[&special, &h], 2)?.reshape((b * t5, p + 1, hidden))?;
        let h = self.stack.forward_first(&h, &self.rope, 1)?;
        Ok(h.reshape((b, t5, hidden))?)
    }

    /// Latents `[B, T, C]` → FSQ indices and quantized vectors at the 5 Hz token rate.
    pub fn tokenize(&self, latents: &Tensor, silence: &SilenceLatent) -> Result<Quantized> {
        self.fsq.quantize(&self.pool(&self.windows(latents, silence)?)?)
    }
}

/// `detokenizer.*`: each 5 Hz vector is embedded, repeated over a window with one learned vector per slot,
/// refined by a short transformer and projected back to latent channels.
#[derive(Debug, Clone)]
pub struct AudioDetokenizer {
    embed_tokens: Linear,
    special_tokens: Tensor,
    stack: TransformerStack,
    rope: Rope,
    proj_out: Linear,
    pool: usize,
}

impl AudioDetokenizer {
    /// Loads `detokenizer.*` from the checkpoint's model file.
    pub fn load(ckpt: &Checkpoint) -> Result<Self> {
        Self::new(&ckpt.acestep_weights()?.pp("detokenizer"), &ckpt.acestep)
    }

    /// Loads from a weight source rooted at `detokenizer`, at the encoder-side widths of `cfg`
    /// ([`AceStepConfig::encoder_side`]).
    pub fn new(vb: &Weights, cfg: &AceStepConfig) -> Result<Self> {
        let cfg = &cfg.encoder_side();
        let dims = cfg.transformer_dims();
        let pool = cfg.pool_window_size;
        Ok(Self {
            embed_tokens: linear(vb, "embed_tokens", dims.hidden, dims.hidden, true)?,
            special_tokens: vb.get(&[1, pool, dims.hidden], "special_tokens")?.squeeze(0)?,
            stack: TransformerStack::new(vb, dims, &cfg.layer_masks(cfg.num_attention_pooler_hidden_layers))?,
            rope: Rope::new(cfg.head_dim, cfg.rope_theta, pool, vb.dtype(), vb.device())?,
            proj_out: linear(vb, "proj_out", dims.hidden, cfg.audio_acoustic_hidden_dim, true)?,
            pool,
        })
    }

    /// Quantized vectors `[B, T5, hidden]` → 25 Hz latents `[B, T5·P, C]` (not cropped).
    pub fn forward(&self, quantized: &Tensor) -> Result<Tensor> {
        let (b, t5, hidden) = quantized.dims3()?;
        let h = self.embed_tokens.forward(quantized)?.unsqueeze(2)?.broadcast_as((b, t5, self.pool, hidden))?;
        let h = h.broadcast_add(&self.special_tokens)?.reshape((b * t5, self.pool, hidden))?;
        let h = self.proj_out.forward(&self.stack.forward(&h, &self.rope)?)?;
        let channels = h.dim(2)?;
        Ok(h.reshape((b, t5 * self.pool, channels))?)
    }

    /// Latents `[1, 5·n, C]` from an LM audio-code string (`<|audio_code_N|>` tokens, other text ignored):
    /// parse, look the codes up in the FSQ grid, `project_out`, detokenize.
    pub fn from_code_string(&self, fsq: &Fsq, text: &str) -> Result<Tensor> {
        let codes = parse_audio_codes(text, fsq.codebook_size());
        if codes.is_empty() {
            return Err(EngineError::invalid("the audio-code string holds no <|audio_code_N|> tokens"));
        }
        let len = codes.len();
        let indices = Tensor::from_vec(codes, (1, len), self.special_tokens.device())?;
        self.forward(&fsq.dequantize(&indices)?)
    }
}

crate::model::resident::resident_fields!(Fsq { project_in, project_out });
crate::model::resident::resident_fields!(AudioTokenizer {
    audio_acoustic_proj,
    embed_tokens,
    special_token,
    stack,
    rope,
    fsq
});
crate::model::resident::resident_fields!(AudioDetokenizer { embed_tokens, special_tokens, stack, rope, proj_out });

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    fn fsq(levels: &[u32]) -> Fsq {
        let mut cfg = AceStepConfig::turbo();
        cfg.fsq_input_levels = levels.to_vec();
        cfg.fsq_dim = 4;
        Fsq::new(&Weights::random(1, DType::F32, &Device::Cpu), &cfg).unwrap()
    }

    #[test]
    fn index_packing_uses_running_level_products_and_round_trips() {
        let fsq = fsq(&[8, 8, 8, 5, 5, 5]);
        assert_eq!(fsq.codebook_size(), 64000);
        let basis: Vec<u32> = (0..6).map(|d| fsq.pack(&(0..6).map(|i| (i == d) as u32).collect::<Vec<_>>())).collect();
        assert_eq!(basis, vec![1, 8, 64, 512, 2560, 12800]);
        for index in 0..fsq.codebook_size() {
            let grid = fsq.unpack(index);
            assert!(grid.iter().zip(&fsq.levels).all(|(k, l)| k < l));
            assert_eq!(fsq.pack(&grid), index);
        }
    }

    #[test]
    fn grid_levels_are_symmetric_and_saturate() {
        for levels in [8u32, 5] {
            assert_eq!(grid_level(-50.0, levels), 0);
            assert_eq!(grid_level(50.0, levels), levels - 1);
            assert_eq!(grid_value(0, levels), -1.0);
            assert_eq!(grid_value(levels - 1, levels), 1.0);
            for z in [0.1f32, 0.37, 0.8, 1.3] {
                assert_eq!(grid_level(z, levels) + grid_level(-z, levels), levels - 1, "L={levels} z={z}");
            }
        }
        // Even levels have no zero code: 0 maps to the upper middle level, odd levels to the centre.
        assert_eq!((grid_level(0.0, 8), grid_level(0.0, 5)), (4, 2));
    }

    #[test]
    fn codes_decode_indices_and_reject_out_of_range() {
        let fsq = fsq(&[8, 8, 8, 5, 5, 5]);
        let indices = Tensor::new(&[[0u32, 63999, 1 + 8 * 7]], &Device::Cpu).unwrap();
        let codes: Vec<Vec<Vec<f32>>> = fsq.codes(&indices).unwrap().to_vec3().unwrap();
        assert_eq!(codes[0][0], vec![-1.0; 6]);
        assert_eq!(codes[0][1], vec![1.0; 6]);
        assert_eq!(codes[0][2][..3], [grid_value(1, 8), 1.0, -1.0]);
        let bad = Tensor::new(&[64000u32], &Device::Cpu).unwrap();
        assert!(matches!(fsq.codes(&bad).unwrap_err(), EngineError::InvalidInput(_)));
    }

    #[test]
    fn code_strings_are_parsed_clamped_and_stray_text_ignored() {
        let text = "<|audio_code_0|><|audio_code_63999|><|audio_code_12345|> some text <|audio_code_70000|>\
                    <|audio_code_512|>";
        assert_eq!(parse_audio_codes(text, 64000), vec![0, 63999, 12345, 63999, 512]);
        assert_eq!(parse_audio_codes("<|audio_code_<|audio_code_5|> <|audio_code_|> <|audio_code_7", 64000), vec![5]);
        assert_eq!(parse_audio_codes("<|audio_code_99999999999999999999999999|>", 64000), vec![63999]);
        assert!(parse_audio_codes("no codes here", 64000).is_empty());
    }
}
