//! A headless CLAP host on `clack-host` (docs/plugin-hosting.md §3d): loads a `.clap`, activates it at a sample rate
//! and block size, processes blocks with a transport and parameter events, and saves / loads state.
//!
//! The harness is single-threaded: the thread that owns a [`HostedPlugin`] is both the plugin's main thread
//! and its audio thread, and serves the plugin's `request_callback` between blocks.

mod error;
mod params;
mod transport;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use clack_extensions::params::PluginParams;
use clack_extensions::state::PluginState;
use clack_host::events::event_types::{ParamValueEvent, TransportEvent};
use clack_host::events::Pckn;
use clack_host::prelude::*;

pub use error::{HostError, Result};
pub use params::{ParamDescription, ParamTable};
pub use transport::Timeline;

/// The harness's callbacks: it only records that the plugin asked for a main-thread callback.
#[derive(Debug, Default)]
pub struct HostShared {
    callback_requested: AtomicBool,
}

impl SharedHandler<'_> for HostShared {
    fn request_restart(&self) {}

    fn request_process(&self) {}

    fn request_callback(&self) {
        self.callback_requested.store(true, Ordering::Release);
    }
}

/// The harness's host type for `clack-host`.
pub struct TestHost;

impl HostHandlers for TestHost {
    type Shared<'a> = HostShared;
    type MainThread<'a> = ();
    type AudioProcessor<'a> = ();
}

/// A loaded `.clap` file.
pub struct ClapBundle {
    entry: PluginEntry,
}

impl ClapBundle {
    /// Loads the CLAP bundle at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let load_error = |message: String| HostError::Load { path: path.to_path_buf(), message };
        if !path.is_file() {
            return Err(load_error("no such file".to_string()));
        }
        // SAFETY: loading a library runs its initialisers; the file is a CLAP bundle built by this workspace.
        let entry = unsafe { PluginEntry::load(path) }.map_err(|err| load_error(err.to_string()))?;
        Ok(Self { entry })
    }

    /// The id of the first plugin the bundle's factory lists.
    fn first_plugin_id(&self) -> Result<std::ffi::CString> {
        let lifecycle = |message: &str| HostError::Lifecycle { step: "instantiate", message: message.to_string() };
        let factory = self.entry.get_plugin_factory().ok_or_else(|| lifecycle("the bundle has no plugin factory"))?;
        let descriptor = factory.plugin_descriptors().next().ok_or_else(|| lifecycle("the factory lists no plugin"))?;
        let id = descriptor.id().ok_or_else(|| lifecycle("the first plugin has no id"))?;
        Ok(id.to_owned())
    }

    /// Creates an instance of the bundle's (first) plugin.
    pub fn instantiate(&self) -> Result<HostedPlugin> {
        let id = self.first_plugin_id()?;
        let host_info = HostInfo::new("retake-tests", "Retake", "https://github.com/retake-audio/retake", "0.1.0")
            .map_err(|err| HostError::Usage(err.to_string()))?;
        let mut instance =
            PluginInstance::<TestHost>::new(|_| HostShared::default(), |_| (), &self.entry, &id, &host_info)
                .map_err(|err| HostError::Lifecycle { step: "instantiate", message: err.to_string() })?;
        let handle = instance.plugin_handle();
        let params_extension = handle.get_extension::<PluginParams>().ok_or(HostError::MissingExtension("params"))?;
        let state_extension = handle.get_extension::<PluginState>().ok_or(HostError::MissingExtension("state"))?;
        let params = ParamTable::read(&params_extension, &handle)?;
        Ok(HostedPlugin {
            instance,
            params_extension,
            state_extension,
            params,
            active: None,
            pending_events: EventBuffer::new(),
            output_events: EventBuffer::new(),
        })
    }
}

/// What exists while the plugin is active: the started processor and preallocated block buffers.
struct Active {
    processor: StartedPluginAudioProcessor<TestHost>,
    sample_rate: f64,
    max_block: usize,
    inputs: Vec<Vec<f32>>,
    outputs: Vec<Vec<f32>>,
    input_ports: AudioPorts,
    output_ports: AudioPorts,
    steady_time: u64,
}

