//! The model components a pipeline uses, loaded on first use from one checkpoint and kept until released.

use std::sync::Arc;

use candle_core::Tensor;

use crate::error::Result;
use crate::model::audio_tokenizer::{AudioDetokenizer, AudioTokenizer};
use crate::model::checkpoint::Checkpoint;
use crate::model::condition::ConditionEncoder;
use crate::model::dit::Dit;
use crate::model::prompt::PromptTokenizer;
use crate::model::silence::SilenceLatent;
use crate::model::text_encoder::TextEncoder;
use crate::model::vae::{VaeDecoder, VaeEncoder};

/// Lazily loaded components, shared out as `Arc`s.
pub struct Components {
    checkpoint: Checkpoint,
    tokenizer: Option<Arc<PromptTokenizer>>,
    text: Option<Arc<TextEncoder>>,
    condition: Option<Arc<ConditionEncoder>>,
    silence: Option<Arc<SilenceLatent>>,
    default_timbre: Option<Tensor>,
    dit: Option<Arc<Dit>>,
    audio_tokenizer: Option<Arc<AudioTokenizer>>,
    detokenizer: Option<Arc<AudioDetokenizer>>,
    vae_encoder: Option<Arc<VaeEncoder>>,
    vae_decoder: Option<Arc<VaeDecoder>>,
}

/// Loads `slot` with `load` unless it is already there, and shares it.
fn cached<T>(slot: &mut Option<Arc<T>>, load: impl FnOnce() -> Result<T>) -> Result<Arc<T>> {
    if slot.is_none() {
        *slot = Some(Arc::new(load()?));
    }
    Ok(slot.clone().expect("filled above"))
}

impl Components {
    /// Nothing is loaded until first used.
    pub fn new(checkpoint: Checkpoint) -> Self {
        Self {
            checkpoint,
            tokenizer: None,
            text: None,
            condition: None,
            silence: None,
            default_timbre: None,
            dit: None,
            audio_tokenizer: None,
            detokenizer: None,
            vae_encoder: None,
            vae_decoder: None,
        }
    }

    /// The checkpoint the components come from.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The caption/lyric tokenizer.
    pub fn tokenizer(&mut self) -> Result<Arc<PromptTokenizer>> {
        let ckpt = &self.checkpoint;
        cached(&mut self.tokenizer, || PromptTokenizer::open(ckpt))
    }

    /// The Qwen3 text encoder.
    pub fn text_encoder(&mut self) -> Result<Arc<TextEncoder>> {
        let ckpt = &self.checkpoint;
        cached(&mut self.text, || TextEncoder::load(ckpt))
    }

    /// The condition encoder.
    pub fn condition(&mut self) -> Result<Arc<ConditionEncoder>> {
        let ckpt = &self.checkpoint;
        cached(&mut self.condition, || ConditionEncoder::load(ckpt))
    }

    /// The silence latent.
    pub fn silence(&mut self) -> Result<Arc<SilenceLatent>> {
        let ckpt = &self.checkpoint;
        cached(&mut self.silence, || SilenceLatent::load(ckpt))
    }

    /// The timbre embedding used when no reference audio is given (first `timbre_fix_frame` frames of the
    /// silence latent through the timbre encoder); computed once.
    pub fn default_timbre(&mut self) -> Result<Tensor> {
        if self.default_timbre.is_none() {
            let frames = self.silence()?.slice(self.checkpoint.acestep.timbre_fix_frame)?.unsqueeze(0)?;
            self.default_timbre = Some(self.condition()?.timbre(&frames)?);
        }
        Ok(self.default_timbre.clone().expect("filled above"))
    }

    /// The DiT.
    pub fn dit(&mut self) -> Result<Arc<Dit>> {
        let ckpt = &self.checkpoint;
        cached(&mut self.dit, || Dit::load(ckpt))
    }

    /// The audio tokenizer (attention pooler + FSQ).
    pub fn audio_tokenizer(&mut self) -> Result<Arc<AudioTokenizer>> {
        let ckpt = &self.checkpoint;
        cached(&mut self.audio_tokenizer, || AudioTokenizer::load(ckpt))
    }

    /// The audio detokenizer.
    pub fn detokenizer(&mut self) -> Result<Arc<AudioDetokenizer>> {
        let ckpt = &self.checkpoint;
        cached(&mut self.detokenizer, || AudioDetokenizer::load(ckpt))
    }

    /// The VAE encoder.
    pub fn vae_encoder(&mut self) -> Result<Arc<VaeEncoder>> {
        let ckpt = &self.checkpoint;
        cached(&mut self.vae_encoder, || VaeEncoder::load(&ckpt.vae, &ckpt.vae_weights()?))
    }

    /// The VAE decoder.
    pub fn vae_decoder(&mut self) -> Result<Arc<VaeDecoder>> {
        let ckpt = &self.checkpoint;
        cached(&mut self.vae_decoder, || VaeDecoder::load(&ckpt.vae, &ckpt.vae_weights()?))
    }
}
