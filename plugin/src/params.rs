//! Retake's parameters and persisted fields, with stable ids.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::atomic::AtomicU32;

use nih_plug::plugin::ParamValue;
use nih_plug::prelude::*;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::takes::TakesField;

/// What a job does with the region.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskMode {
    /// Regenerate the region so it fits its surroundings.
    #[id = "repaint"]
    Repaint,
    /// Re-render the region in the prompt's style, keeping its structure.
    #[id = "cover"]
    Cover,
    /// Generate new music for the region from the prompt alone (the captured audio is not sent).
    #[id = "text2music"]
    #[name = "Text2Music"]
    Text2Music,
}

/// What the plugin outputs inside a take's region.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Monitor {
    /// The input, unchanged.
    #[id = "original"]
    Original,
    /// The active take.
    #[id = "take"]
    Take,
}

/// The key written into the prompt's metas (`Auto` leaves it to the model: "N/A").
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Key {
    #[id = "auto"]
    Auto,
    #[id = "c-major"]
    #[name = "C major"]
    CMajor,
    #[id = "c-minor"]
    #[name = "C minor"]
    CMinor,
    #[id = "c#-major"]
    #[name = "C# major"]
    CSharpMajor,
    #[id = "c#-minor"]
    #[name = "C# minor"]
    CSharpMinor,
    #[id = "d-major"]
    #[name = "D major"]
    DMajor,
    #[id = "d-minor"]
    #[name = "D minor"]
    DMinor,
    #[id = "eb-major"]
    #[name = "Eb major"]
    EFlatMajor,
    #[id = "eb-minor"]
    #[name = "Eb minor"]
    EFlatMinor,
    #[id = "e-major"]
    #[name = "E major"]
    EMajor,
    #[id = "e-minor"]
    #[name = "E minor"]
    EMinor,
    #[id = "f-major"]
    #[name = "F major"]
    FMajor,
    #[id = "f-minor"]
    #[name = "F minor"]
    FMinor,
    #[id = "f#-major"]
    #[name = "F# major"]
    FSharpMajor,
    #[id = "f#-minor"]
    #[name = "F# minor"]
    FSharpMinor,
    #[id = "g-major"]
    #[name = "G major"]
    GMajor,
    #[id = "g-minor"]
    #[name = "G minor"]
    GMinor,
    #[id = "ab-major"]
    #[name = "Ab major"]
    AFlatMajor,
    #[id = "ab-minor"]
    #[name = "Ab minor"]
    AFlatMinor,
    #[id = "a-major"]
    #[name = "A major"]
    AMajor,
    #[id = "a-minor"]
    #[name = "A minor"]
    AMinor,
    #[id = "bb-major"]
    #[name = "Bb major"]
    BFlatMajor,
    #[id = "bb-minor"]
    #[name = "Bb minor"]
    BFlatMinor,
    #[id = "b-major"]
    #[name = "B major"]
    BMajor,
    #[id = "b-minor"]
    #[name = "B minor"]
    BMinor,
}

impl Key {
    /// The keyscale text for the metas block; `None` for `Auto`.
    pub fn keyscale(self) -> Option<String> {
        (self != Key::Auto).then(|| Key::variants()[self.to_index()].to_string())
    }
}

/// The vocal languages the lyric prompt knows (ace-step/ACE-Step-1.5 `acestep/constants.py` `VALID_LANGUAGES`);
/// `unknown` lets the model decide.
pub const LANGUAGES: [&str; 51] = [
    "unknown", "ar", "az", "bg", "bn", "ca", "cs", "da", "de", "el", "en", "es", "fa", "fi", "fr", "he", "hi", "hr",
    "ht", "hu", "id", "is", "it", "ja", "ko", "la", "lt", "ms", "ne", "nl", "no", "pa", "pl", "pt", "ro", "ru", "sa",
    "sk", "sr", "sv", "sw", "ta", "te", "th", "tl", "tr", "uk", "ur", "vi", "yue", "zh",
];

/// The timbre reference of this instance's jobs, kept in the project (README "Parameters").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reference {
    /// The default timbre.
    #[default]
    None,
    /// One of this instance's takes, by id (its 48 kHz file).
    Take(u64),
    /// An audio file anywhere.
    File(PathBuf),
}

