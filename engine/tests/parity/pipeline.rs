//! Kind `pipeline`: end-to-end DiffSynth-compatible generation (reference mode, injected noise).

use candle_core::{DType, Device, Tensor};
use retake_engine::audio::{Audio, MODEL_SAMPLE_RATE};
use retake_engine::pipeline::request::{CfgInterval, GenerationRequest, Metas, Mode, Task};
use retake_engine::pipeline::Generator;
use serde_json::Value;

use crate::harness::{Inputs, Produced};

pub fn run(inputs: &Inputs) -> Result<Produced, String> {
    let request = request(inputs)?;
    let mut generator = Generator::new(inputs.checkpoint()?, None).map_err(|e| e.to_string())?;
    let output =
        generator.generate(&request, &mut |_| std::ops::ControlFlow::Continue(())).map_err(|e| e.to_string())?;
    let audio = Tensor::new(output.audio.channels, &Device::Cpu).map_err(|e| e.to_string())?;
    Ok(Produced::from([("out.audio".to_string(), audio)]))
}

fn request(inputs: &Inputs) -> Result<GenerationRequest, String> {
    let num = |key: &str| inputs.arg(key).as_f64().ok_or_else(|| format!("case has no numeric arg `{key}`"));
    let text = |key: &str| inputs.arg(key).as_str().map(str::to_string);
    let task = match inputs.arg("task_type").as_str() {
        Some("text2music") => Task::Text2Music { duration_s: num("duration")? },
        Some("cover") => Task::Cover {
            cover_strength: inputs.arg("audio_cover_strength").as_f64().unwrap_or(1.0) as f32,
            noise_strength: 1.0 - inputs.arg("denoising_strength").as_f64().unwrap_or(1.0) as f32,
            audio_codes: text("audio_code_string"),
        },
        Some("repaint") => Task::Repaint {
            ranges: ranges(inputs.arg("repainting_ranges"))?,
            strength: num("repainting_strength")? as f32,
            splice_crossfade_ms: None,
        },
        other => return Err(format!("unknown task_type {other:?}")),
    };
    let source = match inputs.tensor("in.src_audio") {
        Ok(t) => Some(Audio::new(
            MODEL_SAMPLE_RATE,
            t.to_dtype(DType::F32).and_then(|t| t.to_vec2()).map_err(|e| e.to_string())?,
        )),
        Err(_) => None,
    };
    Ok(GenerationRequest {
        task,
        mode: Mode::Reference,
        source,
        caption: text("prompt").unwrap_or_default(),
        lyrics: text("lyrics").unwrap_or_default(),
        language: text("vocal_language").unwrap_or_else(|| "unknown".into()),
        metas: Metas {
            bpm: inputs.arg("bpm").as_f64(),
            time_signature: text("timesignature"),
            key: text("keyscale"),
            duration_s: inputs.arg("duration").as_f64(),
        },
        seed: inputs.arg("seed").as_u64().unwrap_or(0),
        steps: num("num_inference_steps")? as usize,
        shift: num("shift")?,
        cfg_scale: inputs.arg("cfg_scale").as_f64().unwrap_or(1.0),
        cfg_interval: CfgInterval::ALL,
        references: Vec::new(),
        noise: Some(inputs.tensor("in.noise")?),
    })
}

fn ranges(value: &Value) -> Result<Vec<(f64, f64)>, String> {
    value
        .as_array()
        .ok_or("repainting_ranges is not a list")?
        .iter()
        .map(|r| match (r[0].as_f64(), r[1].as_f64()) {
            (Some(s), Some(e)) => Ok((s, e)),
            _ => Err(format!("bad repaint range {r}")),
        })
        .collect()
}
