//! In-place playback of the active take, locked to the host timeline, with equal-power crossfades at the
//! region edges and a short click-free ramp when `monitor` switches.
//!
//! Takes reach the audio thread through a fixed-capacity lock-free queue; the take a swap replaces is pushed
//! onto a second queue and dropped by the sender, never on the audio thread.

use std::f32::consts::FRAC_PI_2;
use std::sync::Arc;

use crossbeam::queue::ArrayQueue;

/// Length of the ramp when `monitor` switches between Original and Take.
pub const MONITOR_RAMP_S: f32 = 0.02;
/// Pending take messages the audio thread has not picked up yet.
const INBOX_CAPACITY: usize = 4;
/// Replaced takes waiting to be dropped off the audio thread.
const GARBAGE_CAPACITY: usize = 8;

/// A take ready to play: audio at the host rate covering `[start, start + len)` of the host timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct PlayableTake {
    /// The take's id in the takes list.
    pub id: u64,
    /// The host rate `start` and the audio are counted at.
    pub sample_rate: u32,
    /// Host timeline position of the first frame.
    pub start: i64,
    /// Planar audio; every channel has the region's length.
    pub channels: Vec<Vec<f32>>,
}

impl PlayableTake {
    /// Frames in the take (of its shortest channel).
    pub fn frames(&self) -> usize {
        self.channels.iter().map(Vec::len).min().unwrap_or(0)
    }

    /// One past the last timeline frame.
    pub fn end(&self) -> i64 {
        self.start + self.frames() as i64
    }
}

/// `(dry, wet)` gains of an equal-power crossfade at position `x` (0 = all dry, 1 = all wet):
/// `dry² + wet² = 1`.
pub fn equal_power_gains(x: f32) -> (f32, f32) {
    let angle = x.clamp(0.0, 1.0) * FRAC_PI_2;
    (angle.cos(), angle.sin())
}

/// How far into the take a frame is, as a crossfade position: ramps over `fade` frames at each edge of a
/// `frames`-long take, 1 in between. `fade` is clamped to half the take.
fn edge_position(index: usize, frames: usize, fade: usize) -> f32 {
    let fade = fade.min(frames / 2);
    if fade == 0 {
        return 1.0;
    }
    let from_start = (index as f32 + 0.5) / fade as f32;
    let from_end = ((frames - index) as f32 - 0.5) / fade as f32;
    from_start.min(from_end).min(1.0)
}

type Message = Option<Arc<PlayableTake>>;

/// The non-realtime end of the hand-off: sends takes to the [`Player`] and drops the ones it replaced.
#[derive(Debug, Clone)]
pub struct TakeSender {
    inbox: Arc<ArrayQueue<Message>>,
    garbage: Arc<ArrayQueue<Arc<PlayableTake>>>,
}

impl TakeSender {
    /// Makes `take` the one that plays (`None`: play nothing). If the audio thread has not picked up earlier
    /// messages, the oldest is discarded here. Not for the audio thread.
    pub fn send(&self, take: Option<Arc<PlayableTake>>) {
        self.collect_garbage();
        drop(self.inbox.force_push(take));
    }

    /// Drops the takes the audio thread has let go of.
    pub fn collect_garbage(&self) {
        while self.garbage.pop().is_some() {}
    }
}

/// The audio-thread end: the active take and the monitor ramp.
#[derive(Debug)]
pub struct Player {
    inbox: Arc<ArrayQueue<Message>>,
    garbage: Arc<ArrayQueue<Arc<PlayableTake>>>,
    active: Option<Arc<PlayableTake>>,
    sample_rate: u32,
    /// Current monitor mix: 0 = Original, 1 = Take.
    mix: f32,
    /// Mix change per sample while ramping.
    ramp_step: f32,
}

/// Creates a connected sender / player pair.
pub fn take_channel() -> (TakeSender, Player) {
    let inbox = Arc::new(ArrayQueue::new(INBOX_CAPACITY));
    let garbage = Arc::new(ArrayQueue::new(GARBAGE_CAPACITY));
    let sender = TakeSender { inbox: inbox.clone(), garbage: garbage.clone() };
    let player = Player { inbox, garbage, active: None, sample_rate: 0, mix: 1.0, ramp_step: 1.0 };
    (sender, player)
}

impl Player {
    /// Sets the host rate (from `activate()`); a take at another rate stays silent until one at this rate
    /// arrives.
    pub fn set_sample_rate(&mut self, sample_rate: u32) {
        self.sample_rate = sample_rate;
        self.ramp_step = 1.0 / (MONITOR_RAMP_S * sample_rate as f32).max(1.0);
    }

    /// The id of the take that plays now.
    pub fn active_id(&self) -> Option<u64> {
        self.active.as_ref().map(|take| take.id)
    }

