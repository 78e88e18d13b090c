//! The plugin's one error type: what the status line tells a musician when an action cannot go ahead. Engine
//! failures pass through unchanged; conditions of the plugin itself (nothing captured, a region not fully
//! captured, the host rate changed, a take that cannot play, settings that do not parse) say what is wrong and
//! what to do, without the engine's "invalid input:" prefix.

use std::path::PathBuf;
use std::sync::Arc;

use retake_engine::EngineError;

use crate::takes::TakeProblem;

/// Result alias used across the plugin.
pub type Result<T> = std::result::Result<T, PluginError>;

/// Everything that can stop a plugin action, each with the line the editor shows.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The engine failed (model files, decoding, a job's inputs, …).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A problem found earlier (when the plugin started or the settings were reloaded), reported again
    /// where it stops an action.
    #[error(transparent)]
    Setup(Arc<PluginError>),
    /// No `activate()` yet, so there is no sample rate or channel count.
    #[error("the host has not activated Retake yet: start playback once, then generate")]
    NotActivated,
    /// No capture store exists yet.
    #[error("nothing has been captured yet: play the region through once with Retake on the track, then generate")]
    NothingCaptured,
    /// Generate while a job runs.
    #[error("a job is already running: wait for it or cancel it")]
    JobRunning,
    /// The Start/End parameters describe an empty or negative region.
    #[error(
        "{}the region comes from the Start/End parameters, and {start_s:.2}–{end_s:.2} s is empty: set End after \
         Start (or turn on Follow loop and set a loop range in the host)",
        if *no_host_loop { "the host reports no loop range, so " } else { "" }
    )]
    EmptyParameterRegion {
        /// Follow loop is on but the host reports no loop.
        no_host_loop: bool,
        /// The Start parameter, seconds.
        start_s: f32,
        /// The End parameter, seconds.
        end_s: f32,
    },
    /// A region of no frames.
    #[error("the region is empty")]
    EmptyRegion,
    /// Part of the region was never captured.
    #[error(
        "the region {:.2}–{:.2} s is not fully captured (nothing recorded at {:.2}–{:.2} s): play that part \
         through once with Retake on the track, then generate again",
        region_s.0, region_s.1, gap_s.0, gap_s.1
    )]
    NotCaptured {
        /// The region, seconds of host timeline.
        region_s: (f64, f64),
        /// The first stretch never captured, seconds of host timeline.
        gap_s: (f64, f64),
    },
    /// The audio thread started new capture chunks while the region was copied.
    #[error("the capture changed while it was being copied: generate again")]
    CaptureChanged,
    /// The audio thread kept rewriting the region through every copy attempt.
    #[error(
        "the region is being re-recorded right now and could not be copied consistently: stop the transport or \
         move it out of the region, then generate again"
    )]
    CaptureBusy,
    /// The capture was made at another host rate than the current one.
    #[error("the host sample rate changed since the audio was captured: play the region again")]
    RateChangedSinceCapture,
    /// The host rate changed between a job's start and its end.
    #[error("the host sample rate changed while the job ran: generate again")]
    RateChangedDuringJob,
    /// The engine did not accept the job.
    #[error("the engine did not take the job: {0}")]
    Submit(String),
    /// A LoRA row of the settings that names no file or has no usable scale.
    #[error("LoRA adapter {0}")]
    Lora(String),
    /// The timbre reference names a take the list no longer holds.
    #[error(
        "the timbre reference is take {0}, which is no longer in the takes list: pick another reference in the \
         editor's Timbre reference row, or None"
    )]
    ReferenceTakeGone(u64),
    /// The timbre reference file cannot be used (missing, unreadable, too short, silent).
    #[error(
        "the timbre reference `{}` cannot be used: {message}; pick another reference in the editor's Timbre \
         reference row, or None",
        path.display()
    )]
    Reference {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Select or Delete of an id the takes list does not hold.
    #[error("there is no take {0}")]
    NoSuchTake(u64),
    /// A take whose files cannot be played.
    #[error("take {id} cannot play: {problem}")]
    TakeCannotPlay {
        /// The take.
        id: u64,
        /// Why.
        problem: TakeProblem,
    },
    /// A take file Retake refuses to touch (outside the project's take folder, or not a regular file).
    #[error("{0}")]
    TakeFile(TakeProblem),
    /// Deleting a take file failed.
    #[error("cannot delete `{}`: {source}", path.display())]
    Delete {
        /// The file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// The takes list has handed out every id.
    #[error(
        "this project's takes list has used up its take ids: insert a new Retake instance on the track to start a \
         new list"
    )]
    TakeIdsExhausted,
    /// A project id that is not of the form Retake generates, so it cannot name a take folder.
    #[error("`{0}` is not a project id Retake makes (16 lowercase hex digits), so it names no take folder")]
    ProjectId(String),
    /// No per-user data folder: neither `XDG_DATA_HOME` nor `HOME` is an absolute path (Windows: neither `APPDATA`
    /// nor the application-data known folder is).
    #[cfg_attr(
        not(windows),
        error("cannot find a folder for take files: set XDG_DATA_HOME or HOME to an absolute path")
    )]
    #[cfg_attr(windows, error("cannot find a folder for take files: set APPDATA to an absolute path"))]
    NoDataFolder,
    /// No per-user settings folder: neither `XDG_CONFIG_HOME` nor `HOME` is an absolute path (Windows: neither
    /// `APPDATA` nor the application-data known folder is).
    #[cfg_attr(
        not(windows),
        error("cannot find the settings folder: set XDG_CONFIG_HOME or HOME to an absolute path")
    )]
    #[cfg_attr(windows, error("cannot find the settings folder: set APPDATA to an absolute path"))]
    NoConfigFolder,
    /// The settings file exists but cannot be read.
    #[error("cannot read the settings file `{}`: {source}", path.display())]
    SettingsUnreadable {
        /// The settings file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// The settings file is not the JSON the editor writes.
    #[error(
        "the settings file {} is not valid ({message}): fix or delete it, or save the settings again in the editor",
        path.display()
    )]
    SettingsInvalid {
        /// The settings file.
        path: PathBuf,
        /// What the JSON reader said.
        message: String,
    },
    /// The device setting is not a device.
    #[error("engine device: {0}")]
    Device(String),
    /// The VRAM budget setting is not a size.
    #[error("VRAM budget: {0}")]
    VramBudget(String),
    /// The variant setting names no ACE-Step 1.5 checkpoint.
    #[error("checkpoint variant: {0}")]
    Variant(String),
    /// The remote server setting is not a server address, or asks for what a server cannot do.
    #[error("server: {0}")]
    Server(String),
    /// The CPU precision setting is neither f32 nor bf16.
    #[error("CPU precision: {0}")]
    CpuPrecision(String),
}

impl From<TakeProblem> for PluginError {
    fn from(problem: TakeProblem) -> Self {
        Self::TakeFile(problem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_conditions_read_without_the_engine_prefix_and_engine_errors_pass_through() {
        assert_eq!(
            PluginError::NothingCaptured.to_string(),
            "nothing has been captured yet: play the region through once with Retake on the track, then generate"
        );
        let device = PluginError::Device("`gpu` is not a device".into());
        assert_eq!(PluginError::Setup(Arc::new(device)).to_string(), "engine device: `gpu` is not a device");
        let engine = PluginError::from(EngineError::invalid("the source is empty"));
        assert_eq!(engine.to_string(), "invalid input: the source is empty");
        let region = PluginError::EmptyParameterRegion { no_host_loop: true, start_s: 3.0, end_s: 2.0 };
        assert!(region.to_string().starts_with("the host reports no loop range, so the region"), "{region}");
    }
}
