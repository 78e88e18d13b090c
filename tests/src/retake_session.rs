//! Retake driven through the CLAP harness the way a user drives it in a DAW (README "How it works"): play the
//! track once, loop the region, press Generate, wait for the take, play again. Everything is observed through
//! the plugin's public surface only: output audio, saved state and parameters.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use nih_plug::prelude::Params;
use retake::params::RetakeParams;
use retake::takes::{TakeMeta, TakesState};
use retake_engine::audio::{read_wav, Audio};

use crate::clap_host::{ClapBundle, HostedPlugin, Timeline};
use crate::plugin_state::PluginState;
use crate::signal::test_signal;

/// Length of the played test signal.
pub const SIGNAL_S: f64 = 6.0;
/// The host loop that becomes the job region.
pub const LOOP_S: (f64, f64) = (2.0, 4.0);
/// Crossfade set for the round trips.
pub const XFADE_MS: f64 = 50.0;
/// Longest wait for a take (the tiny fixture model takes seconds; a debug bundle is slower).
pub const TAKE_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest wait for a finished take to reach the audio thread.
const PLAYBACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between blocks while the harness waits, pacing them as a host's audio callback would.
const PUMP_INTERVAL: Duration = Duration::from_millis(10);
/// Tempo of the test timeline.
const TEMPO: f64 = 96.0;

/// Retake's parameters as string id → display name (e.g. "follow_loop" → "Follow loop"), read from the
/// plugin's own parameter definitions.
pub fn param_names() -> HashMap<String, String> {
    let params = RetakeParams::default();
    params
        .param_map()
        .into_iter()
        // SAFETY: each pointer points into `params`, which outlives this call.
        .map(|(id, ptr, _)| (id, unsafe { ptr.name() }.to_string()))
        .collect()
}

/// One Retake instance in the harness, with the test signal and timeline it plays.
pub struct Session {
    plugin: HostedPlugin,
    names: HashMap<String, String>,
    timeline: Timeline,
    signal: Vec<Vec<f32>>,
    /// The host loop while generating, in seconds.
    loop_s: (f64, f64),
}

impl Session {
    /// Creates an instance from `bundle`; a `state` (from [`Session::save_state`]) is loaded before activation,
    /// as a DAW does when it opens a project. Activates at `sample_rate` with `block`-frame blocks.
    pub fn open(bundle: &ClapBundle, sample_rate: u32, block: usize, state: Option<&[u8]>) -> Result<Self, String> {
        let mut plugin = bundle.instantiate().map_err(|err| err.to_string())?;
        if let Some(state) = state {
            plugin.load_state(state).map_err(|err| err.to_string())?;
        }
        plugin.activate(f64::from(sample_rate), block, 2).map_err(|err| err.to_string())?;
        Ok(Self {
            plugin,
            names: param_names(),
            timeline: Timeline::new(f64::from(sample_rate), TEMPO),
            signal: test_signal(sample_rate, SIGNAL_S),
            loop_s: LOOP_S,
        })
    }

    /// The session playing `seconds` of the test signal instead, with the host loop at `loop_s` while generating.
    pub fn with_signal(mut self, seconds: f64, loop_s: (f64, f64)) -> Self {
        self.signal = test_signal(self.timeline.sample_rate as u32, seconds);
        self.loop_s = loop_s;
        self
    }

    /// The signal the session plays.
    pub fn signal(&self) -> &[Vec<f32>] {
        &self.signal
    }

    /// The host sample rate.
    pub fn sample_rate(&self) -> u32 {
        self.timeline.sample_rate as u32
    }

    fn name(&self, id: &str) -> Result<&str, String> {
        self.names.get(id).map(String::as_str).ok_or_else(|| format!("Retake has no parameter with id `{id}`"))
    }

    /// Queues parameter `id` (Retake's string id) set to the plugin's parse of `text`.
    pub fn set(&mut self, id: &str, text: &str) -> Result<(), String> {
        let name = self.name(id)?.to_string();
        self.plugin.set_param_text(&name, text).map_err(|err| err.to_string())
    }