/// Upper end of the Start/End parameters (one hour of host timeline).
const MAX_REGION_SECONDS: f32 = 3600.0;

/// Upper end of the Steps parameter.
const MAX_STEPS: i32 = 200;
/// The Guidance and Steps parameters' defaults: the guided variants' (model/variant.rs `Variant::defaults`).
const GUIDED_CFG: f32 = 4.0;
const GUIDED_STEPS: i32 = 50;

/// Default capture capacity in minutes.
pub const DEFAULT_CAPTURE_MINUTES: u32 = 10;
/// The capture capacities the editor offers, in minutes (README "How it works").
pub const CAPTURE_MINUTES: RangeInclusive<u32> = 1..=120;

/// Everything the host automates and saves.
#[derive(Params)]
pub struct RetakeParams {
    /// Repaint or Cover.
    #[id = "mode"]
    pub mode: EnumParam<TaskMode>,
    /// Region start in seconds of host timeline (used when not following the loop).
    #[id = "start"]
    pub start: FloatParam,
    /// Region end in seconds of host timeline.
    #[id = "end"]
    pub end: FloatParam,
    /// Use the host loop range as the region when the host reports one.
    #[id = "follow_loop"]
    pub follow_loop: BoolParam,
    /// Repaint strength, or cover strength (the fraction of steps that follow the source's structure).
    #[id = "strength"]
    pub strength: FloatParam,
    /// Original or Take.
    #[id = "monitor"]
    pub monitor: EnumParam<Monitor>,
    /// Crossfade at the take's region edges, in milliseconds.
    #[id = "xfade_ms"]
    pub xfade_ms: FloatParam,
    /// Noise seed of the next job.
    #[id = "seed"]
    pub seed: IntParam,
    /// Key written into the prompt.
    #[id = "key"]
    pub key: EnumParam<Key>,
    /// Momentary trigger: each off→on change starts a job (for hosts without the editor).
    #[id = "generate"]
    pub generate: BoolParam,
    /// On: steps, shift and guidance are the checkpoint variant's defaults (model/variant.rs `Variant::defaults`)
    /// and the three controls below are ignored; off: the controls apply.
    #[id = "variant_defaults"]
    pub variant_defaults: BoolParam,
    /// Classifier-free guidance scale (APG in studio mode); guided variants only, turbo variants always run at 1.
    #[id = "guidance"]
    pub guidance: FloatParam,
    /// Diffusion steps.
    #[id = "steps"]
    pub steps: IntParam,
    /// Schedule shift.
    #[id = "shift"]
    pub shift: FloatParam,
    /// Cover noise strength: how much of the source's own latent the cover starts from (0 = pure noise).
    #[id = "cover_noise"]
    pub cover_noise: FloatParam,

    /// Style caption.
    #[persist = "prompt"]
    pub prompt: RwLock<String>,
    /// Lyrics (empty = instrumental).
    #[persist = "lyrics"]
    pub lyrics: RwLock<String>,
    /// The takes list, its files and the selected take.
    #[persist = "takes"]
    pub takes: TakesField,
    /// Capture capacity in minutes; applies at the next activation.
    #[persist = "capture_minutes"]
    pub capture_minutes: AtomicU32,
    /// Vocal language of the lyrics, one of [`LANGUAGES`].
    #[persist = "language"]
    pub language: RwLock<String>,
    /// The timbre reference of the next jobs.
    #[persist = "reference"]
    pub reference: RwLock<Reference>,
}

