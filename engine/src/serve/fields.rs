//! The fields of a `/release_task` request: the official names and aliases, looked up in the body, then in a
//! `param_obj` object and a `metas` object (`acestep/api/http/release_task_param_parser.py::RequestParser`), with
//! the official defaults (`release_task_request_builder.py`, `release_task_models.py::GenerateMusicRequest`), turned
//! into Retake generation requests.
//!
//! Where the official server silently falls back to a default for a value it cannot parse (`inference_steps=abc`),
//! or answers a plain-text 500 (a `repaint_mode` outside its list), `retake serve` answers 400 naming the field.

use serde_json::{Map, Value};

use super::output::Format;
use crate::audio::Audio;
use crate::model::variant::Variant;
use crate::pipeline::request::{CfgInterval, GenerationRequest, Metas, Mode, Task, MAX_DURATION_S, MAX_STEPS};

/// Canonical name → accepted spellings, in lookup order (official `PARAM_ALIASES`; names without aliases are
/// looked up as they are).
const ALIASES: &[(&str, &[&str])] = &[
    ("prompt", &["prompt", "caption"]),
    ("thinking", &["thinking"]),
    ("sample_mode", &["sample_mode", "sampleMode"]),
    ("use_format", &["use_format", "useFormat", "format"]),
    ("key_scale", &["key_scale", "keyscale", "keyScale", "key"]),
    ("time_signature", &["time_signature", "timesignature", "timeSignature"]),
    ("audio_duration", &["audio_duration", "duration", "audioDuration", "target_duration", "targetDuration"]),
    ("vocal_language", &["vocal_language", "vocalLanguage", "language"]),
    ("inference_steps", &["inference_steps", "inferenceSteps"]),
    ("guidance_scale", &["guidance_scale", "guidanceScale"]),
    ("use_random_seed", &["use_random_seed", "useRandomSeed"]),
    ("audio_cover_strength", &["audio_cover_strength", "audioCoverStrength"]),
    ("cover_noise_strength", &["cover_noise_strength", "coverNoiseStrength"]),
    ("audio_code_string", &["audio_code_string", "audioCodeString", "audio_codes"]),
    ("reference_audio_path", &["reference_audio_path", "ref_audio_path", "referenceAudioPath", "refAudioPath"]),
    ("src_audio_path", &["src_audio_path", "ctx_audio_path", "sourceAudioPath", "srcAudioPath", "ctxAudioPath"]),
    ("task_type", &["task_type", "taskType"]),
    ("infer_method", &["infer_method", "inferMethod"]),
];

/// The most takes one task may ask for (`batch_size`).
pub const MAX_BATCH: usize = 8;
/// The length of a text2music result when the request gives none (the official server asks its language model,
/// which `retake serve` does not run).
pub const DEFAULT_DURATION_S: f64 = 30.0;

/// A request's fields, with the official lookup rules.
pub struct Fields<'a> {
    raw: &'a Map<String, Value>,
    param_obj: Map<String, Value>,
    metas: Map<String, Value>,
}

/// A field that cannot be used: the message for the client.
pub type FieldError = String;

impl<'a> Fields<'a> {
    /// The fields of `raw` (a JSON body, or a form's text fields as strings).
    pub fn new(raw: &'a Map<String, Value>) -> Self {
        let metas = ["metas", "meta", "metadata", "user_metadata", "userMetadata"]
            .iter()
            .find_map(|key| raw.get(*key).filter(|v| !is_empty(v)))
            .map(object)
            .unwrap_or_default();
        Self { raw, param_obj: raw.get("param_obj").map(object).unwrap_or_default(), metas }
    }

    /// The first non-null value of `name` under any of its spellings, in the body, `param_obj`, then `metas`.
    fn get(&self, name: &str) -> Option<&Value> {
        let single = [name];
        let spellings = ALIASES.iter().find(|(canonical, _)| *canonical == name).map_or(&single[..], |(_, a)| a);
        [self.raw, &self.param_obj, &self.metas]
            .into_iter()
            .flat_map(|source| spellings.iter().filter_map(move |s| source.get(*s)))
            .find(|value| !value.is_null())
    }