    /// The current CLAP value of parameter `id`.
    pub fn value(&mut self, id: &str) -> Result<f64, String> {
        let name = self.name(id)?.to_string();
        self.plugin.param_value(&name).map_err(|err| err.to_string())
    }

    /// Saves the plugin state.
    pub fn save_state(&mut self) -> Result<Vec<u8>, String> {
        self.plugin.save_state().map_err(|err| err.to_string())
    }

    /// The decoded plugin state.
    pub fn state(&mut self) -> Result<PluginState, String> {
        PluginState::decode(&self.save_state()?)
    }

    /// Sets the style prompt (a persisted field, which only the editor or a state load can change) by loading
    /// the current state with the prompt replaced.
    pub fn set_prompt(&mut self, prompt: &str) -> Result<(), String> {
        self.set_field("prompt", &prompt)
    }

    /// Sets persisted field `key` (one only the editor or a state load can change) by loading the current state
    /// with the field replaced.
    pub fn set_field<T: serde::Serialize>(&mut self, key: &str, value: &T) -> Result<(), String> {
        let mut state = self.state()?;
        state.set_field(key, value)?;
        self.plugin.load_state(&state.encode()).map_err(|err| err.to_string())
    }

    /// Plays the whole signal from the start of the timeline, without a loop, and returns the output. The
    /// first pass is what Retake captures; later passes play the take in place.
    pub fn play(&mut self) -> Result<Vec<Vec<f32>>, String> {
        let timeline = self.timeline.without_loop();
        self.plugin.render(&self.signal, 0, &timeline, true).map_err(|err| err.to_string())
    }

    /// One block of silence with the transport stopped at the end of the signal and the loop active, as a DAW
    /// keeps calling the plugin while the user waits.
    fn idle_block(&mut self) -> Result<(), String> {
        let (_, block) = self.plugin.activation().ok_or("the plugin is not active")?;
        let timeline = self.timeline.with_loop(self.loop_s.0, self.loop_s.1);
        let transport = timeline.transport(self.signal[0].len() as i64, false);
        let mut left = vec![0.0f32; block];
        let mut right = vec![0.0f32; block];
        self.plugin.process(&mut [&mut left, &mut right], Some(&transport)).map_err(|err| err.to_string())
    }

    /// Keeps the stopped host running for `duration`.
    pub fn idle(&mut self, duration: Duration) -> Result<(), String> {
        let until = Instant::now() + duration;
        while Instant::now() < until {
            self.idle_block()?;
            std::thread::sleep(PUMP_INTERVAL);
        }
        Ok(())
    }

    /// The takes list from the saved state.
    pub fn takes(&mut self) -> Result<TakesState, String> {
        self.state()?.field("takes")
    }

    /// Sets the host loop to the session's loop ([`LOOP_S`] unless changed), turns Generate on for one block and off again, then keeps the host
    /// running until the state lists a new selected take and the take plays. Returns the take's record.
    pub fn generate(&mut self) -> Result<TakeMeta, String> {
        let before = self.takes()?.next_id;
        self.press_generate()?;
        let started = Instant::now();
        let take = loop {
            self.idle_block()?;
            let takes = self.takes()?;
            if let Some(take) = takes.selected.and_then(|id| takes.get(id)).filter(|take| take.id >= before) {
                break take.clone();
            }
            if started.elapsed() > TAKE_TIMEOUT {
                return Err(format!(
                    "no take after {} s: the state's takes list is {takes:?} (is the engine wired in, and does \
                     RETAKE_MODEL_DIR point at a model?)",
                    TAKE_TIMEOUT.as_secs()
                ));
            }
            std::thread::sleep(PUMP_INTERVAL);
        };
        self.wait_until_audible(&take)?;
        Ok(take)
    }

