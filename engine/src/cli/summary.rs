//! The one-line JSON summary printed when a job has been written.

use std::time::Duration;

use retake_engine::audio::Audio;
use retake_engine::pipeline::request::{GenerationRequest, Mode};
use serde_json::{json, Value};

use super::args::Command;
use super::clip::SourceClip;

/// What was done, where from and to, how long it took and with which settings (those of `request`, the job as it
/// ran: the variant's defaults filled in).
pub fn summary(
    command: &Command,
    source: Option<&SourceClip>,
    output: &Audio,
    request: &GenerationRequest,
    took: Duration,
    warnings: &[String],
) -> Value {
    let common = command.common();
    let mut summary = json!({
        "output": command.output().display().to_string(),
        "prompt": command.prompt(),
        "seconds": (took.as_secs_f64() * 1000.0).round() / 1000.0,
        "device": common.engine.device.to_string(),
        "mode": match common.mode { Mode::Studio => "studio", Mode::Reference => "reference" },
        "variant": common.engine.variant.name(),
        "seed": request.seed,
        "steps": request.steps,
        "shift": request.shift,
        "cfg": request.cfg_scale,
        "sample_rate": output.sample_rate,
        "duration_s": output.duration_s(),
        "warnings": warnings,
    });
    if let Some(clip) = source {
        summary["input"] = json!(clip.path.display().to_string());
    }
    if !common.engine.loras.is_empty() {
        let loras =
            common.engine.loras.iter().map(|l| json!({ "file": l.path.display().to_string(), "scale": l.scale }));
        summary["loras"] = loras.collect();
    }
    if !common.references.is_empty() {
        summary["references"] = common.references.iter().map(|p| p.display().to_string()).collect();
    }
    let task = match command {
        Command::Repaint(a) => json!({
            "task": "repaint", "ranges": a.ranges(), "start": a.start, "end": a.end, "strength": a.strength,
            "crossfade_ms": (!a.no_splice).then_some(a.crossfade_ms),
        }),
        Command::Cover(a) => json!({
            "task": "cover", "cover_strength": a.cover_strength, "noise_strength": a.noise_strength,
            "audio_codes": a.audio_codes.as_ref().map(|p| p.display().to_string()),
        }),
        Command::Text2Music(_) => json!({ "task": "text2music" }),
    };
    if let (Value::Object(all), Value::Object(task)) = (&mut summary, task) {
        all.extend(task);
    }
    summary
}