    /// `name` as text (numbers and booleans as written); `None` when absent.
    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name).map(|value| match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    /// `name` as text, `None` when absent or blank.
    fn nonblank(&self, name: &str) -> Option<String> {
        self.text(name).map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())
    }

    /// `name` as a number; absent or blank is `None`, anything else not a finite number an error.
    pub fn number(&self, name: &str) -> Result<Option<f64>, FieldError> {
        let Some(text) = self.nonblank(name) else { return Ok(None) };
        match text.parse::<f64>() {
            Ok(value) if value.is_finite() => Ok(Some(value)),
            _ => Err(format!("{name} is `{text}`, which is not a finite number; send a number such as 8 or 0.5")),
        }
    }

    /// `name` as a whole number (an integral decimal such as `8.0` too).
    pub fn whole(&self, name: &str) -> Result<Option<i64>, FieldError> {
        match self.number(name) {
            Ok(Some(value)) if value.fract() == 0.0 && value.abs() < 9.0e15 => Ok(Some(value as i64)),
            Ok(Some(_)) | Err(_) => Err(format!(
                "{name} is `{}`, which is not a whole number; send a whole number such as 8",
                self.text(name).unwrap_or_default()
            )),
            Ok(None) => Ok(None),
        }
    }

    /// `name` as a boolean: `true/1/yes/y/on` or `false/0/no/n/off` (any case), as the official bool strings.
    pub fn flag(&self, name: &str) -> Result<Option<bool>, FieldError> {
        let Some(text) = self.nonblank(name) else { return Ok(None) };
        match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "y" | "on" => Ok(Some(true)),
            "false" | "0" | "no" | "n" | "off" => Ok(Some(false)),
            _ => Err(format!("{name} is `{text}`, which is not a boolean; send true or false")),
        }
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// An object, or a string holding one as JSON; anything else is empty (as the official `_parse_json`).
fn object(value: &Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map.clone(),
        Value::String(text) => match serde_json::from_str(text) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        },
        _ => Map::new(),
    }
}

/// The task a request asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// `text2music` (the default).
    Text2Music,
    /// `cover`: needs a source.
    Cover,
    /// `repaint`: needs a source.
    Repaint,
    /// Another official task type (`extract`, `lego`, `complete`, …): accepted in the official shape and failed.
    Unsupported(String),
}

/// A parsed `/release_task` request, before its audio is read.
#[derive(Debug, Clone)]
pub struct Spec {
    /// What to do.
    pub kind: Kind,
    /// Output format.
    pub format: Format,
    /// One seed per take (`batch_size` of them).
    pub seeds: Vec<u64>,
    /// `src_audio_path` (a path on the server) when no file was uploaded.
    pub src_audio_path: Option<String>,
    /// `reference_audio_path` when no file was uploaded.
    pub reference_audio_path: Option<String>,
    /// The style caption (`prompt`).
    pub prompt: String,
    /// The lyrics.
    pub lyrics: String,
    request: GenerationRequest,
}

