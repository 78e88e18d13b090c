//! Prompt → encoder states (spec §3, §5): caption through the whole text encoder, lyrics through its
//! embedding table, both through the condition encoder with the default timbre; and the DiT-side condition
//! (projected context, cross-attention K/V, the null condition for CFG) built once per phase.

use candle_core::Tensor;

use super::components::Components;
use super::request::Metas;
use crate::error::Result;
use crate::model::dit::{CrossCache, Dit, DitContext};
use crate::model::prompt::{caption_prompt, lyric_prompt, Instruction, CAPTION_MAX_TOKENS, LYRIC_MAX_TOKENS};

/// What goes into the two prompts.
#[derive(Debug, Clone, Copy)]
pub struct PromptParts<'a> {
    /// Task instruction.
    pub instruction: Instruction,
    /// Style caption.
    pub caption: &'a str,
    /// Metas block values.
    pub metas: &'a Metas,
    /// Lyrics.
    pub lyrics: &'a str,
    /// Vocal language.
    pub language: &'a str,
}

/// The packed encoder states `[1, L_enc, hidden]` for a prompt.
pub fn encode_prompt(components: &mut Components, parts: &PromptParts) -> Result<Tensor> {
    let tokenizer = components.tokenizer()?;
    let text = components.text_encoder()?;
    let caption_ids =
        tokenizer.encode_prompt(&caption_prompt(parts.instruction, parts.caption, parts.metas)?, CAPTION_MAX_TOKENS)?;
    let lyric_ids = tokenizer.encode_prompt(&lyric_prompt(parts.language, parts.lyrics), LYRIC_MAX_TOKENS)?;
    let text_hidden = text.encode(&caption_ids)?;
    let lyric_hidden = text.embed(&lyric_ids)?;
    let timbre = components.default_timbre()?;
    components.condition()?.encode(&text_hidden, &lyric_hidden, &timbre)
}

/// Everything the DiT needs that stays fixed over a run of steps.
pub struct DitCondition {
    /// Projected context latents.
    pub context: DitContext,
    /// Cross-attention K/V of the encoder states.
    pub cross: CrossCache,
    /// Cross-attention K/V of the null condition, when classifier-free guidance is on.
    pub null_cross: Option<CrossCache>,
}

impl DitCondition {
    /// Prepares the context `[1, T, 2C]` and the encoder states' caches; `with_null` adds the CFG branch.
    pub fn new(
        dit: &Dit,
        components: &mut Components,
        context: &Tensor,
        encoder_states: &Tensor,
        with_null: bool,
    ) -> Result<Self> {
        let null_cross = if with_null {
            Some(dit.cross_cache(&components.condition()?.null_condition(encoder_states.dim(1)?)?)?)
        } else {
            None
        };
        Ok(Self { context: dit.shell().prepare_context(context)?, cross: dit.cross_cache(encoder_states)?, null_cross })
    }
}
