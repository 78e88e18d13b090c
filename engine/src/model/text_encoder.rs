//! Qwen3-Embedding-0.6B as a stateless text encoder: caption → `last_hidden_state`, lyrics → embeddings
//! only (docs/acestep-model.md §3.1).

use candle_core::{DType, Module, Tensor};
use candle_nn::Embedding;

use super::checkpoint::Checkpoint;
use super::config::Qwen3Config;
use super::layers::{AttnMask, Rope, TransformerDims, TransformerStack};
use super::weights::Weights;
use crate::error::{EngineError, Result};

/// `Qwen3Model` without a KV cache: `embed_tokens`, causal decoder layers and the final `norm`.
#[derive(Debug, Clone)]
pub struct TextEncoder {
    /// The table in the matrix dtype ([`Weights::matrix_dtype`]: bf16 on the CPU in bf16 precision, half the
    /// memory); looked-up rows are widened to the compute dtype.
    embed_tokens: Embedding,
    dtype: DType,
    stack: TransformerStack,
    vocab_size: usize,
    head_dim: usize,
    rope_theta: f64,
}

impl TextEncoder {
    /// Loads the text encoder of a checkpoint (bare `Qwen3Model` keys, no `model.` prefix).
    pub fn load(checkpoint: &Checkpoint) -> Result<Self> {
        Self::new(&checkpoint.text_weights()?, &checkpoint.qwen3)
    }

    /// Builds the encoder from weights laid out as `embed_tokens.weight`, `layers.{i}.*`, `norm.weight`.
    pub fn new(vb: &Weights, cfg: &Qwen3Config) -> Result<Self> {
        let dims = TransformerDims {
            hidden: cfg.hidden_size,
            intermediate: cfg.intermediate_size,
            heads: cfg.num_attention_heads,
            kv_heads: cfg.num_key_value_heads,
            head_dim: cfg.head_dim,
            eps: cfg.rms_norm_eps,
        };
        let table = vb.pp("embed_tokens").get_as(&[cfg.vocab_size, cfg.hidden_size], "weight", vb.matrix_dtype())?;
        Ok(Self {
            embed_tokens: Embedding::new(table, cfg.hidden_size),
            dtype: vb.dtype(),
            stack: TransformerStack::new(vb, dims, &vec![AttnMask::Causal; cfg.num_hidden_layers])?,
            vocab_size: cfg.vocab_size,
            head_dim: cfg.head_dim,
            rope_theta: cfg.rope_theta,
        })
    }

    /// Embedding rows of `ids`, `[1, L, hidden]` (the lyric path: no transformer layers).
    pub fn embed(&self, ids: &[u32]) -> Result<Tensor> {
        if ids.is_empty() {
            return Err(EngineError::invalid("cannot embed an empty token sequence; tokenize with special tokens on"));
        }
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            return Err(EngineError::invalid(format!(
                "token id {bad} is outside the text encoder's vocabulary of {} ids; use the tokenizer.json that \
                 ships with the model",
                self.vocab_size
            )));
        }
        let table = self.embed_tokens.embeddings();
        let ids = Tensor::new(ids, table.device())?.unsqueeze(0)?;
        Ok(self.embed_tokens.forward(&ids)?.to_dtype(self.dtype)?)
    }

    /// `last_hidden_state` of `ids`, `[1, L, hidden]`: causal attention at positions `0..L`, final norm applied.
    pub fn encode(&self, ids: &[u32]) -> Result<Tensor> {
        let h = self.embed(ids)?;
        let rope = Rope::new(self.head_dim, self.rope_theta, ids.len(), h.dtype(), h.device())?;
        self.stack.forward(&h, &rope)
    }
}

crate::model::resident::resident_fields!(TextEncoder { embed_tokens, stack });

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use candle_core::Device;

    use super::*;
    use crate::model::linear::CpuPrecision;
    use crate::model::resident::ResidentBytes;
    use crate::test_util::max_diff;

    fn encoder_in(precision: CpuPrecision) -> TextEncoder {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-acestep");
        let checkpoint = Checkpoint::open(&root, DType::F32, &Device::Cpu).unwrap().with_cpu_precision(precision);
        TextEncoder::load(&checkpoint).unwrap()
    }

    fn encoder() -> TextEncoder {
        encoder_in(CpuPrecision::F32)
    }

    #[test]
    fn in_bf16_precision_the_table_stays_bf16_and_embeds_the_same_f32_rows() {
        let (f32, bf16) = (encoder(), encoder_in(CpuPrecision::Bf16));
        assert_eq!(bf16.embed_tokens.embeddings().dtype(), DType::BF16);
        assert_eq!(bf16.embed_tokens.resident_bytes() * 2, f32.embed_tokens.resident_bytes());
        assert!(bf16.resident_bytes() < f32.resident_bytes() * 6 / 10, "the table dominates the fixture encoder");
        // The fixture stores bf16: widening its rows is exact.
        let ids = [7, 14990, 151668];
        let got = bf16.embed(&ids).unwrap();
        assert_eq!(got.dtype(), DType::F32);
        assert_eq!(max_diff(&got, &f32.embed(&ids).unwrap()), 0.0);
    }

    #[test]
    fn encoding_is_causal_so_a_prefix_gives_the_same_leading_rows() {
        let enc = encoder();
        let ids = [14990, 1879, 151643, 198, 151643];
        let full = enc.encode(&ids).unwrap();
        let prefix = enc.encode(&ids[..3]).unwrap();
        assert_eq!(full.dims(), &[1, 5, 16]);
        assert!(max_diff(&full.narrow(1, 0, 3).unwrap(), &prefix) < 1e-5);
    }

    #[test]
    fn encoding_twice_gives_identical_states() {
        let enc = encoder();
        let ids = [14990, 1879, 151643];
        assert_eq!(max_diff(&enc.encode(&ids).unwrap(), &enc.encode(&ids).unwrap()), 0.0);
    }

    #[test]
    fn embed_returns_the_table_rows_of_the_ids() {
        let enc = encoder();
        let got = enc.embed(&[7, 151668]).unwrap();
        let table = enc.embed_tokens.embeddings();
        let want = Tensor::cat(&[table.narrow(0, 7, 1).unwrap(), table.narrow(0, 151668, 1).unwrap()], 0).unwrap();
        assert_eq!(got.dims(), &[1, 2, 16]);
        assert_eq!(max_diff(&got.squeeze(0).unwrap(), &want), 0.0);
    }

    #[test]
    fn out_of_vocabulary_and_empty_ids_are_invalid_input() {
        let enc = encoder();
        assert!(matches!(enc.encode(&[1, 151669]), Err(EngineError::InvalidInput(_))));
        assert!(matches!(enc.embed(&[]), Err(EngineError::InvalidInput(_))));
    }
}