impl Spec {
    /// Parses `fields` for a server running `variant`; `random_seed` draws the seeds of `use_random_seed` (the
    /// official default). Errors name the field and what to send.
    pub fn parse(fields: &Fields, variant: Variant, random_seed: &mut dyn FnMut() -> u64) -> Result<Self, FieldError> {
        for needs_lm in ["thinking", "sample_mode", "use_format"] {
            if fields.flag(needs_lm)? == Some(true) {
                return Err(format!(
                    "{needs_lm}=true needs the 5 Hz language model, which retake serve does not run; send \
                     {needs_lm}=false with your own caption, lyrics and metas"
                ));
            }
        }
        let kind = match fields.nonblank("task_type").as_deref().unwrap_or("text2music") {
            "text2music" => Kind::Text2Music,
            "cover" => Kind::Cover,
            "repaint" => Kind::Repaint,
            other => Kind::Unsupported(other.to_owned()),
        };
        let format = Format::parse(fields.text("audio_format").as_deref())?;
        let defaults = variant.defaults();
        let steps = match fields.whole("inference_steps")? {
            None => 8,
            Some(steps) if (1..=MAX_STEPS as i64).contains(&steps) => steps as usize,
            Some(steps) => return Err(format!("inference_steps is {steps}; send 1 to {MAX_STEPS} (turbo uses 8)")),
        };
        let positive = |name: &str, default: f64| -> Result<f64, FieldError> {
            match fields.number(name)? {
                None => Ok(default),
                Some(value) if value > 0.0 => Ok(value),
                Some(value) => Err(format!("{name} is {value}; send a number above 0")),
            }
        };
        // Turbo variants are guidance-distilled: the official server ignores guidance_scale on them.
        let cfg_scale = if variant.is_turbo() { defaults.cfg_scale } else { positive("guidance_scale", 7.0)? };
        let shift = positive("shift", defaults.shift)?;
        if let Some(method) = fields.nonblank("infer_method").filter(|m| m != "ode") {
            return Err(format!("infer_method `{method}` is not available in retake serve; send ode"));
        }
        if fields.nonblank("timesteps").is_some() {
            return Err("timesteps (a custom schedule) is not available in retake serve; leave it out and set \
                        inference_steps and shift"
                .into());
        }
        let batch = match fields.whole("batch_size")? {
            None => 2,
            Some(n) if (1..=MAX_BATCH as i64).contains(&n) => n as usize,
            Some(n) => return Err(format!("batch_size is {n}; send 1 to {MAX_BATCH}")),
        };
        let seeds = seeds(fields, batch, random_seed)?;
        let unit = |name: &str, default: f64| -> Result<f32, FieldError> {
            match fields.number(name)?.unwrap_or(default) {
                value if (0.0..=1.0).contains(&value) => Ok(value as f32),
                value => Err(format!("{name} is {value}; send a number from 0 to 1")),
            }
        };
        let task = match &kind {
            Kind::Text2Music | Kind::Unsupported(_) => {
                let duration_s = match fields.number("audio_duration")? {
                    None => DEFAULT_DURATION_S,
                    Some(d) if d <= 0.0 => DEFAULT_DURATION_S,
                    Some(d) if d <= MAX_DURATION_S => d,
                    Some(d) => return Err(format!("audio_duration is {d} s; send at most {MAX_DURATION_S} s")),
                };
                Task::Text2Music { duration_s }
            }
            Kind::Cover => Task::Cover {
                cover_strength: unit("audio_cover_strength", 1.0)?,
                noise_strength: unit("cover_noise_strength", 0.0)?,
                audio_codes: fields.nonblank("audio_code_string"),
            },
            Kind::Repaint => {
                let start = fields.number("repainting_start")?.unwrap_or(0.0);
                // null, 0 or a negative end: the end of the source (set once it is read).
                let end = fields.number("repainting_end")?.filter(|&end| end > 0.0).unwrap_or(f64::INFINITY);
                let strength = match fields.nonblank("repaint_mode").as_deref().unwrap_or("balanced") {
                    "aggressive" => 1.0,
                    "balanced" => unit("repaint_strength", 0.5)?,
                    "conservative" => 0.0,
                    other => {
                        return Err(format!("repaint_mode is `{other}`; send conservative, balanced or aggressive"))
                    }
                };
                if strength == 0.0 {
                    return Err("a repaint strength of 0 (repaint_mode conservative, or balanced with \
                                repaint_strength 0) regenerates nothing in retake serve; send repaint_mode \
                                aggressive, or balanced with a repaint_strength above 0"
                        .into());
                }
                let crossfade_s = fields.number("repaint_wav_crossfade_sec")?.unwrap_or(0.0);
                Task::Repaint { ranges: vec![(start, end)], strength, splice_crossfade_ms: Some(crossfade_s * 1000.0) }
            }
        };
        let request = GenerationRequest {
            task,
            mode: Mode::Studio,
            source: None,
            references: Vec::new(),
            caption: fields.text("prompt").unwrap_or_default(),
            lyrics: fields.text("lyrics").unwrap_or_default(),
            language: fields.nonblank("vocal_language").unwrap_or_else(|| "en".into()),
            metas: Metas {
                bpm: match fields.number("bpm")? {
                    Some(bpm) if bpm <= 0.0 => return Err(format!("bpm is {bpm}; send a tempo above 0")),
                    bpm => bpm,
                },
                time_signature: fields.nonblank("time_signature"),
                key: fields.nonblank("key_scale"),
                duration_s: None,
            },
            seed: seeds[0],
            steps,
            shift,
            cfg_scale,
            cfg_interval: CfgInterval::ALL,
            noise: None,
        };
        request.check_limits().map_err(|e| e.to_string())?;
        Ok(Self {
            kind,
            format,
            seeds,
            src_audio_path: fields.nonblank("src_audio_path"),
            reference_audio_path: fields.nonblank("reference_audio_path"),
            prompt: request.caption.clone(),
            lyrics: request.lyrics.clone(),
            request,
        })
    }

