//! The audio thread's work for one block: publish the transport, capture the input, play the take in place,
//! and fall back to passing audio through if anything panics.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::capture::CaptureStore;
use crate::params::{Monitor, RetakeParams};
use crate::playback::Player;
use crate::shared::Shared;
use crate::transport::TransportSnapshot;

/// The parameter values one block needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockControls {
    /// Monitor = Take.
    pub monitor_take: bool,
    /// Region-edge crossfade in milliseconds.
    pub xfade_ms: f32,
    /// The `generate` parameter's value.
    pub generate: bool,
}

impl BlockControls {
    /// Audio thread. The current values of the parameters a block reads (atomic loads only).
    pub fn from_params(params: &RetakeParams) -> Self {
        Self {
            monitor_take: params.monitor.value() == Monitor::Take,
            xfade_ms: params.xfade_ms.value(),
            generate: params.generate.value(),
        }
    }
}

/// Audio-thread state, prepared in `activate()`.
pub struct Realtime {
    shared: Arc<Shared>,
    player: Player,
    capture: Option<Arc<CaptureStore>>,
    sample_rate: f32,
    /// Copy of the block's input, restored if processing panics.
    backup: Vec<Vec<f32>>,
    generate_was_on: bool,
    faulted: bool,
}

impl Realtime {
    /// Audio-thread state around `player`.
    pub fn new(shared: Arc<Shared>, player: Player) -> Self {
        Self {
            shared,
            player,
            capture: None,
            sample_rate: 0.0,
            backup: Vec::new(),
            generate_was_on: false,
            faulted: false,
        }
    }

    /// Not for the audio thread. Preallocates for `channels` × `max_block` frames at `sample_rate`, capturing
    /// into `capture`.
    pub fn prepare(&mut self, capture: Arc<CaptureStore>, sample_rate: u32, channels: usize, max_block: usize) {
        self.capture = Some(capture);
        self.sample_rate = sample_rate as f32;
        self.player.set_sample_rate(sample_rate);
        self.backup = vec![vec![0.0; max_block]; channels];
        self.faulted = false;
        self.shared.clear_audio_fault();
    }

    /// Audio thread. Processes one block in place (`audio`: one slice per channel, input in, output out).
    /// Never allocates, locks or blocks; a panic inside restores the input and switches to pass-through. A
    /// block that carries no audio (see [`carries_audio`]) is left as it is.
    pub fn process(&mut self, audio: &mut [&mut [f32]], transport: &TransportSnapshot, controls: BlockControls) {
        self.shared.transport.publish(transport);
        if controls.generate && !self.generate_was_on {
            self.shared.request_generate();
        }
        self.generate_was_on = controls.generate;
        if self.faulted || !carries_audio(audio) {
            return;
        }
        let backed_up = self.backup_input(audio);
        let outcome = catch_unwind(AssertUnwindSafe(|| self.capture_and_play(audio, transport, controls)));
        if outcome.is_err() {
            self.faulted = true;
            self.shared.report_audio_fault();
            if backed_up {
                for (channel, saved) in audio.iter_mut().zip(&self.backup) {
                    channel.copy_from_slice(&saved[..channel.len()]);
                }
            }
        }
    }

    /// Copies the input into the preallocated backup; false if the block does not fit it.
    fn backup_input(&mut self, audio: &[&mut [f32]]) -> bool {
        if audio.len() > self.backup.len() || audio.iter().any(|channel| channel.len() > self.backup[0].len()) {
            return false;
        }
        for (saved, channel) in self.backup.iter_mut().zip(audio.iter()) {
            saved[..channel.len()].copy_from_slice(channel);
        }
        true
    }

    fn capture_and_play(&mut self, audio: &mut [&mut [f32]], transport: &TransportSnapshot, controls: BlockControls) {
        let position = transport.position.filter(|_| transport.playing);
        if let (Some(capture), Some(position)) = (&self.capture, position) {
            capture.write(position, audio);
        }
        let fade_frames = (controls.xfade_ms.max(0.0) * 1e-3 * self.sample_rate).round() as usize;
        self.player.process(audio, position, controls.monitor_take, fade_frames);
    }
}