    /// Audio thread. Picks up the newest take message, as long as the replaced take can be handed back.
    fn receive(&mut self) {
        while !self.garbage.is_full() {
            let Some(message) = self.inbox.pop() else { break };
            if let Some(old) = std::mem::replace(&mut self.active, message) {
                // Cannot fail: this thread is the only producer and the queue was not full.
                let _ = self.garbage.push(old);
            }
        }
    }

    /// Audio thread. Replaces `audio` (one slice per channel, the block starting at timeline `position`,
    /// `None` when the transport is stopped) by the active take where the take covers the timeline, fading
    /// over `fade_frames` at its edges; `monitor_take` selects Take (true) or Original. Frames the take does
    /// not cover, and every frame when no take is active, are left untouched.
    pub fn process(&mut self, audio: &mut [&mut [f32]], position: Option<i64>, monitor_take: bool, fade_frames: usize) {
        self.receive();
        let target = if monitor_take { 1.0 } else { 0.0 };
        let frames = audio.iter().map(|channel| channel.len()).min().unwrap_or(0);
        let (mix_start, step) = (self.mix, self.ramp_step);
        let mix_after = |samples: usize| {
            let moved = step * samples as f32;
            if target > mix_start {
                (mix_start + moved).min(target)
            } else {
                (mix_start - moved).max(target)
            }
        };
        self.mix = mix_after(frames);
        let Some(take) = self.active.as_deref().filter(|take| take.sample_rate == self.sample_rate) else {
            return;
        };
        let Some(position) = position else { return };
        if (mix_start == 0.0 && target == 0.0) || take.channels.is_empty() {
            return;
        }
        let take_frames = take.frames();
        let first = take.start.max(position);
        let last = take.end().min(position.saturating_add(frames as i64));
        for t in first..last {
            let index = (t - take.start) as usize;
            let frame = (t - position) as usize;
            let x = edge_position(index, take_frames, fade_frames) * mix_after(frame + 1);
            if x <= 0.0 {
                continue;
            }
            // Only fades need the gains: the sine and cosine per frame would dominate the block's cost.
            let (dry, wet) = if x < 1.0 { equal_power_gains(x) } else { (0.0, 1.0) };
            for (channel, out) in audio.iter_mut().enumerate() {
                let source = take.channels[channel.min(take.channels.len() - 1)][index];
                out[frame] = if x >= 1.0 { source } else { out[frame] * dry + source * wet };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nice_assert_no_alloc::assert_no_alloc;

    const RATE: u32 = 48_000;

    /// Input whose value at timeline frame `t` is unique.
    fn input_at(t: i64, channel: usize) -> f32 {
        (t as f32 * 1e-4).sin() * 0.5 + channel as f32 * 0.01
    }

    fn take(start: i64, frames: usize) -> Arc<PlayableTake> {
        let channels =
            (0..2).map(|c| (0..frames).map(|i| -1.0 + (i as f32) * 1e-5 + c as f32 * 0.1).collect()).collect();
        Arc::new(PlayableTake { id: 7, sample_rate: RATE, start, channels })
    }

    fn player_with(take: Arc<PlayableTake>) -> (TakeSender, Player) {
        let (sender, mut player) = take_channel();
        player.set_sample_rate(RATE);
        sender.send(Some(take));
        (sender, player)
    }

    /// Plays `segments` (timeline start, frames) in blocks of `block` frames; returns (timeline frame,
    /// channel, output) for every frame.
    fn render(player: &mut Player, segments: &[(i64, usize)], block: usize, fade: usize) -> Vec<(i64, usize, f32)> {
        let mut seen = Vec::new();
        let mut left = vec![0.0f32; block];
        let mut right = vec![0.0f32; block];
        for &(start, frames) in segments {
            let mut done = 0;
            while done < frames {
                let n = block.min(frames - done);
                let position = start + done as i64;
                for i in 0..n {
                    left[i] = input_at(position + i as i64, 0);
                    right[i] = input_at(position + i as i64, 1);
                }
                {
                    let mut channels: [&mut [f32]; 2] = [&mut left[..n], &mut right[..n]];
                    assert_no_alloc(|| player.process(&mut channels, Some(position), true, fade));
                }
                for i in 0..n {
                    seen.push((position + i as i64, 0, left[i]));
                    seen.push((position + i as i64, 1, right[i]));
                }
                done += n;
            }
        }
        seen
    }

    #[test]
    fn without_crossfade_output_is_the_take_inside_and_the_input_outside_for_any_block_size() {
        let take = take(10_000, 7_000);
        // A transport that plays, loops back over the region, jumps past it and back into its middle.
        let segments = [(8_000, 5_000), (9_500, 9_000), (30_000, 2_000), (12_345, 700)];
        for block in [1usize, 64, 511, 4096] {
            let (_sender, mut player) = player_with(take.clone());
            for (t, channel, out) in render(&mut player, &segments, block, 0) {
                let expected = if (take.start..take.end()).contains(&t) {
                    take.channels[channel][(t - take.start) as usize]
                } else {
                    input_at(t, channel)
                };
                assert_eq!(out.to_bits(), expected.to_bits(), "block {block}, frame {t}, channel {channel}");
            }
        }
    }

    #[test]
    fn no_active_take_passes_input_bit_for_bit() {
        let (_sender, mut player) = take_channel();
        player.set_sample_rate(RATE);
        for (t, channel, out) in render(&mut player, &[(0, 3_000)], 511, 480) {
            assert_eq!(out.to_bits(), input_at(t, channel).to_bits());
        }
    }

    #[test]
    fn stopped_transport_passes_input_through() {
        let (_sender, mut player) = player_with(take(0, 1_000));
        let mut block = [0.3f32; 64];
        let mut channels: [&mut [f32]; 1] = [&mut block];
        assert_no_alloc(|| player.process(&mut channels, None, true, 0));
        assert_eq!(block, [0.3f32; 64]);
    }

    #[test]
    fn take_at_another_rate_stays_silent_until_replaced() {
        let (_sender, mut player) = player_with(take(0, 1_000));
        player.set_sample_rate(44_100);
        for (t, channel, out) in render(&mut player, &[(0, 1_000)], 64, 0) {
            assert_eq!(out, input_at(t, channel));
        }
    }

    #[test]
    fn crossfade_gains_are_equal_power() {
        for i in 0..=1000 {
            let (dry, wet) = equal_power_gains(i as f32 / 1000.0);
            assert!((dry * dry + wet * wet - 1.0).abs() < 1e-6);
        }
        assert_eq!(equal_power_gains(0.0), (1.0, 0.0));
    }

    #[test]
    fn region_edges_fade_with_equal_power_gains() {
        let take = take(1_000, 2_000);
        let fade = 480;
        let (_sender, mut player) = player_with(take.clone());
        for (t, channel, out) in render(&mut player, &[(0, 4_000)], 256, fade) {
            if !(take.start..take.end()).contains(&t) {
                assert_eq!(out, input_at(t, channel));
                continue;
            }
            let index = (t - take.start) as usize;
            let x = edge_position(index, take.frames(), fade);
            let (dry, wet) = equal_power_gains(x);
            let source = take.channels[channel][index];
            let expected = if x >= 1.0 { source } else { input_at(t, channel) * dry + source * wet };
            assert_eq!(out, expected, "frame {t}");
            let in_fade = index < fade || index >= take.frames() - fade;
            assert_eq!(x < 1.0, in_fade, "frame {t}");
        }
    }

    #[test]
    fn edge_position_ramps_symmetrically() {
        assert_eq!(edge_position(0, 100, 10), 0.05);
        assert_eq!(edge_position(99, 100, 10), 0.05);
        assert_eq!(edge_position(10, 100, 10), 1.0);
        // A fade longer than half the take is shortened to half of it.
        assert_eq!(edge_position(49, 100, 1000), 49.5 / 50.0);
    }

    #[test]
    fn monitor_switch_ramps_instead_of_jumping() {
        let take = take(0, 48_000);
        let (_sender, mut player) = player_with(take.clone());
        let ramp = (MONITOR_RAMP_S * RATE as f32) as usize;
        let mut left = vec![0.0f32; 4_000];
        let mut channels: [&mut [f32]; 1] = [&mut left];
        player.process(&mut channels, Some(0), false, 0);
        let mut outputs = vec![0.0f32; 4_000];
        let mut channels: [&mut [f32]; 1] = [&mut outputs];
        assert_no_alloc(|| player.process(&mut channels, Some(4_000), true, 0));
        // Input is silent, so the output is the take scaled by the ramp's wet gain: it rises over the ramp.
        let wet = |i: usize| outputs[i] / take.channels[0][4_000 + i];
        assert!(wet(0) > 0.0 && wet(0) < 0.01);
        assert!(wet(ramp / 2) > 0.6 && wet(ramp / 2) < 0.8);
        assert_eq!(wet(ramp + 10), 1.0);
    }

    #[test]
    fn replaced_takes_are_returned_for_dropping_off_the_audio_thread() {
        let first = take(0, 10);
        let (sender, mut player) = player_with(first.clone());
        let mut block = [0.0f32; 4];
        let mut channels: [&mut [f32]; 1] = [&mut block];
        assert_no_alloc(|| player.process(&mut channels, Some(0), true, 0));
        assert_eq!(player.active_id(), Some(7));
        sender.send(None);
        assert_no_alloc(|| player.process(&mut channels, Some(0), true, 0));
        assert_eq!(player.active_id(), None);
        assert_eq!(Arc::strong_count(&first), 2, "the garbage queue holds the replaced take");
        sender.collect_garbage();
        assert_eq!(Arc::strong_count(&first), 1);
    }
}
