//! Dispatch from a manifest `kind` to the port. Each handler reads its arguments, strings and inputs from
//! the case and returns the tensors it produced under the manifest's names.

use crate::harness::{Inputs, Produced};

/// Runs one case; `Ok(None)` = kind not implemented yet.
pub fn run(inputs: &Inputs) -> Result<Option<Produced>, String> {
    match inputs.case.kind.as_str() {
        // Each kind's handler lives in its own module below; add new kinds here.
        "tokenizer" | "prompt_embedder" => crate::text::run(inputs).map(Some),
        "conditioner" | "dit_forward" => crate::dit::run(inputs).map(Some),
        "audio_tokenizer" | "audio_detokenizer" | "audio_codes_to_latents" => crate::tokens::run(inputs).map(Some),
        "scheduler" | "silence_tiling" | "repaint_masks" => crate::schedule::run(inputs).map(Some),
        "vae_encode" | "vae_decode" => crate::vae::run(inputs).map(Some),
        "pipeline" => crate::pipeline::run(inputs).map(Some),
        "lora" => crate::lora::run(inputs).map(Some),
        "apg_guidance" => crate::guidance::run(inputs).map(Some),
        _ => Ok(None),
    }
}