/// Whether a block has samples to touch: at least one channel, and every channel non-empty with memory behind
/// it. A JUCE host told to use no channels (DawDreamer's `set_bus(0, 0)`) keeps sending blocks whose channel
/// pointers are null, which nice-plug hands on as slices of the block's length at address 0 (reading one was
/// a segfault). A slice is never null by Rust's rules, so the check looks at the address through
/// [`std::hint::black_box`], which keeps the optimiser from assuming the answer.
fn carries_audio(audio: &[&mut [f32]]) -> bool {
    !audio.is_empty()
        && audio.iter().all(|channel| !channel.is_empty() && !std::hint::black_box(channel.as_ptr()).is_null())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playback::{take_channel, PlayableTake, TakeSender};
    use nice_assert_no_alloc::assert_no_alloc;

    const RATE: u32 = 44_100;

    fn realtime(channels: usize) -> (Arc<Shared>, TakeSender, Realtime, Arc<CaptureStore>) {
        let shared = Arc::new(Shared::default());
        let (sender, player) = take_channel();
        let mut realtime = Realtime::new(shared.clone(), player);
        let capture = Arc::new(CaptureStore::new(channels, RATE, 10.0));
        realtime.prepare(capture.clone(), RATE, channels, 4096);
        (shared, sender, realtime, capture)
    }

    /// Take 1 at the test rate, from timeline frame `start`.
    fn take(start: i64, channels: Vec<Vec<f32>>) -> Arc<PlayableTake> {
        Arc::new(PlayableTake { id: 1, sample_rate: RATE, start, channels })
    }

    fn controls(generate: bool) -> BlockControls {
        BlockControls { monitor_take: true, xfade_ms: 0.0, generate }
    }

    fn playing_at(position: i64) -> TransportSnapshot {
        TransportSnapshot { playing: true, position: Some(position), ..TransportSnapshot::default() }
    }

    #[test]
    fn playing_captures_input_and_stopped_transport_records_nothing() {
        let (_, _, mut realtime, capture) = realtime(2);
        let mut left = [0.5f32; 64];
        let mut right = [-0.5f32; 64];
        let mut audio: [&mut [f32]; 2] = [&mut left, &mut right];
        let stopped = TransportSnapshot { playing: false, position: Some(0), ..TransportSnapshot::default() };
        assert_no_alloc(|| realtime.process(&mut audio, &stopped, controls(false)));
        assert_eq!(capture.extent(), None);
        assert_no_alloc(|| realtime.process(&mut audio, &playing_at(1_000), controls(false)));
        assert_eq!(capture.read(1_000..1_064).unwrap(), vec![vec![0.5; 64], vec![-0.5; 64]]);
    }

    #[test]
    fn take_replaces_input_in_its_region_and_capture_keeps_the_input() {
        let (_, sender, mut realtime, capture) = realtime(1);
        sender.send(Some(take(32, vec![vec![0.9; 32]])));
        let mut block = [0.1f32; 100];
        let mut audio: [&mut [f32]; 1] = [&mut block];
        assert_no_alloc(|| realtime.process(&mut audio, &playing_at(0), controls(false)));
        assert_eq!(block[..32], [0.1; 32]);
        assert_eq!(block[32..64], [0.9; 32]);
        assert_eq!(block[64..], [0.1; 36]);
        assert_eq!(capture.read(0..100).unwrap(), vec![vec![0.1; 100]]);
    }

    #[test]
    fn generate_rising_edge_requests_exactly_one_job() {
        let (shared, _, mut realtime, _) = realtime(1);
        let mut block = [0.0f32; 8];
        let mut audio: [&mut [f32]; 1] = [&mut block];
        for generate in [false, true, true, true] {
            assert_no_alloc(|| realtime.process(&mut audio, &playing_at(0), controls(generate)));
        }
        assert!(shared.take_generate_request());
        assert!(!shared.take_generate_request());
    }

    #[test]
    fn block_controls_read_the_parameter_values() {
        let params = RetakeParams::default();
        let controls = assert_no_alloc(|| BlockControls::from_params(&params));
        assert_eq!(controls, BlockControls { monitor_take: true, xfade_ms: 50.0, generate: false });
    }

    #[test]
    fn blocks_without_channels_or_with_empty_channels_are_left_alone() {
        let (shared, sender, mut realtime, capture) = realtime(2);
        sender.send(Some(take(0, vec![vec![0.9; 64]; 2])));
        let mut none: [&mut [f32]; 0] = [];
        assert_no_alloc(|| realtime.process(&mut none, &playing_at(0), controls(true)));
        let mut left = [0.1f32; 64];
        let mut one_sided: [&mut [f32]; 2] = [&mut left, &mut []];
        assert_no_alloc(|| realtime.process(&mut one_sided, &playing_at(0), controls(true)));
        assert_eq!(left, [0.1; 64], "nothing played into a block the host left half empty");
        assert_eq!(capture.extent(), None, "nothing captured");
        assert!(shared.take_generate_request(), "the Generate edge still counts");
        assert!(!shared.audio_fault());
        let mut left = [0.1f32; 64];
        let mut right = [0.1f32; 64];
        let mut stereo: [&mut [f32]; 2] = [&mut left, &mut right];
        assert_no_alloc(|| realtime.process(&mut stereo, &playing_at(0), controls(true)));
        assert_eq!((left, right), ([0.9; 64], [0.9; 64]), "a full block after them plays the take");
    }

    #[test]
    fn transport_is_published_for_other_threads() {
        let (shared, _, mut realtime, _) = realtime(1);
        let mut block = [0.0f32; 8];
        let mut audio: [&mut [f32]; 1] = [&mut block];
        let transport = TransportSnapshot { loop_range: Some((10, 20)), ..playing_at(5) };
        realtime.process(&mut audio, &transport, controls(false));
        assert_eq!(shared.transport.snapshot(), transport);
    }
}
