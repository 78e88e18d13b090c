//! Prompt → encoder states (docs/acestep-model.md §3, §5): caption through the whole text encoder, lyrics through its
//! embedding table, both through the condition encoder with the timbre references (or the default timbre); and the DiT-side condition
//! (projected context, cross-attention K/V, the null condition for CFG) built once per phase.

use candle_core::Tensor;

use super::components::Components;
use super::request::Metas;
use crate::error::Result;
use crate::model::dit::{CrossCache, Dit, DitContext};
use crate::model::prompt::{caption_prompt, lyric_prompt, Instruction, CAPTION_MAX_TOKENS, LYRIC_MAX_TOKENS};
use crate::residency::{PromptShape, Stage};

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

/// A prompt's packed encoder states `[1, L_enc, hidden]`, and the null condition of the same length for CFG.
pub struct EncodedPrompt {
    /// The packed states.
    pub states: Tensor,
    /// The null condition, when asked for.
    pub null_states: Option<Tensor>,
}

/// Encodes `prompts` in two stages — every caption through the text encoder, then every prompt through the
/// condition encoder with the timbre of `references` (VAE latents `[N, frames, C]` of the timbre references,
/// pipeline/timbre.rs) or, without them, the default timbre — so that a budget needs only one encoder resident at
/// a time.
pub fn encode_prompts(
    components: &mut Components,
    prompts: &[PromptParts],
    with_null: bool,
    references: Option<&Tensor>,
) -> Result<Vec<EncodedPrompt>> {
    let tokenizer = components.tokenizer()?;
    let ids = prompts
        .iter()
        .map(|parts| {
            let caption = caption_prompt(parts.instruction, parts.caption, parts.metas)?;
            let lyrics = lyric_prompt(parts.language, parts.lyrics);
            Ok((
                tokenizer.encode_prompt(&caption, CAPTION_MAX_TOKENS)?,
                tokenizer.encode_prompt(&lyrics, LYRIC_MAX_TOKENS)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let shape = PromptShape {
        prompts: ids.len(),
        caption_tokens: ids.iter().map(|(caption, _)| caption.len()).max().unwrap_or(0),
        lyric_tokens: ids.iter().map(|(_, lyrics)| lyrics.len()).max().unwrap_or(0),
    };
    components.enter(Stage::Text(shape))?;
    let hidden = {
        let text = components.text_encoder()?;
        ids.iter()
            .map(|(caption, lyrics)| Ok((text.encode(caption)?, text.embed(lyrics)?)))
            .collect::<Result<Vec<_>>>()?
    };
    components.enter(Stage::Condition(shape))?;
    let condition = components.condition()?;
    let timbre = match references {
        // One reference at a time, as the default timbre is encoded, so the stage's activations stay as booked.
        Some(refs) => {
            let each = (0..refs.dim(0)?).map(|i| condition.encoder.timbre(&refs.narrow(0, i, 1)?));
            Tensor::cat(&each.collect::<Result<Vec<_>>>()?, 1)?
        }
        None => condition.default_timbre.clone(),
    };
    hidden
        .iter()
        .map(|(text_hidden, lyric_hidden)| {
            let states = condition.encoder.encode(text_hidden, lyric_hidden, &timbre)?;
            let null_states = if with_null { Some(condition.encoder.null_condition(states.dim(1)?)?) } else { None };
            Ok(EncodedPrompt { states, null_states })
        })
        .collect()
}

/// Everything the DiT needs that stays fixed over a run of steps.
pub struct DitCondition {
    /// Projected context latents.
    pub context: DitContext,
    /// Cross-attention K/V of the encoder states (batch 1).
    pub cross: CrossCache,
    /// With classifier-free guidance: the K/V of the encoder states (row 0) and of the null condition (row 1), for
    /// one batched DiT call per guided step; [`DitCondition::cross`] is a view of its first row.
    pub guided_cross: Option<CrossCache>,
}

impl DitCondition {
    /// Prepares the context `[1, T, 2C]` and the caches of the prompt's states (and of its null condition).
    pub fn new(dit: &Dit, context: &Tensor, prompt: &EncodedPrompt) -> Result<Self> {
        let cross = dit.cross_cache(&prompt.states)?;
        let (cross, guided_cross) = match &prompt.null_states {
            Some(null) => {
                let pair = cross.pair(dit.cross_cache(null)?)?;
                (pair.rows(0, 1)?, Some(pair))
            }
            None => (cross, None),
        };
        Ok(Self { context: dit.shell().prepare_context(context)?, cross, guided_cross })
    }
}