/// One plugin instance driven by the harness.
pub struct HostedPlugin {
    instance: PluginInstance<TestHost>,
    params_extension: PluginParams,
    state_extension: PluginState,
    params: ParamTable,
    active: Option<Active>,
    pending_events: EventBuffer,
    output_events: EventBuffer,
}

impl HostedPlugin {
    /// The parameters the plugin reported when it was created.
    pub fn params(&self) -> &ParamTable {
        &self.params
    }

    /// Activates the plugin for `channels` channels at `sample_rate`, with blocks of 1 to `max_block` frames,
    /// and starts processing.
    pub fn activate(&mut self, sample_rate: f64, max_block: usize, channels: usize) -> Result<()> {
        if self.active.is_some() {
            return Err(HostError::Usage("activate() called on an active plugin".to_string()));
        }
        let configuration =
            PluginAudioConfiguration { sample_rate, min_frames_count: 1, max_frames_count: max_block as u32 };
        let stopped = self
            .instance
            .activate(|_, _| (), configuration)
            .map_err(|err| HostError::Lifecycle { step: "activate", message: err.to_string() })?;
        let processor = stopped
            .start_processing()
            .map_err(|err| HostError::Lifecycle { step: "start_processing", message: err.to_string() })?;
        self.active = Some(Active {
            processor,
            sample_rate,
            max_block,
            inputs: vec![vec![0.0; max_block]; channels],
            outputs: vec![vec![0.0; max_block]; channels],
            input_ports: AudioPorts::with_capacity(channels, 1),
            output_ports: AudioPorts::with_capacity(channels, 1),
            steady_time: 0,
        });
        Ok(())
    }

    /// Stops processing and deactivates the plugin.
    pub fn deactivate(&mut self) {
        if let Some(active) = self.active.take() {
            self.instance.deactivate(active.processor.stop_processing());
        }
    }

    /// The sample rate and largest block of the current activation.
    pub fn activation(&self) -> Option<(f64, usize)> {
        self.active.as_ref().map(|active| (active.sample_rate, active.max_block))
    }

    /// Queues a value change of parameter `name` (a CLAP value in the parameter's `[min, max]`); it reaches the
    /// plugin with the next processed block.
    pub fn set_param(&mut self, name: &str, value: f64) -> Result<()> {
        let param = self.params.find(name)?;
        if !(param.min..=param.max).contains(&value) {
            return Err(HostError::Param(format!("\"{name}\": {value} is outside {}..={}", param.min, param.max)));
        }
        self.pending_events.push(&ParamValueEvent::new(0, param.id, Pckn::match_all(), value));
        Ok(())
    }

    /// Queues parameter `name` set to the value the plugin parses from `text` (e.g. "Cover", "2.5 s").
    pub fn set_param_text(&mut self, name: &str, text: &str) -> Result<()> {
        let id = self.params.find(name)?.id;
        let c_text = std::ffi::CString::new(text).map_err(|err| HostError::Param(err.to_string()))?;
        let value = self
            .params_extension
            .text_to_value(&self.instance.plugin_handle(), id, &c_text)
            .ok_or_else(|| HostError::Param(format!("\"{name}\": the plugin does not accept the text \"{text}\"")))?;
        self.set_param(name, value)
    }

    /// The current CLAP value of parameter `name`.
    pub fn param_value(&mut self, name: &str) -> Result<f64> {
        let id = self.params.find(name)?.id;
        self.params_extension
            .get_value(&self.instance.plugin_handle(), id)
            .ok_or_else(|| HostError::Param(format!("\"{name}\": the plugin returned no value")))
    }

    /// The plugin's display text for parameter `name` at CLAP value `value`.
    pub fn param_text(&mut self, name: &str, value: f64) -> Result<String> {
        let id = self.params.find(name)?.id;
        let mut buffer = [0u8; 256];
        let text = self
            .params_extension
            .value_to_text(&self.instance.plugin_handle(), id, value, &mut buffer)
            .map_err(|_| HostError::Param(format!("\"{name}\": the plugin has no text for {value}")))?;
        Ok(String::from_utf8_lossy(text).into_owned())
    }

