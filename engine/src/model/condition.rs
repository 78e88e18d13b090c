//! The condition encoder (`encoder.*` + `null_condition_emb`, docs/acestep-model.md §5): text projector, lyric encoder,
//! timbre encoder and the packed `[lyric ‖ timbre refs ‖ text]` sequence the DiT cross-attends to.

use crate::model::linear::Linear;
use candle_core::{Module, Tensor};

use super::checkpoint::Checkpoint;
use super::config::AceStepConfig;
use super::layers::{linear, Rope, TransformerStack};
use super::weights::Weights;
use crate::error::{EngineError, Result};

/// `embed_tokens` (Linear with bias) followed by a bidirectional [`TransformerStack`] over positions `0..L`:
/// the shape of both the lyric and the timbre encoder.
#[derive(Debug, Clone)]
struct EmbeddedStack {
    embed_tokens: Linear,
    stack: TransformerStack,
    head_dim: usize,
    rope_theta: f64,
}

impl EmbeddedStack {
    fn new(vb: &Weights, cfg: &AceStepConfig, input_dim: usize, layers: usize) -> Result<Self> {
        let dims = cfg.transformer_dims();
        Ok(Self {
            embed_tokens: linear(vb, "embed_tokens", input_dim, dims.hidden, true)?,
            stack: TransformerStack::new(vb, dims, &cfg.layer_masks(layers))?,
            head_dim: cfg.head_dim,
            rope_theta: cfg.rope_theta,
        })
    }

    /// `[B, L, input_dim]` → the first `outputs` positions of the encoded sequence, `[B, outputs, hidden]`.
    fn forward(&self, x: &Tensor, outputs: usize) -> Result<Tensor> {
        let h = self.embed_tokens.forward(x)?;
        let rope = Rope::new(self.head_dim, self.rope_theta, h.dim(1)?, h.dtype(), h.device())?;
        self.stack.forward_first(&h, &rope, outputs)
    }
}

/// `AceStepConditionEncoder` for batch 1: builds the encoder states `[1, L_lyr + N_ref + L_txt, hidden]`.
#[derive(Debug, Clone)]
pub struct ConditionEncoder {
    text_projector: Linear,
    lyric_encoder: EmbeddedStack,
    timbre_encoder: EmbeddedStack,
    null_condition_emb: Tensor,
    text_dim: usize,
    timbre_dim: usize,
}

impl ConditionEncoder {
    /// Loads `encoder.*` and `null_condition_emb` from the checkpoint's model file.
    pub fn load(ckpt: &Checkpoint) -> Result<Self> {
        Self::new(&ckpt.acestep_weights()?, &ckpt.acestep)
    }

    /// Loads from a weight source rooted at the model file's top level, at the encoder-side widths of `cfg`
    /// ([`AceStepConfig::encoder_side`]; `null_condition_emb` is at that width too).
    pub fn new(vb: &Weights, cfg: &AceStepConfig) -> Result<Self> {
        let cfg = &cfg.encoder_side();
        let enc = vb.pp("encoder");
        let hidden = cfg.hidden_size;
        Ok(Self {
            text_projector: linear(&enc, "text_projector", cfg.text_hidden_dim, hidden, false)?,
            lyric_encoder: EmbeddedStack::new(
                &enc.pp("lyric_encoder"),
                cfg,
                cfg.text_hidden_dim,
                cfg.num_lyric_encoder_hidden_layers,
            )?,
            timbre_encoder: EmbeddedStack::new(
                &enc.pp("timbre_encoder"),
                cfg,
                cfg.timbre_hidden_dim,
                cfg.num_timbre_encoder_hidden_layers,
            )?,
            null_condition_emb: vb.get(&[1, 1, hidden], "null_condition_emb")?,
            text_dim: cfg.text_hidden_dim,
            timbre_dim: cfg.timbre_hidden_dim,
        })
    }

    /// `text_projector` on the caption's Qwen3 last hidden state `[1, L_txt, text_hidden_dim]`.
    pub fn project_text(&self, text_hidden: &Tensor) -> Result<Tensor> {
        check_input("caption hidden states", text_hidden, self.text_dim)?;
        Ok(self.text_projector.forward(text_hidden)?)
    }

    /// The lyric encoder on the lyric token embeddings `[1, L_lyr, text_hidden_dim]` → `[1, L_lyr, hidden]`.
    pub fn encode_lyrics(&self, lyric_hidden: &Tensor) -> Result<Tensor> {
        check_input("lyric embeddings", lyric_hidden, self.text_dim)?;
        self.lyric_encoder.forward(lyric_hidden, lyric_hidden.dim(1)?)
    }

    /// Timbre embeddings of `N` reference latents `[N, frames, timbre_hidden_dim]` → `[1, N, hidden]`: each
    /// reference is encoded on its own (positions `0..frames`) and contributes its output at position 0.
    /// With no reference audio the caller passes the first `timbre_fix_frame` frames of the silence latent
    /// (a constant: encode it once and keep the result).
    pub fn timbre(&self, refs: &Tensor) -> Result<Tensor> {
        check_input("reference latents", refs, self.timbre_dim)?;
        let (refs_n, _, _) = refs.dims3()?;
        let h = self.timbre_encoder.forward(refs, 1)?;
        let hidden = h.dim(2)?;
        Ok(h.reshape((1, refs_n, hidden))?)
    }

