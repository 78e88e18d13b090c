//! Retake: a VST3 + CLAP insert that captures a track, repaints or covers a region of it with ACE-Step 1.5,
//! and plays the result in place. This file only wires the modules to nice-plug.

use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam::channel::{unbounded, Receiver, Sender};
use nice_plug_egui::EguiEditor;
use nih_plug::prelude::*;

// nice-plug's derive macros name the crate `::nice_plug`; the workspace depends on it as `nih_plug`.
extern crate nih_plug as nice_plug;

pub mod capture;
pub mod editor;
pub mod engine_share;
pub mod engine_status;
pub mod error;
pub mod jobs;
pub mod params;
pub mod playback;
pub mod realtime;
pub mod region;
pub mod reveal;
mod seqlock;
pub mod settings;
pub mod shared;
pub mod takes;
pub mod transport;
mod unload;
pub mod user_folders;
pub mod worker;

use capture::CaptureStore;
use editor::RetakeEditor;
use params::RetakeParams;
use playback::{take_channel, TakeSender};
use realtime::{BlockControls, Realtime};
use shared::Shared;
use transport::TransportSnapshot;
use worker::{spawn_worker, Command};

#[cfg(all(test, not(feature = "assert_process_allocs")))]
#[global_allocator]
static ALLOCATOR: nice_assert_no_alloc::AllocDisabler = nice_assert_no_alloc::AllocDisabler;

/// The longest `activate()` waits for the worker to load the restored takes.
const TAKES_READY_WAIT: Duration = Duration::from_secs(5);

/// The capture store's shape: channels, sample rate, capacity in minutes.
type CaptureShape = (usize, u32, u32);

/// The plugin instance.
pub struct Retake {
    params: Arc<RetakeParams>,
    shared: Arc<Shared>,
    realtime: Realtime,
    capture_shape: Option<CaptureShape>,
    commands: Sender<Command>,
    /// The worker's ends until it is started in the first `activate()`.
    worker_parts: Option<(Receiver<Command>, TakeSender)>,
    worker: Option<JoinHandle<()>>,
    /// Activations so far, numbering the worker's answers.
    activations: u64,
}

impl Default for Retake {
    fn default() -> Self {
        let params = Arc::new(RetakeParams::default());
        let shared = Arc::new(Shared::new(params.clone()));
        let (take_sender, player) = take_channel();
        let (commands, command_receiver) = unbounded();
        Self {
            params,
            realtime: Realtime::new(shared.clone(), player),
            shared,
            capture_shape: None,
            commands,
            worker_parts: Some((command_receiver, take_sender)),
            worker: None,
            activations: 0,
        }
    }
}

impl Plugin for Retake {
    const NAME: &'static str = "Retake";
    const VENDOR: &'static str = "Retake";
    const URL: &'static str = "https://github.com/retake-audio/retake";
    const EMAIL: &'static str = "";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    const AUDIO_IO_LAYOUTS: &'static [AudioIOLayout] = &[
        AudioIOLayout {
            main_input_channels: NonZeroU32::new(2),
            main_output_channels: NonZeroU32::new(2),
            ..AudioIOLayout::const_default()
        },
        AudioIOLayout {
            main_input_channels: NonZeroU32::new(1),
            main_output_channels: NonZeroU32::new(1),
            ..AudioIOLayout::const_default()
        },
    ];

    type Editor = EguiEditor<RetakeEditor>;
    type SysExMessage = ();
    type BackgroundTask = ();

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
    }

    fn filter_state(state: &mut PluginState) {
        params::sanitize_state(state);
    }

    fn editor(&mut self, _async_executor: AsyncExecutor<Self>) -> Option<Self::Editor> {
        editor::create_editor(self.shared.clone(), self.commands.clone())
    }

    fn activate(
        &mut self,
        audio_io_layout: &AudioIOLayout,
        buffer_config: &BufferConfig,
        _context: &mut impl ActivateContext<Self>,
    ) -> bool {
        let channels = audio_io_layout.main_output_channels.map_or(2, NonZeroU32::get) as usize;
        let sample_rate = buffer_config.sample_rate.round() as u32;
        let minutes = self
            .params
            .capture_minutes
            .load(Ordering::Relaxed)
            .clamp(*params::CAPTURE_MINUTES.start(), *params::CAPTURE_MINUTES.end());
        let shape = (channels, sample_rate, minutes);
        let current = self.shared.capture().filter(|_| self.capture_shape == Some(shape));
        let capture = current.unwrap_or_else(|| {
            let store = Arc::new(CaptureStore::new(channels, sample_rate, f64::from(minutes) * 60.0));
            *self.shared.capture.write() = Some(store.clone());
            self.capture_shape = Some(shape);
            store
        });
        self.realtime.prepare(capture, sample_rate, channels, buffer_config.max_buffer_size as usize);
        if let Some((commands, takes)) = self.worker_parts.take() {
            match spawn_worker(self.shared.clone(), commands, takes) {
                Ok(worker) => self.worker = Some(worker),
                Err(err) => {
                    self.shared.board.lock().error = Some(format!("the job worker could not start: {err}"));
                }
            }
        }
        // The worker exists for as long as the plugin does. Opening a project restores the takes list before this
        // activation; the selected take is loaded before the first block, so an offline render started at once
        // plays it from its start (bounded: a worker that cannot answer leaves the take to follow).
        self.activations += 1;
        let _ = self.commands.send(Command::Activated { sample_rate, channels, serial: self.activations });
        if self.worker.is_some() {
            self.shared.wait_for_takes(self.activations, TAKES_READY_WAIT);
        }
        true
    }

    fn process(
        &mut self,
        buffer: &mut Buffer,
        _aux: &mut AuxiliaryBuffers,
        context: &mut impl ProcessContext<Self>,
    ) -> ProcessStatus {
        let transport = TransportSnapshot::from_host(context.transport());
        self.realtime.process(buffer.as_slice(), &transport, BlockControls::from_params(&self.params));
        ProcessStatus::Normal
    }
}

