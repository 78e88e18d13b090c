//! Kind `lora`: a LoRA adapter merged into the DiT weights at load (engine/src/model/lora.rs), one DiT forward
//! with and without it, and the merged weights the case records (tests/fixtures-variants/README.md, kind `lora`).

use candle_core::DType;
use retake_engine::model::dit::Dit;
use retake_engine::model::lora::LoraSpec;

use crate::dit::DitInputs;
use crate::harness::{Inputs, Produced};

/// The prefix of the merged-weight tensors: `mid.fused_weight_<module, dots as underscores>`.
const FUSED: &str = "mid.fused_weight_";

/// Runs a `lora` case: `args.lora_file` (relative to the fixture set) at `args.alpha`.
pub fn run(inputs: &Inputs) -> Result<Produced, String> {
    let text = |e: retake_engine::EngineError| e.to_string();
    let file = inputs.arg("lora_file").as_str().ok_or("the case has no args.lora_file")?;
    let scale = inputs.arg("alpha").as_f64().ok_or("the case has no numeric args.alpha")?;
    let base = inputs.checkpoint()?;
    let adapted =
        base.clone().with_loras(&[LoraSpec { path: inputs.case.fixtures.join(file), scale }]).map_err(text)?;
    let mut produced = Produced::new();
    for (name, checkpoint) in [("out.velocity_without_lora", &base), ("out.velocity_with_lora", &adapted)] {
        let dit = Dit::load(checkpoint).map_err(text)?;
        produced.insert(name.into(), DitInputs::read(inputs, &dit)?.velocity(&dit)?);
    }
    let weights = adapted.acestep_weights().map_err(text)?;
    let stored = weights.shapes_under("decoder").ok_or("the checkpoint has no weight header")?;
    for name in inputs.expected_names().into_iter().filter(|n| n.starts_with(FUSED)) {
        let module = &name[FUSED.len()..];
        let (key, shape) = stored
            .iter()
            .find(|(key, _)| {
                key.strip_suffix(".weight")
                    .and_then(|k| k.strip_prefix("decoder."))
                    .is_some_and(|k| k.replace('.', "_") == module)
            })
            .ok_or_else(|| format!("no DiT weight matches `{name}`"))?;
        produced.insert(name.clone(), weights.get_as(shape, key, DType::F32).map_err(text)?);
    }
    Ok(produced)
}