    /// Turns Generate on for one block and off again, as a button press or an automation pulse does.
    pub fn press_generate(&mut self) -> Result<(), String> {
        let generate = self.name("generate")?.to_string();
        self.plugin.set_param(&generate, 1.0).map_err(|err| err.to_string())?;
        self.idle_block()?;
        self.plugin.set_param(&generate, 0.0).map_err(|err| err.to_string())
    }

    /// Plays one block in the middle of `take`'s region until the output there differs from the input: the
    /// take has reached the audio thread.
    pub fn wait_until_audible(&mut self, take: &TakeMeta) -> Result<(), String> {
        let started = Instant::now();
        while !self.audible_now(take)? {
            if started.elapsed() > PLAYBACK_TIMEOUT {
                return Err(format!(
                    "take {} is listed in the state but the output at {:.2} s is still the input after {} s",
                    take.id,
                    (take.region.start + take.region.end) as f64 / 2.0 / self.timeline.sample_rate,
                    PLAYBACK_TIMEOUT.as_secs()
                ));
            }
            self.idle_block()?;
            std::thread::sleep(PUMP_INTERVAL);
        }
        Ok(())
    }

    /// Plays one block in the middle of `take`'s region, once: whether the output there differs from the input.
    pub fn audible_now(&mut self, take: &TakeMeta) -> Result<bool, String> {
        let (_, block) = self.plugin.activation().ok_or("the plugin is not active")?;
        let middle = (take.region.start + take.region.end) / 2;
        let start = middle as usize;
        let input: Vec<Vec<f32>> = self.signal.iter().map(|channel| channel[start..start + block].to_vec()).collect();
        let timeline = self.timeline.without_loop();
        let output = self.plugin.render(&input, middle, &timeline, true).map_err(|err| err.to_string())?;
        Ok(output != input)
    }
}

/// Reads a take's host-rate file: the audio the plugin plays.
pub fn take_audio(take: &TakeMeta) -> Result<Audio, String> {
    read_wav(&take.host_file.path).map_err(|err| format!("take {} file: {err}", take.id))
}

/// Checks that `take` covers exactly the loop region at `sample_rate`.
pub fn check_region(take: &TakeMeta, sample_rate: u32) -> Result<(), String> {
    let frames = |seconds: f64| (seconds * f64::from(sample_rate)).round() as i64;
    let expected = (frames(LOOP_S.0), frames(LOOP_S.1), sample_rate);
    let found = (take.region.start, take.region.end, take.region.sample_rate);
    if found != expected || take.host_file.sample_rate != sample_rate {
        return Err(format!(
            "take region (start, end, rate) is {found:?} with a {} Hz file; the loop was {expected:?}",
            take.host_file.sample_rate
        ));
    }
    Ok(())
}

/// The first frame where `output` and `expected` differ bit-wise, among frames `range` of every channel;
/// `expected(channel, frame)` gives the wanted sample.
fn first_mismatch(
    output: &[Vec<f32>],
    range: std::ops::Range<usize>,
    expected: impl Fn(usize, usize) -> f32,
) -> Option<(usize, usize, f32, f32)> {
    output.iter().enumerate().find_map(|(channel, samples)| {
        range.clone().find_map(|frame| {
            let (got, want) = (samples[frame], expected(channel, frame));
            (got.to_bits() != want.to_bits()).then_some((channel, frame, got, want))
        })
    })
}