impl Drop for Retake {
    /// Never waits for a job: the worker cancels it and, if still busy after a short grace, finishes behind the host
    /// (see [`unload`]).
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        if let Some(worker) = self.worker.take() {
            unload::finish_behind(worker);
        }
    }
}

impl ClapPlugin for Retake {
    const CLAP_ID: &'static str = "audio.retake.retake";
    const CLAP_DESCRIPTION: Option<&'static str> =
        Some("Repaint or cover a region of your track with ACE-Step 1.5, in place");
    const CLAP_MANUAL_URL: Option<&'static str> = Some(Self::URL);
    const CLAP_SUPPORT_URL: Option<&'static str> = None;
    const CLAP_FEATURES: &'static [ClapFeature] =
        &[ClapFeature::AudioEffect, ClapFeature::Stereo, ClapFeature::Mono, ClapFeature::Utility];
}

impl Vst3Plugin for Retake {
    const VST3_CLASS_ID: [u8; 16] = *b"RetakeAceStep15!";
    const VST3_SUBCATEGORIES: &'static [Vst3SubCategory] = &[Vst3SubCategory::Fx, Vst3SubCategory::Tools];
}

/// How many times the engine this library's instances share (src/engine_share.rs) has loaded a model, as of the
/// engine started last; 0 before the first. With [`retake_shared_engine_clients`], what a host-side test reads (by
/// symbol, from the loaded bundle) to check that the instances of one process load the model once
/// (tests/src/scenarios.rs, `two-instances`).
#[no_mangle]
pub extern "C" fn retake_shared_engine_model_loads() -> u64 {
    engine_share::SHARED_ENGINE.stats().map_or(0, |stats| stats.model_loads)
}

/// How many instances are connected to the shared engine now (see [`retake_shared_engine_model_loads`]).
#[no_mangle]
pub extern "C" fn retake_shared_engine_clients() -> u64 {
    engine_share::SHARED_ENGINE.stats().map_or(0, |stats| stats.clients as u64)
}

nice_export_clap!(Retake);
nice_export_vst3!(Retake);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_reports_every_documented_parameter_id() {
        let plugin = Retake::default();
        let mut ids: Vec<String> = plugin.params().param_map().into_iter().map(|(id, _, _)| id).collect();
        ids.sort();
        let mut expected = [
            "mode",
            "start",
            "end",
            "follow_loop",
            "strength",
            "monitor",
            "xfade_ms",
            "seed",
            "key",
            "generate",
            "variant_defaults",
            "guidance",
            "steps",
            "shift",
            "cover_noise",
        ];
        expected.sort();
        assert_eq!(ids, expected);
    }

    #[test]
    fn plugin_offers_stereo_and_mono_layouts() {
        let channels: Vec<_> = Retake::AUDIO_IO_LAYOUTS
            .iter()
            .map(|layout| {
                (layout.main_input_channels.map(NonZeroU32::get), layout.main_output_channels.map(NonZeroU32::get))
            })
            .collect();
        assert_eq!(channels, vec![(Some(2), Some(2)), (Some(1), Some(1))]);
    }

    #[test]
    fn persisted_fields_round_trip_through_serialization() {
        let plugin = Retake::default();
        *plugin.params.prompt.write() = "tape-saturated funk".into();
        *plugin.params.language.write() = "yue".into();
        *plugin.params.reference.write() = params::Reference::File("/songs/voice.wav".into());
        let fields = plugin.params.serialize_fields();
        let restored = Retake::default();
        restored.params.deserialize_fields(&fields);
        assert_eq!(*restored.params.prompt.read(), "tape-saturated funk");
        assert_eq!(*restored.params.language.read(), "yue");
        assert_eq!(*restored.params.reference.read(), params::Reference::File("/songs/voice.wav".into()));
        assert_eq!(restored.params.takes.read().project_id, plugin.params.takes.read().project_id);
        assert_eq!(restored.params.takes.restores(), 1);
    }
}