    /// The whole encoder: `[1, L_lyr + N_ref + L_txt, hidden]` from the caption hidden states, the lyric token
    /// embeddings and precomputed timbre embeddings (see [`ConditionEncoder::timbre`]).
    pub fn encode(&self, text_hidden: &Tensor, lyric_hidden: &Tensor, timbre: &Tensor) -> Result<Tensor> {
        let text = self.project_text(text_hidden)?;
        let lyric = self.encode_lyrics(lyric_hidden)?;
        pack(&lyric, timbre, &text)
    }

    /// The unconditional encoder states for classifier-free guidance: `null_condition_emb` repeated over
    /// `len` positions, `[1, len, hidden]`.
    pub fn null_condition(&self, len: usize) -> Result<Tensor> {
        let hidden = self.null_condition_emb.dim(2)?;
        Ok(self.null_condition_emb.broadcast_as((1, len, hidden))?.contiguous()?)
    }
}

/// Packs `[lyric ‖ timbre ‖ text]` along the sequence axis (DiffSynth's stable sort by mask is the identity at
/// batch 1 without padding). Every position is valid: the encoder attention mask is all ones.
pub fn pack(lyric: &Tensor, timbre: &Tensor, text: &Tensor) -> Result<Tensor> {
    Ok(Tensor::cat(&[lyric, timbre, text], 1)?)
}

/// Checks that `x` is `[B, L, width]` with `L > 0`, naming `what` otherwise.
fn check_input(what: &str, x: &Tensor, width: usize) -> Result<()> {
    match x.dims() {
        [_, len, w] if *w == width && *len > 0 => Ok(()),
        dims => {
            Err(EngineError::invalid(format!("{what} must be [batch, length > 0, {width}] but has shape {dims:?}")))
        }
    }
}

crate::model::resident::resident_fields!(EmbeddedStack { embed_tokens, stack });
crate::model::resident::resident_fields!(ConditionEncoder {
    text_projector,
    lyric_encoder,
    timbre_encoder,
    null_condition_emb
});

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use candle_core::{DType, Device};

    use super::*;
    use crate::test_util::max_diff;

    fn fixture_encoder() -> (ConditionEncoder, AceStepConfig) {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-acestep");
        let ckpt = Checkpoint::open(&root, DType::F32, &Device::Cpu).unwrap();
        (ConditionEncoder::load(&ckpt).unwrap(), ckpt.acestep)
    }

    #[test]
    fn each_reference_is_encoded_independently_of_the_others() {
        let (enc, cfg) = fixture_encoder();
        let refs = Tensor::randn(0f32, 1., (3, 20, cfg.timbre_hidden_dim), &Device::Cpu).unwrap();
        let together = enc.timbre(&refs).unwrap();
        let alone: Vec<Tensor> = (0..3).map(|i| enc.timbre(&refs.narrow(0, i, 1).unwrap()).unwrap()).collect();
        assert_eq!(together.dims(), &[1, 3, cfg.hidden_size]);
        assert!(max_diff(&together, &Tensor::cat(&alone, 1).unwrap()) < 1e-5);
    }

    #[test]
    fn packed_sequence_is_lyric_then_timbre_then_text() {
        let (enc, cfg) = fixture_encoder();
        let text_hidden = Tensor::randn(0f32, 1., (1, 7, cfg.text_hidden_dim), &Device::Cpu).unwrap();
        let lyric_hidden = Tensor::randn(0f32, 1., (1, 5, cfg.text_hidden_dim), &Device::Cpu).unwrap();
        let timbre = Tensor::randn(0f32, 1., (1, 2, cfg.hidden_size), &Device::Cpu).unwrap();
        let packed = enc.encode(&text_hidden, &lyric_hidden, &timbre).unwrap();
        assert_eq!(packed.dims(), &[1, 5 + 2 + 7, cfg.hidden_size]);
        assert_eq!(max_diff(&packed.narrow(1, 0, 5).unwrap(), &enc.encode_lyrics(&lyric_hidden).unwrap()), 0.0);
        assert_eq!(max_diff(&packed.narrow(1, 5, 2).unwrap(), &timbre), 0.0);
        assert_eq!(max_diff(&packed.narrow(1, 7, 7).unwrap(), &enc.project_text(&text_hidden).unwrap()), 0.0);
    }

    #[test]
    fn null_condition_repeats_the_learned_vector_at_every_position() {
        let (enc, cfg) = fixture_encoder();
        let null = enc.null_condition(4).unwrap();
        assert_eq!(null.dims(), &[1, 4, cfg.hidden_size]);
        for i in 0..4 {
            assert_eq!(max_diff(&null.narrow(1, i, 1).unwrap(), &enc.null_condition_emb), 0.0);
        }
    }

    #[test]
    fn wrong_input_width_is_an_invalid_input_error() {
        let (enc, cfg) = fixture_encoder();
        let bad = Tensor::zeros((1, 3, cfg.text_hidden_dim + 1), DType::F32, &Device::Cpu).unwrap();
        let err = enc.project_text(&bad).unwrap_err();
        assert!(matches!(err, EngineError::InvalidInput(_)), "{err}");
        assert!(err.to_string().contains("caption hidden states"), "{err}");
    }
}