/// Checks `output` is `input` bit for bit outside the take's region, and the take bit for bit inside it
/// except for the `fade_frames` crossfade at each edge.
pub fn check_take_in_place(
    output: &[Vec<f32>],
    input: &[Vec<f32>],
    take: &TakeMeta,
    take_audio: &Audio,
    fade_frames: usize,
) -> Result<(), String> {
    let (start, end) = (take.region.start as usize, take.region.end as usize);
    let frames = end - start;
    if take_audio.len() != frames || take_audio.channels.len() != output.len() {
        return Err(format!(
            "the take file has {} channels x {} frames; the region needs {} x {frames}",
            take_audio.channels.len(),
            take_audio.len(),
            output.len()
        ));
    }
    let rate = f64::from(take.region.sample_rate);
    let describe = |what: &str, (channel, frame, got, want): (usize, usize, f32, f32)| {
        format!(
            "{what}: channel {channel}, frame {frame} ({:.4} s): output {got:e}, expected {want:e}",
            frame as f64 / rate
        )
    };
    let outside = first_mismatch(output, 0..start, |c, i| input[c][i])
        .or_else(|| first_mismatch(output, end..input[0].len(), |c, i| input[c][i]));
    if let Some(mismatch) = outside {
        return Err(describe("outside the region the output is not the input", mismatch));
    }
    let fade = fade_frames.min(frames / 2);
    let inside = first_mismatch(output, start + fade..end - fade, |c, i| take_audio.channels[c][i - start]);
    if let Some(mismatch) = inside {
        return Err(describe("inside the region (past the crossfades) the output is not the take", mismatch));
    }
    Ok(())
}

/// Checks `output` is `input` bit for bit everywhere.
pub fn check_passes_through(output: &[Vec<f32>], input: &[Vec<f32>]) -> Result<(), String> {
    match first_mismatch(output, 0..input[0].len(), |c, i| input[c][i]) {
        None => Ok(()),
        Some((channel, frame, got, want)) => {
            Err(format!("output differs from the input at channel {channel}, frame {frame}: {got:e} vs {want:e}"))
        }
    }
}

/// The crossfade length in frames for [`XFADE_MS`] at `sample_rate`.
pub fn fade_frames(sample_rate: u32) -> usize {
    (XFADE_MS * 1e-3 * f64::from(sample_rate)).round() as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use retake::region::Region;
    use retake::takes::TakeFile;

    fn take(start: i64, end: i64) -> TakeMeta {
        let file = TakeFile { path: "take.wav".into(), sample_rate: 10, hash: 0 };
        TakeMeta {
            id: 0,
            created_unix_s: 0,
            region: Region { start, end, sample_rate: 10 },
            summary: String::new(),
            seed: 0,
            model_file: file.clone(),
            host_file: file,
        }
    }

    #[test]
    fn param_names_map_every_retake_id_to_its_display_name() {
        let names = param_names();
        assert_eq!(names.len(), 15);
        assert_eq!(names["variant_defaults"], "Variant defaults");
        assert_eq!(names["cover_noise"], "Cover noise");
        assert_eq!(names["follow_loop"], "Follow loop");
        assert_eq!(names["xfade_ms"], "Crossfade");
    }

    #[test]
    fn take_in_place_accepts_the_take_inside_and_input_outside_ignoring_fades() {
        let input = vec![vec![0.0f32; 10]];
        let take_audio = Audio::new(10, vec![vec![1.0; 6]]);
        let mut output = vec![vec![0.0, 0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 0.5, 0.0, 0.0]];
        assert_eq!(check_take_in_place(&output, &input, &take(2, 8), &take_audio, 1), Ok(()));
        output[0][4] = 0.9;
        let err = check_take_in_place(&output, &input, &take(2, 8), &take_audio, 1).unwrap_err();
        assert!(
            err.starts_with("inside the region (past the crossfades) the output is not the take: channel 0, frame 4")
        );
        output[0][4] = 1.0;
        output[0][9] = 1e-9;
        let err = check_take_in_place(&output, &input, &take(2, 8), &take_audio, 1).unwrap_err();
        assert!(err.starts_with("outside the region the output is not the input: channel 0, frame 9"), "{err}");
    }

    #[test]
    fn pass_through_is_bit_exact_so_negative_zero_differs() {
        let input = vec![vec![0.0f32, 0.25]];
        assert_eq!(check_passes_through(&input, &input), Ok(()));
        let err = check_passes_through(&[vec![-0.0, 0.25]], &input).unwrap_err();
        assert!(err.starts_with("output differs from the input at channel 0, frame 0"));
    }
}
