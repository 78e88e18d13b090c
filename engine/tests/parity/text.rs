//! Kinds `tokenizer` and `prompt_embedder`: the prompt templates, the tokenizer and the Qwen3 text encoder
//! (docs/acestep-model.md §3).

use candle_core::{Device, Tensor};
use retake_engine::model::checkpoint::Checkpoint;
use retake_engine::model::prompt::{
    caption_prompt, lyric_prompt, Instruction, PromptTokenizer, CAPTION_MAX_TOKENS, LYRIC_MAX_TOKENS,
};
use retake_engine::model::text_encoder::TextEncoder;
use retake_engine::pipeline::request::Metas;
use serde_json::Value;

use crate::harness::{Inputs, Produced};

/// Runs a `tokenizer` or `prompt_embedder` case.
pub fn run(inputs: &Inputs) -> Result<Produced, String> {
    let checkpoint = inputs.checkpoint()?;
    let tokenizer = PromptTokenizer::open(&checkpoint).map_err(|e| e.to_string())?;
    match inputs.case.kind.as_str() {
        "tokenizer" => tokenize_strings(inputs, &tokenizer),
        "prompt_embedder" => embed_prompts(inputs, &tokenizer, &checkpoint),
        other => Err(format!("the text handler does not run kind `{other}`")),
    }
}

/// `[1, n]` i64 tensor of token ids.
fn ids_tensor(ids: &[u32]) -> Result<Tensor, String> {
    let ids: Vec<i64> = ids.iter().map(|&id| i64::from(id)).collect();
    let n = ids.len();
    Tensor::from_vec(ids, (1, n), &Device::Cpu).map_err(|e| e.to_string())
}

/// Every `strings.s<NN>` → `out.ids_<NN>` (special tokens on) and `out.ids_no_special_<NN>`.
fn tokenize_strings(inputs: &Inputs, tokenizer: &PromptTokenizer) -> Result<Produced, String> {
    let strings = inputs.case.json["strings"].as_object().ok_or("tokenizer case has no strings")?;
    let mut produced = Produced::new();
    for (key, text) in strings {
        let suffix = key.strip_prefix('s').ok_or_else(|| format!("unexpected string key `{key}`"))?;
        let text = text.as_str().ok_or_else(|| format!("string `{key}` is not text"))?;
        for (special, name) in [(true, format!("out.ids_{suffix}")), (false, format!("out.ids_no_special_{suffix}"))] {
            produced.insert(name, ids_tensor(&tokenizer.encode(text, special).map_err(|e| e.to_string())?)?);
        }
    }
    Ok(produced)
}

/// A text arg as the reference's f-string prints it (`null`/absent = missing).
fn text_arg(inputs: &Inputs, key: &str) -> Option<String> {
    match inputs.arg(key) {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A token budget arg, or the engine's default.
fn budget_arg(inputs: &Inputs, key: &str, default: usize) -> usize {
    inputs.arg(key).as_u64().map_or(default, |n| n as usize)
}

/// Checks a string built by the port against the reference's.
fn expect_equal<T: PartialEq + std::fmt::Debug>(what: &str, port: T, reference: T) -> Result<(), String> {
    if port == reference {
        Ok(())
    } else {
        Err(format!("{what} differs: port {port:?}, reference {reference:?}"))
    }
}

/// The `in.<name>` ids `[1, n]` as a flat list.
fn reference_ids(inputs: &Inputs, name: &str) -> Result<Vec<u32>, String> {
    let ids = inputs.tensor(name)?.squeeze(0).and_then(|t| t.to_vec1::<i64>()).map_err(|e| e.to_string())?;
    ids.into_iter().map(|id| u32::try_from(id).map_err(|_| format!("{name} holds the invalid id {id}"))).collect()
}

/// Prompt strings → ids → `out.text_hidden_states` (full encoder) and `out.lyric_hidden_states` (embeddings).
fn embed_prompts(inputs: &Inputs, tokenizer: &PromptTokenizer, checkpoint: &Checkpoint) -> Result<Produced, String> {
    let instruction = match inputs.arg("task_type").as_str() {
        Some("text2music") => Instruction::Text2Music,
        Some("cover") => Instruction::Cover,
        Some("repaint") => Instruction::Repaint,
        other => return Err(format!("unknown task_type {other:?}")),
    };
    let metas = Metas {
        bpm: inputs.arg("bpm").as_f64(),
        time_signature: text_arg(inputs, "timesignature"),
        key: text_arg(inputs, "keyscale"),
        duration_s: inputs.arg("duration").as_f64(),
    };
    let language = text_arg(inputs, "vocal_language").unwrap_or_default();
    let prompt = caption_prompt(instruction, inputs.string("caption")?, &metas).map_err(|e| e.to_string())?;
    let lyrics = lyric_prompt(&language, inputs.string("lyrics")?);
    expect_equal("caption prompt", prompt.as_str(), inputs.string("prompt_string")?)?;
    expect_equal("lyric prompt", lyrics.as_str(), inputs.string("lyric_string")?)?;

    let encode = |text: &str, budget| tokenizer.encode_prompt(text, budget).map_err(|e| e.to_string());
    let prompt_ids = encode(&prompt, budget_arg(inputs, "max_length_prompt", CAPTION_MAX_TOKENS))?;
    let lyric_ids = encode(&lyrics, budget_arg(inputs, "max_length_lyrics", LYRIC_MAX_TOKENS))?;
    expect_equal("caption ids", &prompt_ids, &reference_ids(inputs, "in.prompt_input_ids")?)?;
    expect_equal("lyric ids", &lyric_ids, &reference_ids(inputs, "in.lyric_input_ids")?)?;

    let encoder = TextEncoder::load(checkpoint).map_err(|e| e.to_string())?;
    let mut produced = Produced::new();
    produced.insert("out.text_hidden_states".into(), encoder.encode(&prompt_ids).map_err(|e| e.to_string())?);
    produced.insert("out.lyric_hidden_states".into(), encoder.embed(&lyric_ids).map_err(|e| e.to_string())?);
    Ok(produced)
}
