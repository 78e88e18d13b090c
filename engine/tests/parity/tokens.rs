//! Kinds `audio_tokenizer`, `audio_detokenizer` and `audio_codes_to_latents`: the cover path's 5 Hz tokens
//! (docs/acestep-model.md §7).

use candle_core::{DType, Tensor};
use retake_engine::model::audio_tokenizer::{parse_audio_codes, AudioDetokenizer, AudioTokenizer};
use retake_engine::model::checkpoint::Checkpoint;
use retake_engine::model::silence::SilenceLatent;
use retake_engine::pipeline::masks::context_latents;

use crate::harness::{Inputs, Produced};

/// Runs an audio tokenizer / detokenizer case.
pub fn run(inputs: &Inputs) -> Result<Produced, String> {
    let checkpoint = inputs.checkpoint()?;
    match inputs.case.kind.as_str() {
        "audio_tokenizer" => tokenize(inputs, &checkpoint),
        "audio_detokenizer" => detokenize(inputs, &checkpoint),
        "audio_codes_to_latents" => codes_to_latents(inputs, &checkpoint),
        other => Err(format!("the token handler does not run kind `{other}`")),
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Checks that an optional case argument agrees with the checkpoint config it describes.
fn check_arg<T: serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
    inputs: &Inputs,
    key: &str,
    config: &T,
) -> Result<(), String> {
    match inputs.arg(key) {
        serde_json::Value::Null => Ok(()),
        value => {
            let arg: T = serde_json::from_value(value.clone()).map_err(err)?;
            if &arg == config {
                Ok(())
            } else {
                Err(format!("case argument {key} = {arg:?} but the checkpoint config says {config:?}"))
            }
        }
    }
}

fn tokenize(inputs: &Inputs, checkpoint: &Checkpoint) -> Result<Produced, String> {
    check_arg(inputs, "pool_window_size", &checkpoint.acestep.pool_window_size)?;
    check_arg(inputs, "fsq_levels", &checkpoint.acestep.fsq_input_levels)?;
    let latents = inputs.tensor("in.latents")?;
    check_arg(inputs, "frames", &latents.dim(1).map_err(err)?)?;
    let tokenizer = AudioTokenizer::load(checkpoint).map_err(err)?;
    let silence = SilenceLatent::load(checkpoint).map_err(err)?;
    let tokens = tokenizer.tokenize(&latents, &silence).map_err(err)?;

    // The same path step by step, for the intermediates.
    let windows = tokenizer.windows(&latents, &silence).map_err(err)?;
    let pooled = tokenizer.pool(&windows).map_err(err)?;
    let mut produced = Produced::new();
    produced.insert("mid.fsq_project_in".into(), tokenizer.fsq().project_in(&pooled).map_err(err)?);
    produced.insert("mid.patched_latents".into(), windows);
    produced.insert("mid.pooled".into(), pooled);
    // One quantizer: the manifest keeps its axis, `[B, T5, 1]`.
    let indices = tokens.indices.to_dtype(DType::I64).and_then(|i| i.unsqueeze(2)).map_err(err)?;
    produced.insert("out.indices".into(), indices);
    produced.insert("out.quantized".into(), tokens.vectors);
    Ok(produced)
}

fn detokenize(inputs: &Inputs, checkpoint: &Checkpoint) -> Result<Produced, String> {
    let detokenizer = AudioDetokenizer::load(checkpoint).map_err(err)?;
    let latents = detokenizer.forward(&inputs.tensor("in.quantized")?).map_err(err)?;
    Ok(Produced::from([("out.latents".to_string(), latents)]))
}

fn codes_to_latents(inputs: &Inputs, checkpoint: &Checkpoint) -> Result<Produced, String> {
    let text = inputs.string("audio_code_string")?;
    let tokenizer = AudioTokenizer::load(checkpoint).map_err(err)?;
    let detokenizer = AudioDetokenizer::load(checkpoint).map_err(err)?;
    let fsq = tokenizer.fsq();
    let device = checkpoint.device();

    let codes = parse_audio_codes(text, fsq.codebook_size());
    let reference: Vec<i64> = inputs.tensor("in.code_ids")?.flatten_all().and_then(|t| t.to_vec1()).map_err(err)?;
    if codes.iter().map(|&c| c as i64).ne(reference.iter().copied()) {
        return Err(format!("parsed codes {codes:?} differ from in.code_ids {reference:?}"));
    }
    let indices = Tensor::from_vec(codes.clone(), (1, codes.len()), device).map_err(err)?;
    let src = detokenizer.from_code_string(fsq, text).map_err(err)?;
    let frames = src.dim(1).map_err(err)?;

    let mut produced = Produced::new();
    produced.insert("mid.fsq_codes".into(), fsq.codes(&indices).map_err(err)?);
    produced.insert("mid.quantized".into(), fsq.dequantize(&indices).map_err(err)?);
    // Cover from codes: the chunk mask is 1 everywhere and every frame is valid.
    produced.insert("out.context_latents".into(), context_latents(&src, &vec![1.0; frames]).map_err(err)?);
    produced.insert("out.attention_mask".into(), Tensor::ones((1, frames), DType::F32, device).map_err(err)?);
    produced.insert("out.src_latents".into(), src);
    Ok(produced)
}
