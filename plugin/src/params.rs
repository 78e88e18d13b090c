//! Retake's parameters and persisted fields, with stable ids.

use std::sync::atomic::AtomicU32;

use nih_plug::prelude::*;
use parking_lot::RwLock;

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

/// Upper end of the Start/End parameters (one hour of host timeline).
const MAX_REGION_SECONDS: f32 = 3600.0;

/// Default capture capacity in minutes.
pub const DEFAULT_CAPTURE_MINUTES: u32 = 10;

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
            prompt: RwLock::new(String::new()),
            lyrics: RwLock::new(String::new()),
            takes: TakesField::default(),
            capture_minutes: AtomicU32::new(DEFAULT_CAPTURE_MINUTES),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyscale_is_the_display_name_and_auto_is_absent() {
        assert_eq!(Key::Auto.keyscale(), None);
        assert_eq!(Key::FSharpMinor.keyscale().as_deref(), Some("F# minor"));
        assert_eq!(Key::BFlatMajor.keyscale().as_deref(), Some("Bb major"));
    }
}
