//! Kinds `conditioner` and `dit_forward`: the condition encoder and one DiT evaluation (docs/acestep-model.md §5, §6).

use candle_core::{DType, Device, Tensor};
use retake_engine::model::checkpoint::Checkpoint;
use retake_engine::model::condition::ConditionEncoder;
use retake_engine::model::dit::{CrossCache, Dit, DitContext};
use retake_engine::model::silence::SilenceLatent;

use crate::harness::{Inputs, Produced};

/// Runs a `conditioner` or `dit_forward` case.
pub fn run(inputs: &Inputs) -> Result<Produced, String> {
    let checkpoint = inputs.checkpoint()?;
    match inputs.case.kind.as_str() {
        "conditioner" => condition(inputs, &checkpoint),
        "dit_forward" => dit_forward(inputs, &checkpoint),
        other => Err(format!("the DiT handler does not run kind `{other}`")),
    }
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// An i64 tensor of ones `[1, len]` (a mask with every position valid).
fn ones_mask(len: usize) -> Result<Tensor, String> {
    Tensor::ones((1, len), DType::I64, &Device::Cpu).map_err(text)
}

/// The timbre references of batch item 0: `in.reference_latents` when the case has them (all of which must
/// belong to item 0 per `in.refer_audio_order_mask`), else the silence default `silence[:timbre_fix_frame]`.
fn references(inputs: &Inputs, checkpoint: &Checkpoint) -> Result<Tensor, String> {
    let order: Vec<i64> = inputs.tensor("in.refer_audio_order_mask")?.to_vec1().map_err(text)?;
    if order.iter().any(|&item| item != 0) {
        return Err(format!("refer_audio_order_mask {order:?} spans several batch items; the engine runs batch 1"));
    }
    let refs = match inputs.tensor("in.reference_latents") {
        Ok(refs) => refs,
        Err(_) => {
            let silence = SilenceLatent::load(checkpoint).map_err(text)?;
            silence.slice(checkpoint.acestep.timbre_fix_frame).and_then(|s| Ok(s.unsqueeze(0)?)).map_err(text)?
        }
    };
    if refs.dim(0).map_err(text)? != order.len() {
        return Err(format!("{} reference latents but {} order-mask entries", refs.dim(0).map_err(text)?, order.len()));
    }
    Ok(refs)
}

fn condition(inputs: &Inputs, checkpoint: &Checkpoint) -> Result<Produced, String> {
    let encoder = ConditionEncoder::load(checkpoint).map_err(text)?;
    let text_hidden = inputs.tensor("in.text_hidden_states")?;
    let lyric_hidden = inputs.tensor("in.lyric_hidden_states")?;
    let timbre = encoder.timbre(&references(inputs, checkpoint)?).map_err(text)?;
    let packed = encoder.encode(&text_hidden, &lyric_hidden, &timbre).map_err(text)?;
    let mut produced = Produced::new();
    produced.insert("mid.text_projected".into(), encoder.project_text(&text_hidden).map_err(text)?);
    produced.insert("mid.lyric_encoded".into(), encoder.encode_lyrics(&lyric_hidden).map_err(text)?);
    produced.insert("mid.timbre_embs_mask".into(), ones_mask(timbre.dim(1).map_err(text)?)?);
    produced.insert("mid.timbre_embs".into(), timbre);
    // Batch 1 has no padding: every packed position is valid.
    produced.insert("out.encoder_attention_mask".into(), ones_mask(packed.dim(1).map_err(text)?)?);
    produced.insert("out.encoder_hidden_states".into(), packed);
    Ok(produced)
}

/// The `in.*` tensors of a `dit_forward`-shaped case, prepared for one DiT.
pub(crate) struct DitInputs {
    latents: Tensor,
    encoder_states: Tensor,
    t: f32,
    context: DitContext,
}

impl DitInputs {
    /// Reads `in.hidden_states`, `in.encoder_hidden_states`, `in.timestep` and `in.context_latents` for `dit`.
    pub(crate) fn read(inputs: &Inputs, dit: &Dit) -> Result<Self, String> {
        let timestep: Vec<f32> = inputs.stored("in.timestep")?.to_vec1().map_err(text)?;
        let &[t] = timestep.as_slice() else {
            return Err(format!("in.timestep has {} values, expected 1", timestep.len()));
        };
        Ok(Self {
            latents: inputs.tensor("in.hidden_states")?,
            encoder_states: inputs.tensor("in.encoder_hidden_states")?,
            t,
            context: dit.shell().prepare_context(&inputs.tensor("in.context_latents")?).map_err(text)?,
        })
    }

    /// The velocity `dit` gives for these inputs, through the public one-call path.
    pub(crate) fn velocity(&self, dit: &Dit) -> Result<Tensor, String> {
        let cond = dit.shell().timestep(self.t).map_err(text)?;
        let cross = dit.cross_cache(&self.encoder_states).map_err(text)?;
        dit.forward(&self.latents, &self.context, &cross, &cond).map_err(text)
    }
}

fn dit_forward(inputs: &Inputs, checkpoint: &Checkpoint) -> Result<Produced, String> {
    let dit = Dit::load(checkpoint).map_err(text)?;
    let shell = dit.shell();
    let step = DitInputs::read(inputs, &dit)?;
    let DitInputs { latents, encoder_states, t, context } = &step;
    let mut produced = Produced::new();

    // The public one-call path gives the output …
    produced.insert("out.velocity".into(), step.velocity(&dit)?);
    let cond = shell.timestep(*t).map_err(text)?;

    // … and the per-part API gives the intermediates.
    let (t_term, r_term) = shell.timestep_terms(*t).map_err(text)?;
    produced.insert("mid.temb_t".into(), t_term.temb);
    produced.insert("mid.timestep_proj_t".into(), t_term.proj);
    produced.insert("mid.temb_r".into(), r_term.temb);
    produced.insert("mid.timestep_proj_r".into(), r_term.proj);
    let embedded = shell.embed_condition(encoder_states).map_err(text)?;
    let cross = CrossCache::build(&embedded, dit.blocks()).map_err(text)?;
    produced.insert("mid.condition_embedded".into(), embedded);
    let mut hidden = shell.embed_input(latents, context).map_err(text)?;
    produced.insert("mid.proj_in".into(), hidden.clone());
    for (i, block) in dit.blocks().iter().enumerate() {
        let kv = cross.layer(i).ok_or_else(|| format!("no cross-attention K/V for block {i}"))?;
        hidden = block.forward(&hidden, context.rope(), &cond, kv).map_err(text)?;
        produced.insert(format!("mid.layer{i}_out"), hidden.clone());
    }
    // The CFG negative case also checks the loader's null condition (at the encoder width on XL).
    if inputs.expected_names().iter().any(|name| name == "mid.null_condition_emb") {
        let encoder = ConditionEncoder::load(checkpoint).map_err(text)?;
        produced.insert("mid.null_condition_emb".into(), encoder.null_condition(1).map_err(text)?);
    }
    Ok(produced)
}