    /// Saves the plugin's state.
    pub fn save_state(&mut self) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.state_extension
            .save(&self.instance.plugin_handle(), &mut bytes)
            .map_err(|err| HostError::State(format!("save failed: {err}")))?;
        Ok(bytes)
    }

    /// Loads a state saved by [`HostedPlugin::save_state`] (possibly from another instance).
    pub fn load_state(&mut self, bytes: &[u8]) -> Result<()> {
        self.state_extension
            .load(&self.instance.plugin_handle(), &mut &bytes[..])
            .map_err(|err| HostError::State(format!("load of {} bytes failed: {err}", bytes.len())))?;
        self.serve_main_thread();
        Ok(())
    }

    /// Runs the plugin's main-thread callback if it asked for one.
    fn serve_main_thread(&mut self) {
        if self.instance.access_shared_handler(|shared| shared.callback_requested.swap(false, Ordering::AcqRel)) {
            self.instance.call_on_main_thread_callback();
        }
    }

    /// Processes one block in place: `audio` holds one slice per channel, all of the same length (at most the
    /// activation's block size), input on the way in and output on the way out. Queued parameter changes are
    /// sent with this block.
    pub fn process(&mut self, audio: &mut [&mut [f32]], transport: Option<&TransportEvent>) -> Result<()> {
        let active = self.active.as_mut().ok_or_else(|| HostError::Usage("process() before activate()".into()))?;
        let frames = audio.first().map_or(0, |channel| channel.len());
        if audio.len() != active.inputs.len() || frames > active.max_block || audio.iter().any(|c| c.len() != frames) {
            return Err(HostError::Usage(format!(
                "a block of {} channels x {frames} frames does not fit the activation ({} channels, at most {} frames)",
                audio.len(),
                active.inputs.len(),
                active.max_block
            )));
        }
        for (input, channel) in active.inputs.iter_mut().zip(audio.iter()) {
            input[..frames].copy_from_slice(channel);
        }
        let inputs = active.input_ports.with_input_buffers([AudioPortBuffer {
            latency: 0,
            channels: AudioPortBufferType::f32_input_only(
                active.inputs.iter_mut().map(|buffer| InputChannel::variable(&mut buffer[..frames])),
            ),
        }]);
        let mut outputs = active.output_ports.with_output_buffers([AudioPortBuffer {
            latency: 0,
            channels: AudioPortBufferType::f32_output_only(
                active.outputs.iter_mut().map(|buffer| &mut buffer[..frames]),
            ),
        }]);
        self.output_events.clear();
        let status = active.processor.process(
            &inputs,
            &mut outputs,
            &self.pending_events.as_input(),
            &mut self.output_events.as_output(),
            Some(active.steady_time),
            transport,
        );
        self.pending_events.clear();
        status.map_err(|err| HostError::Lifecycle { step: "process", message: err.to_string() })?;
        active.steady_time += frames as u64;
        for (channel, output) in audio.iter_mut().zip(&active.outputs) {
            channel.copy_from_slice(&output[..frames]);
        }
        self.serve_main_thread();
        Ok(())
    }

    /// Plays `input` (one `Vec` per channel) through the plugin from timeline sample `start`, in blocks of the
    /// activation's block size, with the transport of `timeline`; returns the output.
    pub fn render(
        &mut self,
        input: &[Vec<f32>],
        start: i64,
        timeline: &Timeline,
        playing: bool,
    ) -> Result<Vec<Vec<f32>>> {
        let (_, block) = self.activation().ok_or_else(|| HostError::Usage("render() before activate()".into()))?;
        let mut output = input.to_vec();
        let frames = output.first().map_or(0, Vec::len);
        let mut done = 0;
        while done < frames {
            let n = block.min(frames - done);
            let transport = timeline.transport(start + done as i64, playing);
            let mut channels: Vec<&mut [f32]> = output.iter_mut().map(|channel| &mut channel[done..done + n]).collect();
            self.process(&mut channels, Some(&transport))?;
            done += n;
        }
        Ok(output)
    }
}

impl Drop for HostedPlugin {
    fn drop(&mut self) {
        self.deactivate();
    }
}