impl Default for RetakeParams {
    fn default() -> Self {
        let seconds = |name: &str, default: f32| {
            FloatParam::new(name, default, FloatRange::Linear { min: 0.0, max: MAX_REGION_SECONDS })
                .with_unit(" s")
                .with_step_size(0.01)
        };
        Self {
            mode: EnumParam::new("Mode", TaskMode::Repaint),
            start: seconds("Start", 0.0),
            end: seconds("End", 10.0),
            follow_loop: BoolParam::new("Follow loop", true),
            strength: FloatParam::new("Strength", 1.0, FloatRange::Linear { min: 0.0, max: 1.0 }).with_step_size(0.01),
            monitor: EnumParam::new("Monitor", Monitor::Take),
            xfade_ms: FloatParam::new("Crossfade", 50.0, FloatRange::Linear { min: 0.0, max: 500.0 })
                .with_unit(" ms")
                .with_step_size(1.0),
            seed: IntParam::new("Seed", 42, IntRange::Linear { min: 0, max: 999_999 }),
            key: EnumParam::new("Key", Key::Auto),
            generate: BoolParam::new("Generate", false),
            variant_defaults: BoolParam::new("Variant defaults", true),
            guidance: FloatParam::new("Guidance", GUIDED_CFG, FloatRange::Linear { min: 1.0, max: 10.0 })
                .with_step_size(0.1),
            steps: IntParam::new("Steps", GUIDED_STEPS, IntRange::Linear { min: 1, max: MAX_STEPS }),
            shift: FloatParam::new("Shift", 3.0, FloatRange::Linear { min: 1.0, max: 5.0 }).with_step_size(0.1),
            cover_noise: FloatParam::new("Cover noise", 0.0, FloatRange::Linear { min: 0.0, max: 1.0 })
                .with_step_size(0.01),
            prompt: RwLock::new(String::new()),
            lyrics: RwLock::new(String::new()),
            takes: TakesField::default(),
            capture_minutes: AtomicU32::new(DEFAULT_CAPTURE_MINUTES),
            language: RwLock::new(LANGUAGES[0].to_string()),
            reference: RwLock::new(Reference::None),
        }
    }
}