    /// True for the tasks that need a source.
    pub fn needs_source(&self) -> bool {
        matches!(self.kind, Kind::Cover | Kind::Repaint)
    }

    /// One request per seed, on `source` (48 kHz stereo) with the timbre `references`. A repaint region must
    /// overlap or touch the source (it may reach past either end, to outpaint).
    pub fn requests(
        &self,
        source: Option<Audio>,
        references: Vec<Audio>,
    ) -> Result<Vec<GenerationRequest>, FieldError> {
        let mut request = self.request.clone();
        if let (Task::Repaint { ranges, .. }, Some(source)) = (&mut request.task, &source) {
            let duration = source.duration_s();
            let (start, end) = &mut ranges[0];
            if end.is_infinite() {
                *end = duration;
            }
            if !(*start < *end && *start <= duration && *end >= 0.0) {
                return Err(format!(
                    "repainting_start {start} s and repainting_end {end} s do not make a region that overlaps the \
                     {duration:.3} s source; send a start before the end, the start at most {duration:.3} s"
                ));
            }
        }
        request.source = source;
        request.references = references;
        Ok(self.seeds.iter().map(|&seed| GenerationRequest { seed, ..request.clone() }).collect())
    }
}

/// The takes' seeds: random ones unless `use_random_seed` is false, then `seed` (a number, or comma-separated
/// numbers, one per take; a negative one is random; too few are filled with the last one plus 1, 2, …).
fn seeds(fields: &Fields, batch: usize, random_seed: &mut dyn FnMut() -> u64) -> Result<Vec<u64>, FieldError> {
    if fields.flag("use_random_seed")?.unwrap_or(true) {
        return Ok((0..batch).map(|_| random_seed()).collect());
    }
    let text = fields.nonblank("seed").unwrap_or_else(|| "-1".into());
    let mut given = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let seed: i128 = part
            .parse()
            .map_err(|_| format!("seed is `{text}`; send a whole number, or comma-separated ones, one per take"))?;
        given.push(if seed < 0 { random_seed() } else { u64::try_from(seed).unwrap_or(u64::MAX) });
    }
    let mut seeds: Vec<u64> = given.into_iter().take(batch).collect();
    if seeds.is_empty() {
        seeds.push(random_seed());
    }
    while seeds.len() < batch {
        let next = seeds[seeds.len() - 1].wrapping_add(1);
        seeds.push(next);
    }
    Ok(seeds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(body: Value) -> Result<Spec, FieldError> {
        let map = body.as_object().unwrap().clone();
        let mut counter = 1000;
        let mut random = || {
            counter += 1;
            counter
        };
        Spec::parse(&Fields::new(&map), Variant::Turbo, &mut random)
    }

    #[test]
    fn an_empty_request_gets_the_official_defaults() {
        let s = spec(json!({})).unwrap();
        assert_eq!((s.kind.clone(), s.format, s.seeds.len()), (Kind::Text2Music, Format::Wav16, 2));
        assert_eq!(s.seeds, [1001, 1002], "use_random_seed defaults to true");
        let r = &s.request;
        assert_eq!((r.steps, r.shift, r.cfg_scale, r.language.as_str()), (8, 3.0, 1.0, "en"));
        assert_eq!(r.task, Task::Text2Music { duration_s: DEFAULT_DURATION_S });
    }

    #[test]
    fn aliases_bool_strings_param_obj_and_metas_are_read() {
        let s = spec(json!({
            "caption": "lofi", "duration": "12.5", "useRandomSeed": "no", "seed": "42", "batch_size": "1",
            "taskType": "text2music", "audio_format": "flac", "inferenceSteps": 4,
            "param_obj": "{\"key\": \"D minor\"}", "metas": {"bpm": 90, "timesignature": "3"},
        }))
        .unwrap();
        assert_eq!((s.prompt.as_str(), s.seeds.as_slice(), s.format), ("lofi", &[42u64][..], Format::Flac));
        let r = &s.request;
        assert_eq!(r.task, Task::Text2Music { duration_s: 12.5 });
        assert_eq!(r.steps, 4);
        assert_eq!(
            (r.metas.bpm, r.metas.key.as_deref(), r.metas.time_signature.as_deref()),
            (Some(90.0), Some("D minor"), Some("3"))
        );
        for truthy in ["true", "1", "YES", "on", "y"] {
            let err = spec(json!({ "thinking": truthy })).unwrap_err();
            assert!(err.contains("thinking=true needs the 5 Hz language model"), "{truthy}: {err}");
        }
        spec(json!({ "thinking": "off", "use_format": false })).unwrap();
    }

    #[test]
    fn seeds_follow_the_batch() {
        let s = spec(json!({ "use_random_seed": false, "seed": "7,9", "batch_size": 3 })).unwrap();
        assert_eq!(s.seeds, [7, 9, 10]);
        let s = spec(json!({ "use_random_seed": false, "seed": -1, "batch_size": 1 })).unwrap();
        assert_eq!(s.seeds, [1001]);
        let s = spec(json!({ "use_random_seed": "false", "seed": 5, "batch_size": 2 })).unwrap();
        assert_eq!(s.seeds, [5, 6]);
    }

    #[test]
    fn bad_fields_are_refused_naming_the_field() {
        for (body, message) in [
            (json!({"inference_steps": "many"}), "inference_steps is `many`, which is not a whole number"),
            (json!({"inference_steps": 0}), "inference_steps is 0; send 1 to 1000"),
            (json!({"audio_duration": "long"}), "audio_duration is `long`, which is not a finite number"),
            (json!({"audio_duration": 601}), "audio_duration is 601 s; send at most 600 s"),
            (json!({"batch_size": 9}), "batch_size is 9; send 1 to 8"),
            (json!({"use_random_seed": "maybe"}), "use_random_seed is `maybe`, which is not a boolean"),
            (json!({"audio_format": "mp3"}), "audio_format `mp3` is not available"),
            (json!({"task_type": "repaint", "repaint_mode": "wild"}), "repaint_mode is `wild`"),
            (json!({"task_type": "repaint", "repaint_mode": "conservative"}), "a repaint strength of 0"),
            (
                json!({"task_type": "cover", "audio_cover_strength": 2}),
                "audio_cover_strength is 2; send a number from 0 to 1",
            ),
            (
                json!({"task_type": "repaint", "repaint_wav_crossfade_sec": 2}),
                "a splice crossfade of 2000 ms is outside",
            ),
            (json!({"infer_method": "sde"}), "infer_method `sde` is not available"),
            (json!({"timesteps": "0.9,0.5,0"}), "timesteps (a custom schedule) is not available"),
            (json!({"shift": -1}), "shift is -1; send a number above 0"),
            (json!({"bpm": 0}), "bpm is 0; send a tempo above 0"),
            (json!({"use_random_seed": false, "seed": "x"}), "seed is `x`"),
        ] {
            let err = spec(body.clone()).unwrap_err();
            assert!(err.contains(message), "{body}: {err}");
        }
    }

    #[test]
    fn repaint_regions_default_to_the_end_of_the_source_and_must_overlap_it() {
        let source = Audio::new(48_000, vec![vec![0.0; 48_000 * 4]; 2]);
        let s =
            spec(json!({"task_type": "repaint", "repainting_start": 1, "repaint_mode": "aggressive", "batch_size": 1}))
                .unwrap();
        let requests = s.requests(Some(source.clone()), Vec::new()).unwrap();
        assert_eq!(
            requests[0].task,
            Task::Repaint { ranges: vec![(1.0, 4.0)], strength: 1.0, splice_crossfade_ms: Some(0.0) }
        );
        let s = spec(json!({"task_type": "repaint", "repainting_start": 5, "repainting_end": 6})).unwrap();
        let err = s.requests(Some(source), Vec::new()).unwrap_err();
        assert!(err.contains("do not make a region that overlaps the 4.000 s source"), "{err}");
        assert_eq!(spec(json!({"task_type": "lego"})).unwrap().kind, Kind::Unsupported("lego".into()));
    }

    #[test]
    fn guided_variants_take_the_official_guidance_default_and_turbo_ignores_it() {
        let map = json!({"guidance_scale": 3.5}).as_object().unwrap().clone();
        let guided = Spec::parse(&Fields::new(&map), Variant::Base, &mut || 1).unwrap();
        assert_eq!(guided.request.cfg_scale, 3.5);
        let empty = Map::new();
        assert_eq!(Spec::parse(&Fields::new(&empty), Variant::Base, &mut || 1).unwrap().request.cfg_scale, 7.0);
        assert_eq!(Spec::parse(&Fields::new(&map), Variant::Turbo, &mut || 1).unwrap().request.cfg_scale, 1.0);
    }
}