/// Brings a saved state into the ranges the parameters and persisted numbers allow, before nice-plug applies it
/// (called from [`Plugin::filter_state`]; a project file is text anyone can edit). nice-plug stores a float or
/// integer as given and an enum index unchecked, and panics where the host later asks for the text of an index
/// past the last variant, in a callback that cannot unwind. So: a NaN float and an enum index out of range
/// become the default (an out-of-range index has no nearest variant); other floats and integers are clamped to
/// their range; `capture_minutes` is clamped to [`CAPTURE_MINUTES`] (default when it is not a number); a
/// `takes` field that is not JSON becomes `null`, which the takes list reports as unreadable instead of nice-plug
/// dropping it without a word.
pub fn sanitize_state(state: &mut PluginState) {
    let defaults = RetakeParams::default();
    for (id, ptr, _) in defaults.param_map() {
        let Some(value) = state.params.get_mut(&id) else { continue };
        // SAFETY: `ptr` points into `defaults`, which lives until the end of this function.
        let (low, high, default) =
            unsafe { (ptr.preview_plain(0.0), ptr.preview_plain(1.0), ptr.default_plain_value()) };
        let (min, max) = (low.min(high), low.max(high));
        match (ptr, value) {
            (ParamPtr::FloatParam(_), ParamValue::F32(plain)) => {
                *plain = if plain.is_nan() { default } else { plain.clamp(min, max) };
            }
            (ParamPtr::IntParam(_), ParamValue::I32(plain)) => *plain = (*plain).clamp(min as i32, max as i32),
            (ParamPtr::EnumParam(_), ParamValue::I32(index)) if !(min as i32..=max as i32).contains(index) => {
                *index = default as i32;
            }
            _ => {}
        }
    }
    if let Some(text) = state.fields.get_mut("capture_minutes") {
        let minutes = match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Number(number)) if number.as_i64().is_some() || number.as_u64().is_some() => {
                let whole = number.as_i64().unwrap_or(i64::MAX);
                whole.clamp(i64::from(*CAPTURE_MINUTES.start()), i64::from(*CAPTURE_MINUTES.end())) as u32
            }
            _ => DEFAULT_CAPTURE_MINUTES,
        };
        *text = minutes.to_string();
    }
    if let Some(text) = state.fields.get_mut("language") {
        if !serde_json::from_str::<String>(text).is_ok_and(|language| LANGUAGES.contains(&language.as_str())) {
            *text = serde_json::to_string(LANGUAGES[0]).unwrap_or_default();
        }
    }
    if let Some(text) = state.fields.get_mut("takes") {
        if serde_json::from_str::<serde_json::Value>(text).is_err() {
            *text = "null".to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn state(params: &[(&str, ParamValue)], fields: &[(&str, &str)]) -> PluginState {
        PluginState {
            version: String::new(),
            params: params.iter().map(|(id, value)| (id.to_string(), value.clone())).collect(),
            fields: fields.iter().map(|(key, text)| (key.to_string(), text.to_string())).collect::<BTreeMap<_, _>>(),
        }
    }

    fn param<'a>(state: &'a PluginState, id: &str) -> &'a ParamValue {
        &state.params[id]
    }

    #[test]
    fn out_of_range_enum_indices_become_the_default_and_valid_ones_stay() {
        let mut hostile =
            state(&[("key", ParamValue::I32(25)), ("mode", ParamValue::I32(-1)), ("monitor", ParamValue::I32(0))], &[]);
        sanitize_state(&mut hostile);
        assert!(matches!(param(&hostile, "key"), ParamValue::I32(0)));
        assert!(matches!(param(&hostile, "mode"), ParamValue::I32(0)));
        assert!(matches!(param(&hostile, "monitor"), ParamValue::I32(0)), "index 0 (Original) is valid and kept");
        let mut by_id = state(&[("key", ParamValue::String("zz-minor".into()))], &[]);
        sanitize_state(&mut by_id);
        assert!(
            matches!(param(&by_id, "key"), ParamValue::String(id) if id == "zz-minor"),
            "nice-plug ignores unknown ids"
        );
    }

    #[test]
    fn floats_are_clamped_to_their_range_and_nan_becomes_the_default() {
        let mut hostile = state(
            &[
                ("xfade_ms", ParamValue::F32(3e38)),
                ("start", ParamValue::F32(-5.0)),
                ("end", ParamValue::F32(f32::INFINITY)),
                ("strength", ParamValue::F32(f32::NAN)),
                ("seed", ParamValue::I32(-7)),
                ("follow_loop", ParamValue::Bool(false)),
            ],
            &[],
        );
        sanitize_state(&mut hostile);
        assert!(matches!(param(&hostile, "xfade_ms"), ParamValue::F32(x) if *x == 500.0));
        assert!(matches!(param(&hostile, "start"), ParamValue::F32(x) if *x == 0.0));
        assert!(matches!(param(&hostile, "end"), ParamValue::F32(x) if *x == MAX_REGION_SECONDS));
        assert!(matches!(param(&hostile, "strength"), ParamValue::F32(x) if *x == 1.0));
        assert!(matches!(param(&hostile, "seed"), ParamValue::I32(0)));
        assert!(matches!(param(&hostile, "follow_loop"), ParamValue::Bool(false)));
        let mut fine = state(&[("xfade_ms", ParamValue::F32(37.5)), ("seed", ParamValue::I32(31_337))], &[]);
        sanitize_state(&mut fine);
        assert!(matches!(param(&fine, "xfade_ms"), ParamValue::F32(x) if *x == 37.5));
        assert!(matches!(param(&fine, "seed"), ParamValue::I32(31_337)));
    }

    #[test]
    fn capture_minutes_are_clamped_and_an_unreadable_takes_field_becomes_null() {
        for (saved, kept) in
            [("4000000000", "120"), ("0", "1"), ("-3", "1"), ("\"lots\"", "10"), ("2.5", "10"), ("30", "30")]
        {
            let mut hostile = state(&[], &[("capture_minutes", saved), ("takes", "{ not json")]);
            sanitize_state(&mut hostile);
            assert_eq!(hostile.fields["capture_minutes"], kept, "saved {saved}");
            assert_eq!(hostile.fields["takes"], "null");
        }
        let mut fine = state(&[], &[("takes", "{\"project_id\":\"0123456789abcdef\"}")]);
        sanitize_state(&mut fine);
        assert_eq!(fine.fields["takes"], "{\"project_id\":\"0123456789abcdef\"}");
    }

    #[test]
    fn a_language_the_prompt_does_not_know_becomes_unknown() {
        for (saved, kept) in [("\"ja\"", "\"ja\""), ("\"klingon\"", "\"unknown\""), ("7", "\"unknown\"")] {
            let mut restored = state(&[], &[("language", saved)]);
            sanitize_state(&mut restored);
            assert_eq!(restored.fields["language"], kept, "saved {saved}");
        }
    }

    #[test]
    fn keyscale_is_the_display_name_and_auto_is_absent() {
        assert_eq!(Key::Auto.keyscale(), None);
        assert_eq!(Key::FSharpMinor.keyscale().as_deref(), Some("F# minor"));
        assert_eq!(Key::BFlatMajor.keyscale().as_deref(), Some("Bb major"));
    }
}
